"""The fused state (``rl.state``): fitted on the training rows only, scaled per column
kind, row-wise (no look-ahead through the state), serialisable, split between the dual
agents, and the two per-bar signals (expert agreement, VSA direction).

No model is trained here: the model outputs are a fake DataFrame with the columns
``model_outputs`` would return (probabilities and expert embeddings per role).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from feature_frames import synthetic_frame
from ml_frames import synthetic_ml_frame
from perptrader.ml.base import CLASSES, MLFrame
from perptrader.rl.core import ACCOUNT_FEATURES
from perptrader.rl.state import (
    ROLES,
    VSA_CONTINUOUS,
    Z_CLIP,
    StateSpec,
    apply_state,
    expert_agreement,
    fit_state,
    raw_state,
    vsa_direction,
)
from perptrader.strategies.vsa import CONTEXT, LONG_EVENTS, SHORT_EVENTS, VsaStrategy

EMB = {"pattern": 8, "indicator": 6}
COMPONENTS = 3
#: rows the indicator expert cannot predict (too little history): NaN outputs
INDICATOR_GAP = 40


@pytest.fixture(scope="module")
def data() -> MLFrame:
    return synthetic_ml_frame(1500)


def fake_outputs(index: pd.DatetimeIndex, seed: int = 0) -> pd.DataFrame:
    """Random probabilities per role and low-rank embeddings per expert, shaped like
    ``model_outputs``; the indicator expert's first rows are NaN."""
    rng = np.random.default_rng(seed)
    n = len(index)
    cols: dict[str, np.ndarray] = {}
    for role in ROLES:
        p = rng.dirichlet([1.0, 1.0, 1.0], size=n)
        for k, cls in enumerate(CLASSES):
            cols[f"{role}_p_{cls.lower()}"] = p[:, k]
        if role in EMB:
            latent = rng.normal(size=(n, 2))
            mix = rng.normal(size=(2, EMB[role]))
            emb = latent @ mix + 0.1 * rng.normal(size=(n, EMB[role]))
            for k in range(EMB[role]):
                cols[f"{role}_emb_{k}"] = emb[:, k]
    out = pd.DataFrame(cols, index=index)
    out.iloc[:INDICATOR_GAP, [out.columns.get_loc(c) for c in out.columns
                              if c.startswith("indicator_")]] = np.nan
    return out


@pytest.fixture(scope="module")
def raw(data: MLFrame) -> pd.DataFrame:
    return raw_state(data, fake_outputs(data.index))


def train_rows(raw: pd.DataFrame) -> np.ndarray:
    return np.arange(int(0.6 * len(raw)))


def fit(raw: pd.DataFrame) -> StateSpec:
    return fit_state(raw, train_rows(raw), list(ROLES), emb_components=COMPONENTS)


def is_scaled(column: str) -> bool:
    """Continuous columns (z-scored); probabilities, VSA flags and strengths are not."""
    if "_p_" in column:
        return False
    return not column.startswith("vsa_") or column in VSA_CONTINUOUS


# ---- fitting on the training rows only -------------------------------------------------
def test_changing_rows_outside_train_leaves_the_spec_unchanged(raw: pd.DataFrame) -> None:
    spec = fit(raw)
    n_train = len(train_rows(raw))
    later = raw.copy()
    rng = np.random.default_rng(1)
    later.iloc[n_train:] = later.iloc[n_train:] * 3.0 + rng.normal(
        size=later.iloc[n_train:].shape)
    assert fit(later).as_dict() == spec.as_dict()


@pytest.mark.parametrize("column", ["vsa_trend", "momentum_rsi14", "ret_4", "pattern_emb_0",
                                    "indicator_emb_2"])
def test_changing_a_train_row_changes_the_spec(raw: pd.DataFrame, column: str) -> None:
    spec = fit(raw)
    changed = raw.copy()
    changed.iloc[INDICATOR_GAP + 5, changed.columns.get_loc(column)] += 50.0
    new = fit(changed)
    if "_emb_" in column:
        role = column.split("_")[0]
        assert new.pca[role] != spec.pca[role]
        other = "indicator" if role == "pattern" else "pattern"
        assert new.pca[other] == spec.pca[other]
    else:
        assert new.zscore[column] != spec.zscore[column]
        assert {k: v for k, v in new.zscore.items() if k != column} == \
            {k: v for k, v in spec.zscore.items() if k != column}


def test_statistics_are_those_of_the_training_rows(raw: pd.DataFrame) -> None:
    spec = fit(raw)
    part = raw.iloc[train_rows(raw)]
    v = part["momentum_rsi14"].to_numpy()
    assert spec.zscore["momentum_rsi14"] == pytest.approx([np.nanmean(v), np.nanstd(v)])
    for role, width in EMB.items():
        x = part[[f"{role}_emb_{k}" for k in range(width)]].dropna().to_numpy()
        assert spec.pca[role]["mean"] == pytest.approx(x.mean(axis=0).tolist())
        comps = np.asarray(spec.pca[role]["components"])
        assert comps.shape == (COMPONENTS, width)
        np.testing.assert_allclose(comps @ comps.T, np.eye(COMPONENTS), atol=1e-9)


# ---- scaling -----------------------------------------------------------------------------
def test_only_continuous_columns_are_z_scored(raw: pd.DataFrame) -> None:
    spec = fit(raw)
    state = apply_state(raw, spec)
    assert list(state.columns) == spec.columns
    assert set(spec.zscore) == {c for c in spec.columns if is_scaled(c)}
    for c in ("gbdt_p_buy", "pattern_p_sell", "vsa_upthrust", "vsa_upthrust_strength"):
        assert c in spec.columns and c not in spec.zscore
        np.testing.assert_array_equal(state[c].to_numpy(), raw[c].to_numpy())
    for c in ("vsa_trend", "momentum_rsi14", "ret_1", "pattern_pc_0", "indicator_pc_2"):
        assert c in spec.zscore
    # the embeddings are replaced by their PCA projection
    assert not any("_emb_" in c for c in spec.columns)
    for role in EMB:
        assert [c for c in spec.columns if c.startswith(f"{role}_pc_")] == \
            [f"{role}_pc_{k}" for k in range(COMPONENTS)]
    for c, (mu, sd) in spec.zscore.items():
        if c in raw.columns:
            want = ((raw[c] - mu) / sd).clip(-Z_CLIP, Z_CLIP).to_numpy()
            np.testing.assert_allclose(state[c].to_numpy(), want, rtol=1e-12)


def test_z_scored_columns_are_clipped(raw: pd.DataFrame) -> None:
    spec = fit(raw)
    extreme = raw.copy()
    last = len(raw) - 1
    extreme.iloc[last, extreme.columns.get_loc("momentum_rsi14")] = 1e9
    extreme.iloc[last - 1, extreme.columns.get_loc("momentum_rsi14")] = -1e9
    state = apply_state(extreme, spec)
    assert state["momentum_rsi14"].iloc[last] == Z_CLIP
    assert state["momentum_rsi14"].iloc[last - 1] == -Z_CLIP
    scaled = state[list(spec.zscore)].to_numpy()
    assert np.nanmax(np.abs(scaled)) == Z_CLIP


def test_columns_all_nan_on_the_training_rows_are_missing(raw: pd.DataFrame) -> None:
    gappy = raw.copy()
    n_train = len(train_rows(raw))
    gappy.iloc[:n_train, gappy.columns.get_loc("momentum_rsi14")] = np.nan  # set later only
    spec = fit(gappy)
    assert "momentum_rsi14" in spec.missing
    assert "momentum_rsi14" not in spec.columns and "momentum_rsi14" not in spec.zscore
    # market columns the feature build could not compute (no funding/OI in these bars)
    for c in ("funding_rate_bps", "oi_chg_1"):
        assert c not in raw.columns and c in spec.missing
    # NaN on some training rows only (the indicator's warm-up) is not missing
    assert "indicator_p_buy" in spec.columns
    with pytest.raises(ValueError, match="does not have"):
        apply_state(raw.drop(columns=["vsa_trend"]), spec)


# ---- no look-ahead -------------------------------------------------------------------------
def test_apply_state_is_row_wise(raw: pd.DataFrame) -> None:
    spec = fit(raw)
    state = apply_state(raw, spec)
    t = 700
    later = raw.copy()
    later.iloc[t + 1:] = np.random.default_rng(2).normal(size=later.iloc[t + 1:].shape) * 100
    pd.testing.assert_frame_equal(apply_state(later, spec).iloc[:t + 1], state.iloc[:t + 1])
    pd.testing.assert_frame_equal(apply_state(raw.iloc[:t + 1], spec), state.iloc[:t + 1])


def test_raw_state_does_not_read_later_bars(data: MLFrame) -> None:
    """The returns the state computes itself come from closes up to the row's bar."""
    outputs = fake_outputs(data.index)
    t = 700
    frame = data.frame.copy()
    frame.iloc[t + 1:, frame.columns.get_loc("close")] *= 1.5
    moved = MLFrame(frame=frame, features=data.features, label=data.label,
                    horizon=data.horizon, meta=data.meta)
    before = raw_state(data, outputs)
    after = raw_state(moved, outputs)
    pd.testing.assert_frame_equal(after.iloc[:t + 1], before.iloc[:t + 1])
    assert not np.allclose(after["ret_1"].iloc[t + 1:], before["ret_1"].iloc[t + 1:])
    close = data.frame["close"].to_numpy()
    assert before["ret_24"].iloc[t] == pytest.approx(np.log(close[t] / close[t - 24]))
    assert np.isnan(before["ret_24"].iloc[0])


# ---- serialisation and the dual agents' parts -------------------------------------------
def test_spec_round_trips_through_json(raw: pd.DataFrame) -> None:
    spec = fit(raw)
    back = StateSpec.from_dict(json.loads(json.dumps(spec.as_dict())))
    assert back == spec
    assert back.columns == spec.columns
    pd.testing.assert_frame_equal(apply_state(raw, back), apply_state(raw, spec))


def selected(spec: StateSpec, agent: str) -> list[str]:
    names = [*spec.columns, *ACCOUNT_FEATURES]
    return [names[j] for j in spec.agent_columns(agent)]


def test_agent_columns_split_the_state(raw: pd.DataFrame) -> None:
    spec = fit(raw)
    g = spec.groups
    assert set(g) == {"gbdt", "pattern", "indicator", "vsa", "market"}
    assert selected(spec, "pattern") == [*g["pattern"], *g["vsa"], *ACCOUNT_FEATURES]
    assert selected(spec, "indicator") == [*g["gbdt"], *g["indicator"], *g["market"],
                                           *ACCOUNT_FEATURES]
    assert selected(spec, "ppo") == [*spec.columns, *ACCOUNT_FEATURES]
    pattern, indicator = selected(spec, "pattern"), selected(spec, "indicator")
    assert all(c.startswith(("pattern_", "vsa_", "acc_")) for c in pattern)
    assert all(not c.startswith(("pattern_", "vsa_")) for c in indicator)
    assert {"momentum_rsi14", "ret_1", "gbdt_p_buy", "indicator_pc_0"} <= set(indicator)
    assert {"vsa_trend", "vsa_upthrust", "pattern_pc_0"} <= set(pattern)


# ---- per-bar signals --------------------------------------------------------------------------
def probs(vote: str | None) -> list[float]:
    if vote is None:
        return [np.nan] * 3
    return [0.6 if c == vote else 0.2 for c in CLASSES]


@pytest.mark.parametrize(("pattern", "indicator", "agree", "conflict"), [
    ("BUY", "BUY", 1.0, 0.0),
    ("SELL", "SELL", -1.0, 0.0),
    ("BUY", "SELL", 0.0, 1.0),
    ("SELL", "BUY", 0.0, 1.0),
    ("HOLD", "HOLD", 0.0, 0.0),
    ("BUY", "HOLD", 0.0, 0.0),
    ("HOLD", "SELL", 0.0, 0.0),
    (None, "BUY", 0.0, 0.0),
])
def test_expert_agreement(pattern: str | None, indicator: str, agree: float,
                          conflict: float) -> None:
    cols = {f"{role}_p_{c.lower()}": [p] for role, vote in (("pattern", pattern),
                                                            ("indicator", indicator))
            for c, p in zip(CLASSES, probs(vote), strict=True)}
    a, c = expert_agreement(pd.DataFrame(cols))
    assert (a[0], c[0]) == (agree, conflict)


def test_expert_agreement_is_zero_without_both_experts() -> None:
    cols = {f"pattern_p_{c.lower()}": [p, p] for c, p in zip(CLASSES, probs("BUY"),
                                                              strict=True)}
    cols.update({f"gbdt_p_{c.lower()}": [p, p] for c, p in zip(CLASSES, probs("BUY"),
                                                               strict=True)})
    a, c = expert_agreement(pd.DataFrame(cols))
    np.testing.assert_array_equal(a, [0.0, 0.0])
    np.testing.assert_array_equal(c, [0.0, 0.0])


def test_vsa_direction_is_the_vsa_strategy_events() -> None:
    bars = synthetic_frame(2500, seed=7, extras=False)  # what synthetic_ml_frame builds on
    data = synthetic_ml_frame(2500, seed=7)
    d = vsa_direction(data, data.index)
    # the vsa strategy on the loader bars
    long_, short = VsaStrategy().signals(bars)
    want = pd.Series(long_.astype(float) - short.astype(float), index=bars.index)
    np.testing.assert_array_equal(d, want.reindex(data.index).to_numpy())
    # and rebuilt from the table's own VSA flags and trend context
    frame = data.frame
    trend = frame["vsa_trend"].to_numpy()

    def fired(names: tuple[str, ...]) -> np.ndarray:
        hit = np.zeros(len(frame), dtype=bool)
        for name in names:
            ok = trend <= 0 if CONTEXT[name] < 0 else trend >= 0
            hit |= (frame[f"vsa_{name}"].fillna(0.0).to_numpy() > 0) & ok
        return hit

    np.testing.assert_array_equal(d, fired(LONG_EVENTS).astype(float)
                                  - fired(SHORT_EVENTS).astype(float))
    assert (d > 0).any() and (d < 0).any()
    # a sub-index reads the same bars; an unknown bar is 0
    sub = data.index[100:200]
    np.testing.assert_array_equal(vsa_direction(data, sub), d[100:200])
    late = pd.DatetimeIndex([data.index[-1] + pd.Timedelta("1h")])
    np.testing.assert_array_equal(vsa_direction(data, late), [0.0])
