"""The look-ahead check: every shipped policy passes it, a planted one-bar leak fails it,
and the CLI exits 1 naming the first bar that moved."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import talib

from perptrader.strategies import REGISTRY, get_strategy
from perptrader.strategies.base import PolicyBase, close_prices
from perptrader.strategies.lookahead import choose_cuts, lookahead_check, perturb_after
from strategies.policy_frames import ohlcv


@dataclass(frozen=True)
class PeekingSmaCross(PolicyBase):
    """sma_cross on the NEXT bar's close (the last bar padded with its own): a one-bar
    leak that turns a losing rule into a winning one on real data."""

    fast: int = 20
    slow: int = 50
    name = "peeking_sma_cross"

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        close = close_prices(frame)
        nxt = np.r_[close[1:], close[-1:]]
        diff = talib.SMA(nxt, self.fast) - talib.SMA(nxt, self.slow)
        return np.where(diff > 0, 1.0, np.where(diff < 0, -1.0, 0.0))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_shipped_policy_passes(name: str) -> None:
    report = lookahead_check(get_strategy(name), ohlcv(400, seed=1), seed=2)
    assert report.ok, report.as_json()
    assert report.cuts == 400 - 1 - max(1, get_strategy(name).warmup_bars)


def test_a_one_bar_leak_is_caught_at_its_first_bar() -> None:
    frame = ohlcv(900, seed=4)
    report = lookahead_check(PeekingSmaCross(), frame, cuts=50, seed=0)
    assert not report.ok
    # the leak reads bar t+1: the moved bar is the one just before the cut
    detail = report.details[0]
    assert pd.Timestamp(detail["moved_bar"]) == pd.Timestamp(detail["cut_at"])
    assert report.failing_cuts >= 5  # a flip needs the next bar to move the SMA sign


def test_perturbation_changes_only_rows_after_the_cut() -> None:
    frame = ohlcv(30)
    out = perturb_after(frame, 9, np.random.default_rng(0))
    pd.testing.assert_frame_equal(out.iloc[:10], frame.iloc[:10])
    assert (out["close"].iloc[10:] != frame["close"].iloc[10:]).all()
    assert (out["high"] >= out[["open", "close"]].max(axis=1) - 1e-9).all()
    assert (out["low"] <= out[["open", "close"]].min(axis=1) + 1e-9).all()


def test_cut_choice_every_bar_when_short_and_random_when_long() -> None:
    rng = np.random.default_rng(0)
    assert list(choose_cuts(10, 1, 500, rng)) == list(range(1, 9))
    long = choose_cuts(20_000, 50, 500, rng)
    assert 500 <= len(long) <= 502 and long[0] == 50 and long[-1] == 19_998


def test_cli_exits_1_naming_the_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end on a temporary store: a shipped policy passes (exit 0); the planted
    leak, registered under a prefix of its own, fails with exit 1 and names the bar."""
    from typer.testing import CliRunner

    from perptrader.cli import app
    from perptrader.config import load_settings
    from perptrader.marketdata.store.duckdb_store import DuckDBStore
    from perptrader.strategies import registry
    from store_frames import fill_store

    path = load_settings().data_dir / "market.duckdb"
    path.parent.mkdir(parents=True, exist_ok=True)
    with DuckDBStore(path) as store:
        store.migrate()
        fill_store(store, n=400)
    runner = CliRunner()
    ok = runner.invoke(app, ["strategies", "lookahead-check", "sma_cross", "--json"])
    assert ok.exit_code == 0, ok.output
    monkeypatch.setitem(registry._PREFIXES, "leak:",
                        (lambda name, params: PeekingSmaCross(), "planted leak"))
    bad = runner.invoke(app, ["strategies", "lookahead-check", "leak:sma"])
    assert bad.exit_code == 1
    assert "LOOK-AHEAD" in bad.output and "moved" in bad.output
