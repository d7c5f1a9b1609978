"""``perptrader demo``: the main job on the embedded default: import market data, show
what is stored, build features and labels (with the look-ahead and live-path checks),
then backtest the baseline strategies and write their reports, train the models
walk-forward beside their baselines and the RL agents, and paper-trade a month beside a
backtest of the same policy (the parity line)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from perptrader.commands.backtest import backtest_demo_stage
from perptrader.commands.common import console, err_console, settings, store_session
from perptrader.commands.data import import_table, inventory_table, run_import
from perptrader.commands.features import features_demo_stage
from perptrader.commands.ml import ml_demo_stage
from perptrader.commands.rl import rl_demo_stage
from perptrader.commands.trade import paper_demo_stage
from perptrader.marketdata.sources.base import ImportHints

DEMO_DATA_ENV = "PERPTRADER_DEMO_DATA"


def demo(
    reimport: bool = typer.Option(False, "--import", help="Import the demo data even when "
                                  "the store already holds data."),
) -> None:
    """Import market data (if the store is empty), build features, backtest baselines."""
    cfg = settings()
    with store_session(cfg) as store:
        console.rule(f"perptrader demo · store: {store.backend} · data dir: {cfg.data_dir}")
        series = store.inventory()
        if series and not reimport:
            console.print(f"Using the {len(series)} series already in the store "
                          f"(--import to import {DEMO_DATA_ENV} again).")
        else:
            folder = os.environ.get(DEMO_DATA_ENV, "").strip()
            if not folder or not Path(folder).exists():
                err_console.print(
                    "[yellow]No market data.[/yellow] The store is empty and "
                    f"{DEMO_DATA_ENV} does not name an existing folder"
                    + (f" ({folder!r})" if folder else "") + ".\n"
                    "Get data and import it, for example:\n"
                    "  - daily/monthly dumps from data.binance.vision (klines, fundingRate, "
                    "metrics) or freqtrade's download-data output, then\n"
                    "    perptrader data import PATH\n"
                    f"  - or point {DEMO_DATA_ENV} at a folder of such files and run "
                    "make demo again.")
                raise typer.Exit(1)
            console.print(f"Importing {folder} ...")
            reports = run_import(store, [Path(folder)], ImportHints(), None, show_progress=True)
            console.print(import_table(reports))
            ok = sum(r.status == "imported" for r in reports)
            console.print(f"{ok} files imported, {len(reports) - ok} refused, "
                          f"{sum(r.rows_inserted for r in reports):,} rows inserted, "
                          f"{sum(r.rows_updated for r in reports):,} rows updated")
            series = store.inventory()
        console.print(inventory_table(series))
        console.rule("Features and labels")
        features_demo_stage(store, cfg.data_dir / "features")
        console.rule("Backtests of the baseline strategies")
        backtest_demo_stage(store, console, cfg.data_dir / "backtests")
        console.rule("Machine learning: walk-forward models beside baselines")
        ml_demo_stage(store, console, cfg.data_dir / "ml")
        console.rule("Reinforcement learning: PPO agents out of sample beside baselines")
        rl_demo_stage(store, console)
        console.rule("Paper trading: a one-month replay on the backtester's accounting core")
        paper_demo_stage(store, console, cfg.data_dir)
