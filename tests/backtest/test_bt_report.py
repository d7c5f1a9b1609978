"""The HTML report: one offline file with every section; line thinning keeps extremes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from perptrader.backtest.engine import run_backtest
from perptrader.backtest.report import SECTIONS, monthly_returns, thin_indices, write_report
from perptrader.strategies import get_strategy


def test_report_is_self_contained_with_every_section(store, fill, tmp_path: Path) -> None:
    fill(store, n=1500)
    res = run_backtest("BTCUSDT", "1h", get_strategy("sma_cross", {"fast": 5, "slow": 20}),
                       store=store)
    path = write_report(res, tmp_path / "sub" / "report.html")
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=[\"']?https?:", text, re.IGNORECASE)
    assert text.count("<h2>") == len(SECTIONS)
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in text
    assert "plotly" in text.lower() and len(text) > 1_000_000  # plotly.js is inlined
    assert "buy_and_hold" in text and "sma_cross" in text


def test_thin_indices_keeps_extremes_and_ends() -> None:
    rng = np.random.default_rng(0)
    y = np.cumsum(rng.normal(size=100_000))
    keep = thin_indices(y, 20_000)
    assert len(keep) <= 20_002
    assert keep[0] == 0 and keep[-1] == len(y) - 1
    assert y.argmax() in keep and y.argmin() in keep
    np.testing.assert_array_equal(thin_indices(y[:500], 20_000), np.arange(500))


def test_monthly_returns_by_hand() -> None:
    idx = pd.DatetimeIndex(["2024-01-10", "2024-01-31", "2024-02-15", "2024-03-01"], tz="UTC")
    table = monthly_returns(pd.Series([105.0, 110.0, 99.0, 108.9], index=idx), 100.0)
    row = table.loc[2024]
    np.testing.assert_allclose(row[[1, 2, 3]].to_numpy(), [0.10, -0.10, 0.10])
    assert row[[4, 12]].isna().all()
