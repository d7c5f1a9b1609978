"""Properties that must hold for ANY price path and target series (hypothesis)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perptrader.sim import Account, CostModel, MarketData, SimConfig, simulate
from sim.sim_frames import make_frame


@st.composite
def scenarios(draw):
    n = draw(st.integers(8, 60))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    vol = draw(st.sampled_from([0.002, 0.02, 0.08]))
    close = 100 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    open_ = np.concatenate([[100.0], close[:-1] * np.exp(rng.normal(0, vol / 2, n - 1))])
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, vol, n)))
    low = np.minimum(open_, close) * (1 - np.minimum(np.abs(rng.normal(0, vol, n)), 0.5))
    noise = 1 + rng.normal(0, vol / 4, n)
    marks = {"mark_open": open_ * noise, "mark_close": close * noise}
    marks["mark_high"] = np.maximum(high * noise, np.maximum(marks["mark_open"],
                                                             marks["mark_close"]))
    marks["mark_low"] = np.minimum(low * noise, np.minimum(marks["mark_open"],
                                                           marks["mark_close"]))
    start = pd.Timestamp("2024-01-01", tz="UTC")
    funding = {start + pd.Timedelta(hours=8 * k): float(rng.normal(0, 0.0005))
               for k in range(n // 8 + 2)}
    frame = make_frame(open_, high, low, close, marks=marks,
                       funding={str(k.tz_convert(None)): v for k, v in funding.items()})
    raw = rng.uniform(-3, 3, n).round(1)
    raw[rng.uniform(size=n) < 0.5] = np.nan
    config = SimConfig(
        leverage=draw(st.sampled_from([1.0, 2.0, 5.0, 20.0, 50.0])),
        margin_mode=draw(st.sampled_from(["isolated", "cross"])),
        stop_loss=draw(st.sampled_from([None, 0.01, 0.05])),
        take_profit=draw(st.sampled_from([None, 0.03])),
        trailing_stop=draw(st.sampled_from([None, 0.02])),
        fill_delay=draw(st.integers(1, 3)),
        costs=CostModel(slippage_bps=draw(st.sampled_from([0.0, 2.0])),
                        slippage_model=draw(st.sampled_from(["fixed", "volatility"])),
                        vol_window=3),
    )
    return frame, raw, config


SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _run(frame, targets, config):
    market = MarketData.from_frame(frame, symbol="BTCUSDT", timeframe="1h")
    return market, simulate(market, targets, config)


@SETTINGS
@given(scenarios())
def test_equity_identity_every_bar(case) -> None:
    frame, targets, config = case
    _, r = _run(frame, targets, config)
    b = r.bars
    # equity == initial + realized - fees + funding (+ = received) + unrealized
    rebuilt = (config.initial_cash + b["realized_pnl"] - b["fees"].cumsum()
               + b["funding"].cumsum() + b["unrealized_pnl"])
    np.testing.assert_allclose(b["equity"], rebuilt, rtol=1e-9, atol=1e-6)
    assert r.fees_paid == np.float64(b["fees"].sum()) or np.isclose(r.fees_paid,
                                                                   b["fees"].sum())
    assert np.isclose(r.funding_paid, -b["funding"].sum())
    # closed trades add up to the realized PnL of closed positions
    if len(r.trades) and b["position_qty"].iloc[-1] == 0:
        assert np.isclose(r.trades["gross_pnl"].sum(), b["realized_pnl"].iloc[-1])


@SETTINGS
@given(scenarios())
def test_no_fill_before_its_signal(case) -> None:
    frame, targets, config = case
    _, r = _run(frame, targets, config)
    signal = r.fills[r.fills["reason"] == "signal"]
    for bar in signal["bar"]:
        decision = bar - config.fill_delay
        assert decision >= 0 and not np.isnan(targets[decision])
    # every exit needs a position, which needs an earlier signal fill
    if len(r.fills):
        first_signal = signal["bar"].min() if len(signal) else np.inf
        assert r.fills["bar"].min() >= first_signal


@SETTINGS
@given(scenarios())
def test_exposure_at_fill_within_leverage(case) -> None:
    frame, targets, config = case
    market, r = _run(frame, targets, config)
    b = r.bars
    per_bar = r.fills.groupby("bar")["reason"].agg(list)
    for bar, reasons in per_bar.items():
        if reasons != ["signal"]:
            continue  # an exit in the same bar changes the equity the fill was sized on
        if bar == 0:
            continue
        prev = b.iloc[bar - 1]
        equity_open = prev["wallet_balance"] + prev["position_qty"] * (
            market.mark_open[bar] - prev["entry_price"])
        fill = r.fills[r.fills["bar"] == bar].iloc[0]
        after = abs(b["position_qty"].iloc[bar]) * fill["price"]
        assert after <= config.leverage * max(equity_open, 0.0) * (1 + 1e-9) + 1e-6


@SETTINGS
@given(scenarios())
def test_isolated_wallet_never_negative(case) -> None:
    frame, targets, config = case
    if config.margin_mode != "isolated":
        config = SimConfig(**{**config.__dict__, "margin_mode": "isolated"})
    _, r = _run(frame, targets, config)
    assert (r.bars["wallet_balance"] >= -1e-9).all()
    assert (r.bars["equity"] >= -1e-9).all()


@SETTINGS
@given(scenarios())
def test_step_path_equals_array_path(case) -> None:
    frame, targets, config = case
    market, r = _run(frame, targets, config)
    acct = Account(config, "BTCUSDT", timeframe="1h")
    equity = np.array([acct.step(market.bar(i), targets[i]).equity
                       for i in range(len(market))])
    np.testing.assert_array_equal(np.round(equity, 2), np.round(r.bars["equity"], 2))
    assert len(acct.fills) == len(r.fills)
    assert acct.liquidations == r.liquidations


@SETTINGS
@given(scenarios(), st.integers(min_value=0, max_value=10_000))
def test_snapshot_restore_continues_exactly(case, cut_seed) -> None:
    """An account saved after any bar and restored goes on bit for bit like one that was
    never stopped (what the paper engine's crash recovery relies on)."""
    frame, targets, config = case
    market, _ = _run(frame, targets, config)
    n = len(market)
    cut = cut_seed % n
    whole = Account(config, "BTCUSDT", timeframe="1h")
    reports = [whole.step(market.bar(i), targets[i]) for i in range(n)]
    part = Account(config, "BTCUSDT", timeframe="1h")
    for i in range(cut):
        part.step(market.bar(i), targets[i])
    part = Account.restore(part.snapshot(), config, "BTCUSDT", timeframe="1h")
    for i in range(cut, n):
        rep = part.step(market.bar(i), targets[i])
        assert rep.equity == reports[i].equity and rep.fills == reports[i].fills
        assert rep.trades == reports[i].trades
    assert part.snapshot() == whole.snapshot()
