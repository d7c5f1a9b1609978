"""Margin brackets for every symbol a user can import: published tables for the main
symbols, a brackets file (--tiers FILE), and the DEFAULT ladder with a warning (or an
error with --strict-tiers) for the rest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from perptrader.cli import app
from perptrader.config import load_settings
from perptrader.core.errors import PerptraderError
from perptrader.marketdata.store.duckdb_store import DuckDBStore
from perptrader.sim import (
    Account,
    MarketData,
    SimConfig,
    load_tiers,
    load_tiers_file,
    simulate,
    tiers_scope,
)
from perptrader.sim.tiers import published_symbols, symbol_key
from sim.sim_frames import make_frame, targets_at
from store_frames import fill_store

#: the symbols the issue found refused, plus the two that always worked
MAIN = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT", "XRPUSDT", "BNBUSDT", "SUIUSDT",
        "1000PEPEUSDT", "WIFUSDT", "LTCUSDT")


@pytest.mark.parametrize("symbol", MAIN)
def test_main_symbols_have_consistent_published_brackets(symbol: str) -> None:
    t = load_tiers("binance", symbol)
    assert not t.fallback and t.source.startswith(f"binance:{symbol}")
    assert t.notional_floor[0] == 0 and np.all(t.notional_cap[:-1] == t.notional_floor[1:])
    assert np.all(np.diff(t.mmr) > 0) and np.all(np.diff(t.max_leverage) < 0)
    # cum_k = cum_k-1 + floor_k * (mmr_k - mmr_k-1): MM is continuous at every floor
    for k in range(1, len(t.mmr)):
        at = t.notional_floor[k]
        below = at * t.mmr[k - 1] - t.cum[k - 1]
        above = at * t.mmr[k] - t.cum[k]
        assert above == pytest.approx(below, abs=1e-6)


def test_published_values_spot_checks() -> None:
    # Binance USD-M brackets of the 2024 snapshot (freqtrade binance_leverage_tiers.json)
    sol = load_tiers("binance", "SOLUSDT")
    assert (sol.notional_cap[0], sol.mmr[0], sol.max_leverage[0]) == (20_000, 0.005, 100)
    pepe = load_tiers("binance", "1000PEPEUSDT")
    assert (pepe.mmr[0], pepe.max_leverage[0], pepe.cum[1]) == (0.0065, 75, 70)
    doge = load_tiers("binance", "DOGEUSDT")
    assert doge.maintenance_margin(100_000) == pytest.approx(100_000 * 0.01 - 170)
    assert set(MAIN) <= set(published_symbols())
    assert symbol_key("SOL/USDT:USDT") == "SOLUSDT"
    assert symbol_key("BTC/USDT:USDT-240927") == "BTCUSDT_240927"


@pytest.mark.parametrize("symbol", [s for s in MAIN if s not in ("BTCUSDT", "ETHUSDT")])
def test_buy_and_hold_runs_on_every_main_symbol(symbol: str) -> None:
    m = MarketData.from_frame(make_frame([1.0, 1.0, 1.1, 1.1]), symbol=symbol,
                              timeframe="1h", require_funding=False)
    r = simulate(m, targets_at(4, {0: 0.5, 2: 0.0}), SimConfig(strict_tiers=True))
    assert r.final_equity > 10_000
    assert not [w for w in r.warnings if "margin tiers" in w]


def test_default_ladder_warns_and_strict_refuses() -> None:
    m = MarketData.from_frame(make_frame([1.0] * 4), symbol="FOOUSDT", timeframe="1h",
                              require_funding=False)
    r = simulate(m, targets_at(4, {0: 1.0, 2: 0.0}), SimConfig())
    assert [w for w in r.warnings if "DEFAULT ladder" in w and "FOOUSDT" in w]
    with pytest.raises(PerptraderError, match="--tiers FILE"):
        simulate(m, targets_at(4, {0: 1.0}), SimConfig(strict_tiers=True))
    with tiers_scope(strict=True), pytest.raises(PerptraderError, match="margin tiers"):
        simulate(m, targets_at(4, {0: 1.0}), SimConfig())
    acc = Account(SimConfig(), "FOOUSDT")
    assert acc.tiers.fallback and "DEFAULT ladder" in acc.warnings[0]
    assert not Account(SimConfig(), "SOLUSDT").warnings
    # the DEFAULT ladder caps leverage at 20x: more is refused, as Binance would
    with pytest.raises(PerptraderError, match="exceeds the maximum 20x"):
        simulate(m, targets_at(4, {0: 1.0}), SimConfig(leverage=25))


# ---- brackets files ------------------------------------------------------------------------

OWN = {"symbols": {"FOOUSDT": [
    {"notional_floor": 0, "notional_cap": 10_000, "mmr": 0.01, "max_leverage": 50, "cum": 0},
    {"notional_floor": 10_000, "notional_cap": 100_000, "mmr": 0.02, "max_leverage": 25,
     "cum": 100}]}}
BINANCE = [{"symbol": "FOOUSDT", "brackets": [
    {"bracket": 1, "initialLeverage": 50, "notionalCap": 10000, "notionalFloor": 0,
     "maintMarginRatio": 0.01, "cum": 0.0},
    {"bracket": 2, "initialLeverage": 25, "notionalCap": 100000, "notionalFloor": 10000,
     "maintMarginRatio": 0.02, "cum": 100.0}]}]
CCXT = {"FOO/USDT:USDT": [
    {"tier": 1, "minNotional": 0, "maxNotional": 10000, "maintenanceMarginRate": 0.01,
     "maxLeverage": 50, "info": {"cum": "0.0"}},
    {"tier": 2, "minNotional": 10000, "maxNotional": 100000, "maintenanceMarginRate": 0.02,
     "maxLeverage": 25, "info": {}}]}  # cum missing: derived (100)


@pytest.mark.parametrize("content", [OWN, BINANCE, CCXT], ids=["own", "binance", "ccxt"])
def test_brackets_file_formats(tmp_path: Path, content: object) -> None:
    path = tmp_path / "tiers.json"
    path.write_text(json.dumps(content))
    table = load_tiers_file(path)
    t = table.get("FOOUSDT")
    assert t is not None and not t.fallback and t.source == f"file:{path}"
    assert list(t.cum) == [0.0, 100.0] and list(t.max_leverage) == [50.0, 25.0]
    assert t.maintenance_margin(50_000) == pytest.approx(50_000 * 0.02 - 100)
    m = MarketData.from_frame(make_frame([1.0] * 4), symbol="FOOUSDT", timeframe="1h",
                              require_funding=False)
    r = simulate(m, targets_at(4, {0: 1.0}), SimConfig(tiers_table=table, strict_tiers=True))
    assert not [w for w in r.warnings if "DEFAULT" in w]
    assert r.market_info["tiers"]["FOOUSDT"] == f"file:{path}"
    with tiers_scope(table, strict=True):  # what `backtest run --tiers` opens
        r2 = simulate(m, targets_at(4, {0: 1.0}), SimConfig())
    assert r2.market_info["tiers"]["FOOUSDT"] == f"file:{path}"


def test_bad_brackets_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PerptraderError, match="does not exist"):
        load_tiers_file(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PerptraderError, match="not readable JSON"):
        load_tiers_file(bad)
    rows = json.loads(json.dumps(OWN))
    rows["symbols"]["FOOUSDT"][1]["cum"] = 99  # inconsistent with the rates
    bad.write_text(json.dumps(rows))
    with pytest.raises(PerptraderError, match="cum 99 != 100"):
        load_tiers_file(bad)
    rows["symbols"]["FOOUSDT"][1].update(cum=200, notional_floor=20_000)  # a gap
    bad.write_text(json.dumps(rows))
    with pytest.raises(PerptraderError, match="contiguous"):
        load_tiers_file(bad)
    del rows["symbols"]["FOOUSDT"][1]["mmr"]
    bad.write_text(json.dumps(rows))
    with pytest.raises(PerptraderError, match="lacks mmr"):
        load_tiers_file(bad)


# ---- the CLI -------------------------------------------------------------------------------

runner = CliRunner()


def _store(symbol: str) -> None:
    path = load_settings().data_dir / "market.duckdb"
    path.parent.mkdir(parents=True, exist_ok=True)
    with DuckDBStore(path) as s:
        s.migrate()
        fill_store(s, n=200, symbol=symbol)


def test_backtest_cli_default_ladder_warning_tiers_file_and_strict(tmp_path: Path) -> None:
    _store("FOOUSDT")
    base = ["backtest", "run", "--symbol", "FOOUSDT", "--strategy", "buy_and_hold", "--json"]
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    js = orjson.loads(res.stdout)
    assert [w for w in js["warnings"] if "FOOUSDT: no published margin tiers" in w]
    assert "DEFAULT ladder" in (tmp_path / "a" / "report.html").read_text()
    assert "DEFAULT ladder" in (load_settings().log_file).read_text()  # and the JSON log

    res = runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--strict-tiers"])
    assert res.exit_code == 1 and "margin tiers" in res.output

    tiers = tmp_path / "tiers.json"
    tiers.write_text(json.dumps(BINANCE))
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "c"), "--strict-tiers",
                              "--tiers", str(tiers)])
    assert res.exit_code == 0, res.output
    assert not [w for w in orjson.loads(res.stdout)["warnings"] if "margin tiers" in w]

    res = runner.invoke(app, [*base, "--out", str(tmp_path / "d"), "--tiers",
                              str(tmp_path / "missing.json")])
    assert res.exit_code == 1 and "does not exist" in res.output


def test_backtest_cli_published_altcoin_needs_no_flag(tmp_path: Path) -> None:
    _store("SOLUSDT")
    res = runner.invoke(app, ["backtest", "run", "--symbol", "SOLUSDT", "--strategy",
                              "buy_and_hold", "--strict-tiers", "--json", "--out",
                              str(tmp_path / "sol")])
    assert res.exit_code == 0, res.output
    assert not [w for w in orjson.loads(res.stdout)["warnings"] if "margin tiers" in w]


def test_paper_run_spec_carries_a_tiers_file_and_keeps_old_run_ids(tmp_path: Path) -> None:
    from perptrader.trading.spec import RunSpec

    plain = RunSpec(mode="paper", strategy="sma_cross", symbols=("FOOUSDT",), timeframe="1h",
                    replay=("2024-01-01T00:00:00+00:00", "2024-02-01T00:00:00+00:00"))
    assert "tiers" not in plain.config()  # runs started before --tiers keep their id
    assert plain.sim_config().tiers_table is None
    path = tmp_path / "tiers.json"
    path.write_text(json.dumps(OWN))
    with_file = RunSpec(**{**plain.__dict__, "tiers": str(path)})
    assert with_file.config()["tiers"] == str(path) and with_file.run_id != plain.run_id
    acc = Account(with_file.sim_config(), "FOOUSDT")
    assert acc.tiers.source == f"file:{path}" and not acc.warnings
    assert with_file.differences(plain.config()) == [f"tiers: stored None, now {str(path)!r}"]
