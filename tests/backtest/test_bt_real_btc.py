"""The four baselines on the real BTCUSDT perp 1h frame (2023-01 .. 2025-06)."""

from __future__ import annotations

import numpy as np
import pytest

from perptrader.backtest.engine import run_on_frame
from perptrader.strategies import BASELINES, get_strategy


@pytest.mark.integration
def test_four_baselines_on_real_btc_1h(real_btc_1h) -> None:
    frame = real_btc_1h
    results = {name: run_on_frame(frame, get_strategy(name), symbol="BTCUSDT",
                                  timeframe="1h", n_trials=len(BASELINES))
               for name in BASELINES}
    bh = results["buy_and_hold"]
    close = frame["close"].to_numpy()
    # long 1x from the open of the second bar: price change less a round of costs/funding
    price_ret = close[-1] / frame["open"].iloc[1] - 1
    assert bh.metrics["total_return"] == pytest.approx(price_ret, rel=0.15)
    assert bh.metrics["funding_paid"] > 0  # longs paid funding over 2023-2025
    assert bh.metrics["max_drawdown"] < -0.2
    for name in ("sma_cross", "vsa", "random"):
        m = results[name].metrics
        assert m["trades"] > 20, name
        assert 0.05 < m["time_in_market"] <= 1.0, name
        assert m["fees_paid"] > 0 and np.isfinite(m["sharpe"]), name
        # the benchmark of every run is the same buy-and-hold
        assert results[name].benchmark_metrics["final_equity"] == pytest.approx(
            bh.metrics["final_equity"])
    assert results["random"].metrics["liquidations"] == 0
