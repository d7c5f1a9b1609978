"""The ``perptrader`` command: ``perptrader <group> <command>``."""

from __future__ import annotations

import atexit
import os
import sys

import typer

from perptrader import __version__
from perptrader.commands import (
    audit,
    data,
    features,
    ml,
    notify,
    research,
    rl,
    strategies,
    trade,
    users,
)
from perptrader.commands.backtest import app as backtest_app
from perptrader.commands.demo import demo
from perptrader.commands.serve import serve
from perptrader.commands.tune import tune
from perptrader.commands.venues import fake_exchange

app = typer.Typer(
    name="perptrader",
    help="Research, backtest, paper-trade and live-trade crypto perpetual futures.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data.app, name="data")
app.add_typer(features.app, name="features")
app.add_typer(backtest_app, name="backtest")
app.add_typer(strategies.app, name="strategies")
app.command("demo")(demo)
app.command("train")(ml.train)
app.command("predict")(ml.predict)
app.add_typer(ml.models_app, name="models")
app.command("tune")(tune)
app.add_typer(rl.app, name="rl")
app.add_typer(research.app, name="research")
app.add_typer(trade.app, name="trade")
app.add_typer(audit.app, name="audit")
app.add_typer(notify.app, name="notify")
app.command("serve")(serve)
app.add_typer(users.app, name="users")
app.command("fake-exchange")(fake_exchange)


@app.command("version")
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command("config")
def config() -> None:
    """Print the effective settings (file + environment + defaults) as JSON."""
    from perptrader.commands.common import print_json, settings

    print_json(settings().model_dump(mode="json"))


def main() -> None:
    """Run the command, then leave without tearing modules down when DuckDB was loaded.

    DuckDB's Python module (nanobind) reports its own module-level type objects as
    "leaked" when the interpreter finalizes modules, dozens of lines after the command's
    output, although every connection of ours is closed. So after the command: flush,
    run the exit handlers (logging, Ray, TensorBoard writers...), and end the process
    with its exit code, skipping only the module teardown that prints those lines."""
    code = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int | None):
            sys.stderr.write(f"{exc.code}\n")
    if "duckdb" not in sys.modules:
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":
    main()
