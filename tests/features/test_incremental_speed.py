"""The live path on the FULL default feature set equals the batch path: every family on
its own tail, higher-timeframe copies cached between their buckets' closes (a 1d bucket
close and several 4h ones fall inside the checked bars)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from feature_frames import synthetic_frame
from perptrader.features.base import Family, FeatureContext
from perptrader.features.incremental import MARGIN_ROWS, IncrementalFeatures, incremental_check
from perptrader.features.pipeline import plan
from perptrader.features.sets import get_set


def _check(frame: pd.DataFrame, bars: int) -> None:
    ctx = FeatureContext(symbol="BTCUSDT", timeframe="1h")
    the_plan = plan(frame, get_set("default"), ctx)
    assert any("mtf" in f.tags for f in the_plan.families)
    report = incremental_check(frame, the_plan.families, ctx, bars=bars)
    assert report.ok, report.as_json()["differing_features"]
    assert report.n_features == len(the_plan.names)


def test_default_set_live_equals_batch_on_synthetic_bars() -> None:
    # extras: marks and funding, so the derivative families run too
    _check(synthetic_frame(3300, seed=4), bars=30)


def test_default_set_live_equals_batch_on_real_btc(real_btc_1h) -> None:
    _check(real_btc_1h.iloc[-4500:], bars=60)


def test_each_family_runs_on_its_own_tail() -> None:
    frame = synthetic_frame(3300, seed=4)
    ctx = FeatureContext(symbol="BTCUSDT", timeframe="1h")
    seen: dict[str, int] = {}

    def spy(family: Family) -> Family:  # a copy: the catalogue's families stay as they are
        def compute(f: pd.DataFrame, c: FeatureContext) -> pd.DataFrame:
            seen[family.name] = len(f)
            return family.compute(f, c)

        return replace(family, compute=compute)

    families = [spy(f) for f in plan(frame, get_set("default"), ctx).families]
    live = IncrementalFeatures(families, ctx, frame.iloc[:-1])
    seen.clear()
    live.update(frame.iloc[[-1]])
    for family in families:
        if family.name in seen:  # a cached higher-timeframe copy is not run at all
            assert seen[family.name] == family.history + MARGIN_ROWS, family.name
    assert len(seen) >= len([f for f in families if "mtf" not in f.tags])
