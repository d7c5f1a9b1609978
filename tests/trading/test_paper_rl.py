"""An ``rl:`` agent paper-trades on the REAL account it decides from, and the run equals
the backtest of the same agent over the same bars (the backtest replays the agent through
its own rollout account): one policy, one accounting core, two paths."""

from __future__ import annotations

import pytest

from perptrader.marketdata.store.duckdb_store import DuckDBStore
from perptrader.persistence import open_trading_db
from perptrader.strategies import get_strategy
from perptrader.trading.engine import Engine
from perptrader.trading.feeds import ReplayFeed
from perptrader.trading.parity import backtest_of, compare
from perptrader.trading.spec import RunSpec
from rl.test_rl_policy_decide import DECIDED, agent, isolate  # noqa: F401  (fixture)


@pytest.mark.slow
def test_rl_paper_run_equals_its_backtest(agent, monkeypatch, tmp_path) -> None:  # noqa: F811
    data_dir, frame = agent
    isolate(monkeypatch, data_dir)
    policy = get_strategy("rl:t")
    end = frame.index[policy.warmup_bars + DECIDED]
    spec = RunSpec(mode="paper", strategy="rl:t", symbols=("BTCUSDT",), timeframe="1h",
                   replay=(frame.index[0].isoformat(), end.isoformat()))
    with DuckDBStore(data_dir / "market.duckdb") as store, \
            open_trading_db(None, tmp_path) as journal:
        feed = ReplayFeed(store, spec.symbols, "1h", frame.index[0], end)
        engine = Engine.open(journal, spec, policy, feed, commit_every=32)
        assert engine.broker.accounts["BTCUSDT"].config.leverage == 2.0  # the agent's 2x
        assert engine.run() == "finished"
        bt = backtest_of(store, spec, get_strategy("rl:t"), "BTCUSDT")
        parity = compare(journal, engine.run_id, bt)
        decisions = journal.decisions(engine.run_id)
    # every decision names the agent version it came from
    assert decisions and all(d["policy"] == "rl:t" and d["policy_version"] for d in decisions)
    assert parity.paper["fills"] > 2, "the agent never traded: no real check"
    assert parity.ok, parity.line()
