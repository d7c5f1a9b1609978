"""Labels on hand-made paths: adaptive, triple barrier, forward returns, class balance."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from perptrader.features.labels import (
    LabelConfig,
    adaptive_labels,
    class_balance,
    forward_returns,
    triple_barrier_labels,
)

# warm-up closes whose 4 log returns give the entry's σ; entry = the last of them
WARM = [100.0, 101.0, 100.0, 101.0, 100.0]
TB = LabelConfig(vol_window=4, max_holding=3, tp_multiplier=1.0, sl_multiplier=1.0)


def _sigma(closes: list[float]) -> float:
    r = [math.log(closes[i] / closes[i - 1]) for i in range(1, len(closes))]
    m = sum(r) / len(r)
    return math.sqrt(sum((x - m) ** 2 for x in r) / (len(r) - 1))


WIDTH = _sigma(WARM) * math.sqrt(3)  # σ over the 3-bar holding period
UP, DOWN = 100.0 * (1 + WIDTH), 100.0 * (1 - WIDTH)


def _bars(path: list[tuple[float, float, float, float]], tail: int = 3) -> pd.DataFrame:
    """Flat warm-up bars, the path (o, h, l, c) after the entry, then flat tail bars."""
    rows = [(c, c, c, c) for c in WARM] + path
    last = path[-1][3] if path else WARM[-1]
    rows += [(last, last, last, last)] * tail
    idx = pd.date_range("2024-01-01", periods=len(rows), freq="1h", tz="UTC", name="ts")
    return pd.DataFrame(rows, columns=["open", "high", "low", "close"],
                        index=idx.astype("datetime64[us, UTC]"))


def _entry(path) -> pd.Series:
    return triple_barrier_labels(_bars(path), TB).iloc[len(WARM) - 1]


def test_width_is_sane() -> None:
    assert 0.01 < WIDTH < 0.05  # a path of ±1% bars: about 1.7% over three bars


def test_tp_first() -> None:
    row = _entry([(100.0, UP + 0.1, 99.9, UP), (UP, UP, UP, UP), (UP, UP, UP, UP)])
    assert row["label_tb"] == 1 and row["label_tb_barrier"] == "tp"
    assert row["label_tb_bars"] == 1
    assert row["label_tb_ret"] == pytest.approx(WIDTH)


def test_tp_on_second_bar() -> None:
    row = _entry([(100.0, 100.5, 99.5, 100.2), (100.2, UP, 100.0, UP - 0.1),
                  (100.0, 100.0, DOWN - 1, DOWN - 1)])
    assert row["label_tb"] == 1 and row["label_tb_bars"] == 2


def test_sl_first() -> None:
    row = _entry([(100.0, 100.2, DOWN - 0.1, DOWN), (DOWN, UP + 5, DOWN, UP + 5),
                  (100.0, 100.0, 100.0, 100.0)])
    assert row["label_tb"] == -1 and row["label_tb_barrier"] == "sl"
    assert row["label_tb_bars"] == 1
    assert row["label_tb_ret"] == pytest.approx(-WIDTH)


def test_both_in_one_bar_counts_as_stop() -> None:
    row = _entry([(100.0, UP + 1, DOWN - 1, UP + 0.5), (100.0, 100.0, 100.0, 100.0),
                  (100.0, 100.0, 100.0, 100.0)])
    assert row["label_tb"] == -1 and row["label_tb_barrier"] == "sl"
    assert row["label_tb_ret"] == pytest.approx(-WIDTH)


def test_stop_gapped_through_fills_at_open() -> None:
    gap_open = DOWN - 2.0
    row = _entry([(gap_open, gap_open + 0.5, gap_open - 0.5, gap_open),
                  (100.0, 100.0, 100.0, 100.0), (100.0, 100.0, 100.0, 100.0)])
    assert row["label_tb"] == -1
    assert row["label_tb_ret"] == pytest.approx(gap_open / 100.0 - 1)


def test_time_out() -> None:
    row = _entry([(100.0, 100.5, 99.5, 100.3), (100.3, 100.8, 99.8, 100.6),
                  (100.6, 101.0, 100.1, 100.9)])
    assert row["label_tb"] == 0 and row["label_tb_barrier"] == "time"
    assert row["label_tb_bars"] == 3
    assert row["label_tb_ret"] == pytest.approx(100.9 / 100 - 1)


def test_asymmetric_barriers() -> None:
    cfg = LabelConfig(vol_window=4, max_holding=3, tp_multiplier=2.0, sl_multiplier=0.5)
    frame = _bars([(100.0, 100 * (1 + 1.5 * WIDTH), 100 * (1 - 0.4 * WIDTH), 100.0)] +
                  [(100.0, 100.0, 100.0, 100.0)] * 2)
    row = triple_barrier_labels(frame, cfg).iloc[len(WARM) - 1]
    assert row["label_tb"] == 0  # 1.5σ is short of the 2σ target, 0.4σ short of the stop


def test_triple_barrier_unknown_rows() -> None:
    frame = _bars([(100.0, UP + 1, 99.0, UP)], tail=5)
    out = triple_barrier_labels(frame, TB)
    # σ needs 4 returns: entries before row 4 are unknown
    assert out["label_tb"].iloc[:4].isna().all()
    # the last max_holding rows are unknown even though a barrier might be touched there
    assert out.iloc[-3:].drop(columns="label_tb_barrier").isna().all().all()
    assert out["label_tb_barrier"].iloc[-3:].isna().all()
    assert out["label_tb"].iloc[4:-3].notna().all()
    assert set(out["label_tb_barrier"].cat.categories) == {"sl", "time", "tp"}


def test_missing_bar_in_path_gives_unknown() -> None:
    frame = _bars([(100.0, 100.5, 99.5, 100.0)] * 3)
    frame.iloc[6, frame.columns.get_loc("low")] = np.nan
    out = triple_barrier_labels(frame, TB)
    assert np.isnan(out["label_tb"].iloc[4]) and np.isnan(out["label_tb"].iloc[5])


def test_adaptive_labels_by_hand() -> None:
    closes = [100.0, 101.0, 100.0, 101.0, 100.0, 104.0, 100.5, 100.0, 97.0, 97.5, 98.0]
    frame = pd.DataFrame({"close": closes},
                         index=pd.date_range("2024-01-01", periods=len(closes), freq="1h",
                                             tz="UTC", name="ts"))
    cfg = LabelConfig(future_window=1, vol_window=4, threshold_multiplier=1.0)
    out = adaptive_labels(frame, cfg)
    for t in range(4, len(closes) - 1):
        sigma = _sigma(closes[t - 4:t + 1])
        assert out["label_adaptive_threshold"].iloc[t] == pytest.approx(sigma, rel=1e-12)
        ret = closes[t + 1] / closes[t] - 1
        assert out["label_adaptive_ret"].iloc[t] == pytest.approx(ret, rel=1e-12)
    lab = out["label_adaptive"]
    # 100 -> 104 is +4% against σ ≈ 1.15%: BUY; 104 -> 100.5 SELL; 100.5 -> 100 HOLD
    assert lab.iloc[4] == 1 and lab.iloc[5] == -1 and lab.iloc[6] == 0
    # 100 -> 97 is -3%, but after those swings σ ≈ 3.3%: the threshold adapted, HOLD
    assert out["label_adaptive_threshold"].iloc[7] > 0.03
    assert lab.iloc[7] == 0
    assert lab.iloc[:4].isna().all()  # σ's warm-up
    assert np.isnan(lab.iloc[-1])  # future unknown: NaN, never HOLD


def test_adaptive_last_rows_unknown_on_longer_horizon() -> None:
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 300)))
    frame = pd.DataFrame({"close": close},
                         index=pd.date_range("2024", periods=300, freq="1h", tz="UTC"))
    out = adaptive_labels(frame, LabelConfig(future_window=24, vol_window=72))
    assert out["label_adaptive"].iloc[-24:].isna().all()
    assert out["label_adaptive"].iloc[72:-24].notna().all()
    assert set(out["label_adaptive"].dropna().unique()) == {-1.0, 0.0, 1.0}
    want = close[24:] / close[:-24] - 1
    np.testing.assert_allclose(out["label_adaptive_ret"].iloc[:-24], want, rtol=1e-12)


def test_forward_returns() -> None:
    frame = pd.DataFrame({"close": [100.0, 110.0, 121.0, 0.0, 50.0]})
    out = forward_returns(frame, horizons=(1, 2))
    assert list(out.columns) == ["fwd_ret_1", "fwd_ret_2"]
    assert out["fwd_ret_1"].iloc[0] == pytest.approx(math.log(1.1))
    assert out["fwd_ret_2"].iloc[0] == pytest.approx(math.log(1.21))
    assert np.isnan(out["fwd_ret_1"].iloc[2])  # to a zero price: undefined, not -inf
    assert np.isnan(out["fwd_ret_1"].iloc[-1]) and out["fwd_ret_2"].iloc[-2:].isna().all()
    with pytest.raises(ValueError):
        forward_returns(frame, horizons=(0,))


def test_class_balance() -> None:
    table = class_balance(pd.Series([1.0, 1.0, 0.0, -1.0, np.nan]))
    assert list(table.index) == ["SELL", "HOLD", "BUY", "unknown"]
    assert table["count"].tolist() == [1, 1, 2, 1]
    np.testing.assert_allclose(table["share"].iloc[:3], [0.25, 0.25, 0.5])
    assert np.isnan(table.loc["unknown", "share"])
    with pytest.raises(ValueError, match="-1, 0 or 1"):
        class_balance(pd.Series([1.0, 2.0]))


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        LabelConfig(future_window=0)
    with pytest.raises(ValueError):
        LabelConfig(vol_window=1)
    with pytest.raises(ValueError):
        LabelConfig(tp_multiplier=0.0)


def test_label_columns_are_marked() -> None:
    frame = _bars([(100.0, 100.5, 99.5, 100.0)] * 3)
    for block in (adaptive_labels(frame), triple_barrier_labels(frame), forward_returns(frame)):
        assert all(c.startswith(("label_", "fwd_")) for c in block.columns)


@pytest.mark.integration
def test_real_btc_class_balance(real_btc_1h: pd.DataFrame) -> None:
    cfg = LabelConfig()
    adaptive = class_balance(adaptive_labels(real_btc_1h, cfg)["label_adaptive"])
    barrier = class_balance(triple_barrier_labels(real_btc_1h, cfg)["label_tb"])
    print(f"\nBTCUSDT 1h, {cfg}\nadaptive:\n{adaptive}\ntriple barrier:\n{barrier}")
    unknown = cfg.vol_window + cfg.future_window
    assert adaptive.loc["unknown", "count"] == unknown
    assert barrier.loc["unknown", "count"] == cfg.vol_window + cfg.max_holding
    for table in (adaptive, barrier):
        for side in ("SELL", "BUY"):
            assert 0.22 < table.loc[side, "share"] < 0.38, (side, table)
    fwd = forward_returns(real_btc_1h)
    assert fwd["fwd_ret_24"].iloc[-24:].isna().all()
    assert fwd["fwd_ret_1"].dropna().abs().max() < 0.2


# -- round-trip costs -----------------------------------------------------------------
COST = 0.004  # large against WIDTH (~1.7%) so the shift is visible on a hand-made path
TB_COST = LabelConfig(vol_window=4, max_holding=3, tp_multiplier=1.0, sl_multiplier=1.0,
                      cost=COST)


def _entry_cost(path) -> pd.Series:
    return triple_barrier_labels(_bars(path), TB_COST).iloc[len(WARM) - 1]


def test_cost_moves_take_profit_out() -> None:
    # reaches the gross barrier but not gross + cost: a win before costs, not after
    path = [(100.0, UP + 0.05, 99.9, UP), (UP, UP, UP, UP), (UP, UP, UP, UP)]
    assert _entry(path)["label_tb"] == 1
    row = _entry_cost(path)
    assert row["label_tb"] == 0 and row["label_tb_barrier"] == "time"
    assert row["label_tb_ret"] == pytest.approx(UP / 100.0 - 1 - COST)
    # beyond gross + cost: take-profit, netting exactly the tp distance
    up_net = 100.0 * (1 + COST + WIDTH)
    row = _entry_cost([(100.0, up_net + 0.01, 99.9, up_net), *path[1:]])
    assert row["label_tb"] == 1 and row["label_tb_bars"] == 1
    assert row["label_tb_ret"] == pytest.approx(WIDTH)


def test_cost_keeps_stop_and_nets_the_loss() -> None:
    path = [(100.0, 100.2, DOWN - 0.01, DOWN), (DOWN, DOWN, DOWN, DOWN),
            (DOWN, DOWN, DOWN, DOWN)]
    row = _entry_cost(path)
    assert row["label_tb"] == -1 and row["label_tb_bars"] == 1
    assert row["label_tb_ret"] == pytest.approx(-WIDTH - COST)


def test_cost_signs_on_random_walk() -> None:
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 3000)))
    frame = _walk_bars(close, rng)
    gross = triple_barrier_labels(frame, LabelConfig(vol_window=24, max_holding=12))
    net = triple_barrier_labels(frame, LabelConfig(vol_window=24, max_holding=12,
                                                   cost=0.0012))
    tp, sl = net["label_tb"] == 1, net["label_tb"] == -1
    assert (net["label_tb_ret"][tp] > 0).all() and (net["label_tb_ret"][sl] < -0.0012).all()
    # costs only make a long harder to win: fewer take-profits, never more
    assert tp.sum() < (gross["label_tb"] == 1).sum()
    # the stop barrier does not move: a gross stop is the same stop, at the same bar
    was_sl = gross["label_tb"] == -1
    assert (net["label_tb"][was_sl] == -1).all()
    np.testing.assert_array_equal(net["label_tb_bars"][was_sl], gross["label_tb_bars"][was_sl])


def _walk_bars(close: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.004, len(close)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.004, len(close)))
    idx = pd.date_range("2024-01-01", periods=len(close), freq="1h", tz="UTC")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close}, index=idx)


def _reference_gross(frame: pd.DataFrame, cfg: LabelConfig) -> tuple[np.ndarray, np.ndarray]:
    """The gross rule written out plainly (the pre-cost formula): label and return."""
    o, h, lo, c = (frame[k].to_numpy() for k in ("open", "high", "low", "close"))
    r = np.log(c[1:] / c[:-1])
    n, hz, vw = len(c), cfg.max_holding, cfg.vol_window
    label, ret = np.full(n, np.nan), np.full(n, np.nan)
    for t in range(vw, n - hz):
        w = np.std(r[t - vw:t], ddof=1) * np.sqrt(hz)
        up, down = c[t] * (1.0 + cfg.tp_multiplier * w), c[t] * (1.0 - cfg.sl_multiplier * w)
        label[t], ret[t] = 0.0, c[t + hz] / c[t] - 1.0
        for j in range(t + 1, t + hz + 1):
            if lo[j] <= down:
                label[t], ret[t] = -1.0, min(down, o[j]) / c[t] - 1.0
                break
            if h[j] >= up:
                label[t], ret[t] = 1.0, up / c[t] - 1.0
                break
    return label, ret


def test_zero_cost_is_the_gross_label_bit_for_bit() -> None:
    rng = np.random.default_rng(11)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 800)))
    frame = _walk_bars(close, rng)
    cfg = LabelConfig(vol_window=24, max_holding=12, cost=0.0)
    out = triple_barrier_labels(frame, cfg)
    label, ret = _reference_gross(frame, cfg)
    known = ~np.isnan(out["label_tb"].to_numpy())
    # σ may differ from np.std in the last bit; barriers equal up to that, labels exactly
    np.testing.assert_array_equal(out["label_tb"].to_numpy()[known], label[known])
    np.testing.assert_allclose(out["label_tb_ret"].to_numpy()[known], ret[known], rtol=1e-12)
    pd.testing.assert_frame_equal(out, triple_barrier_labels(frame, LabelConfig(
        vol_window=24, max_holding=12)))


def test_cost_validation() -> None:
    for bad in (-0.001, float("nan"), 1.0):
        with pytest.raises(ValueError, match="cost"):
            LabelConfig(cost=bad)


@pytest.mark.integration
def test_real_btc_net_of_costs(real_btc_1h: pd.DataFrame) -> None:
    gross = triple_barrier_labels(real_btc_1h, LabelConfig())
    net = triple_barrier_labels(real_btc_1h, LabelConfig(cost=0.0012))
    g, c = class_balance(gross["label_tb"]), class_balance(net["label_tb"])
    print(f"\nBTCUSDT 1h triple barrier, gross:\n{g}\nnet of 0.12% round trip:\n{c}")
    assert c.loc["BUY", "share"] < g.loc["BUY", "share"]
    assert c.loc["SELL", "share"] == pytest.approx(g.loc["SELL", "share"], abs=0.01)
    tp = net["label_tb"] == 1
    assert (net["label_tb_ret"][tp] > 0).all()
    was_sl = gross["label_tb"] == -1
    assert (net["label_tb"][was_sl] == -1).all()  # the stop did not move
    np.testing.assert_allclose(net["label_tb_ret"][was_sl],
                               gross["label_tb_ret"][was_sl] - 0.0012, atol=1e-15)
