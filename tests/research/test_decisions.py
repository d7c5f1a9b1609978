"""Decision kinds over walk-forward folds (``research.decisions``): what each may tune
on, and that no tuning row's outcome lies inside the test window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_frames import synthetic_frame
from perptrader.ml.base import CLASSES, MLFrame
from perptrader.ml.decision_oos import DecisionContext, tuning_rows
from perptrader.research import decisions
from perptrader.research.decisions import run_decision
from perptrader.research.study import DecisionSpec

H = 24


def _context(n: int = 1500, seed: int = 0, valid: bool = True) -> DecisionContext:
    bars = synthetic_frame(n, seed=seed, extras=False)
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet([2, 2, 2], n)
    frame = pd.DataFrame(proba, index=bars.index, columns=list(CLASSES))
    frame["f0"] = rng.normal(size=n)
    frame["label_adaptive"] = rng.integers(-1, 2, n).astype(float)
    data = MLFrame(frame, ["f0"], horizon=H)
    # three test folds of 300 bars from bar 600; each fold's validation slice: the 150
    # bars before its test window (overlapping the previous test window, as rolling does)
    oos, val = [], []
    for f in range(3):
        start = 600 + 300 * f
        part = frame.iloc[start:start + 300][list(CLASSES)].copy()
        part["fold"] = f
        oos.append(part)
        v = frame.iloc[start - 150:start][list(CLASSES)].copy()
        v["fold"] = f
        val.append(v)
    return DecisionContext(data=data, bars=bars, oos=pd.concat(oos),
                           valid=pd.concat(val) if valid else pd.DataFrame(), k=0.4,
                           horizon=H, round_trip_cost=0.0012, fundings_per_bar=1 / 8)


def test_tuning_rows_never_reach_the_test_window() -> None:
    ctx = _context()
    for f in range(3):
        first_test = ctx.oos[ctx.oos["fold"] == f].index[0]
        tuning = tuning_rows(ctx, f, first_test)
        assert len(tuning)
        pos = ctx.bars.index.get_indexer(tuning.index)
        limit = ctx.bars.index.get_indexer([first_test])[0]
        # a trade decided at t exits at the open of t + 1 + H: before the test window
        assert (pos + 1 + H < limit).all()
        assert not tuning.index.duplicated().any()
        assert (tuning.index < first_test).all()
    # fold 0 of a run without validation slices (pooled) has nothing to tune on
    assert tuning_rows(_context(valid=False), 0, ctx.oos.index[0]).empty


def test_decision_kinds_fill_every_test_row(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _context()
    for spec in (DecisionSpec("t", "threshold", 0.45), DecisionSpec("c", "cost_aware"),
                 DecisionSpec("m", "meta", 0.5, sizing="kelly")):
        run = run_decision(ctx, spec)
        assert run.targets.index.equals(ctx.oos.index), spec.kind
        assert np.isfinite(run.targets.to_numpy()).all()
        assert (run.targets.abs() <= 1.0 + 1e-12).all()
        assert len(run.folds) == 3
    # random probabilities carry no skill: the cost-aware layer measures k = 0, stays flat
    aware = run_decision(ctx, DecisionSpec("c", "cost_aware"))
    assert (aware.targets == 0).all()
    assert all(f["edge_k"] == 0.0 for f in aware.folds)


def test_meta_with_too_few_rows_stays_flat_and_says_so(monkeypatch) -> None:
    monkeypatch.setattr(decisions, "MIN_META_ROWS", 10_000)
    run = run_decision(_context(), DecisionSpec("m", "meta"))
    assert (run.targets == 0).all() and len(run.warnings) == 3
