"""Bad input anywhere on the command line gives a message and an exit code, never a
traceback.

Every command of the Typer app is found programmatically (a new command is covered
without editing this file) and run with each of its options set to bad values, the
other required options given plausible ones. Long-running cores (serving the fake
exchange, collecting, downloading) are replaced by a stub: reaching one means the bad
value was accepted, which is allowed here; a traceback is not. The ten inputs of the
hardening issue are then checked one by one for a one-line error and a non-zero exit.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

import perptrader.core.logging as core_logging
from perptrader.cli import app

runner = CliRunner()
H = 3_600_000
T0 = 1_735_689_600_000  # 2025-01-01
BARS = 120
PER_CALL_S = 20


class Reached(Exception):
    """A stubbed long-running core was reached: the command accepted its input."""


class Hung(Exception):
    """A command ran past PER_CALL_S."""


def _commands() -> list[tuple[list[str], object]]:
    root = typer.main.get_command(app)
    ctx = root.make_context("perptrader", [], resilient_parsing=True)
    found: list[tuple[list[str], object]] = []

    def walk(cmd: object, path: list[str]) -> None:
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):  # type: ignore[attr-defined]
                walk(cmd.get_command(ctx, name), [*path, name])  # type: ignore[attr-defined]
        else:
            found.append((path, cmd))

    walk(root, [])
    return found


COMMANDS = _commands()

#: plausible values for required parameters, by option / argument name
GOOD = {
    "--symbol": "BTCUSDT", "--timeframe": "1h", "--kind": "ohlcv", "--model": "gbdt",
    "--name": "nothing_here", "--strategy": "buy_and_hold", "--start": "2025-01-01",
    "name": "buy_and_hold", "--replay": "2025-01-01..2025-01-03",
}
#: bad values by the parameter's type name
BAD = {
    "integer": ["-1"],
    "float": ["-1"],
    # never a path a command could create (an --out folder): /proc refuses new entries
    "path": ["/proc/nope/x", "/proc/nope.gz"],
    "text": ["!!"],
    "choice": ["moon"],
    "boolean": [],
}


def _type_name(param: object) -> str:
    """integer / float / path / choice / boolean / text, from the parameter's annotation."""
    if getattr(param, "is_flag", False):
        return "boolean"
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", str)
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    base = args[0] if args else annotation
    base = (getattr(base, "__args__", None) or (base,))[0]  # list[Path] -> Path
    if isinstance(base, type):
        if issubclass(base, bool):
            return "boolean"
        if issubclass(base, enum.Enum):
            return "choice"
        if issubclass(base, int):
            return "integer"
        if issubclass(base, float):
            return "float"
        if issubclass(base, Path):
            return "path"
    return "text"


def _baseline(cmd: object, tmp: Path) -> list[str]:
    args: list[str] = []
    for p in cmd.params:  # type: ignore[attr-defined]
        if not p.required:
            continue
        opt = p.opts[0] if getattr(p, "opts", None) and p.opts[0].startswith("-") else None
        key = opt or p.name
        value = GOOD.get(key)
        if value is None:
            value = str(tmp / "out") if _type_name(p) == "path" or key in (
                "--out", "paths", "runs") else "x"
        args += [opt, value] if opt else [value]
    return args


@contextlib.contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    def fire(_sig: int, _frame: object) -> None:
        raise Hung(f"ran past {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[object, str]:
    # each CliRunner call swaps sys.stderr: log to this call's stream, not a closed one
    core_logging._configured = None
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_perptrader", False):
            root.removeHandler(handler)
    with _deadline(PER_CALL_S):
        result = runner.invoke(app, args, env=env)
    return result, result.output


def _problem(args: list[str], result: object, output: str) -> str | None:
    exc = result.exception  # type: ignore[attr-defined]
    if exc is not None and not isinstance(exc, SystemExit | Reached):
        return f"{' '.join(args)!r}: {type(exc).__name__}: {exc}"
    if "Traceback (most recent call last)" in output:
        at = output.index("Traceback (most recent call last)")
        return (f"{' '.join(args)!r}: traceback in the output: "
                f"{output[at:at + 3000]}")
    return None


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data dir with a few days of 1h BTCUSDT bars, used by every call."""
    tmp = tmp_path_factory.mktemp("cli_bad_input")
    files = tmp / "files"
    files.mkdir()
    rng = pd.Series(range(BARS), dtype="float64")
    close = 100 + (rng % 7) - 3
    open_ = close.shift(1).fillna(100.0)
    pd.DataFrame({
        "date": pd.to_datetime([T0 + i * H for i in range(BARS)], unit="ms", utc=True),
        "open": open_, "high": pd.concat([open_, close], axis=1).max(axis=1) + 1,
        "low": pd.concat([open_, close], axis=1).min(axis=1) - 1,
        "close": close, "volume": 5.0 + rng % 3,
    }).to_feather(files / "BTC_USDT_USDT-1h-futures.feather")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERPTRADER__DATA_DIR", str(tmp / "data"))
        mp.delenv("PERPTRADER__STORE__URL", raising=False)
        mp.delenv("PERPTRADER_DEMO_DATA", raising=False)
        mp.chdir(tmp)
        result = runner.invoke(app, ["data", "import", str(files), "--json"])
        assert result.exit_code == 0, result.output
        yield tmp


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long-running cores raise Reached instead of serving (the fake exchange, the API),
    collecting, downloading or drilling. A new long-running command needs its stub here: the
    per-call deadline cannot interrupt a server that handles SIGALRM itself."""

    def reached(*_a: object, **_k: object) -> None:
        raise Reached

    import perptrader.marketdata.download as download
    import perptrader.trading.drill as drill
    import perptrader.venues.collector as collector
    import perptrader.venues.fake.runner as runner_mod

    monkeypatch.setattr(runner_mod, "serve_forever", reached)
    uvicorn = pytest.importorskip("uvicorn")  # `serve`
    monkeypatch.setattr(uvicorn, "run", reached)
    monkeypatch.setattr(collector, "collect", reached)
    monkeypatch.setattr(download, "download", reached)
    monkeypatch.setattr(drill, "run_drill", reached)  # `trade drill`: minutes of kill -9


#: bad values that reach code owned by another change in flight, reported to its owner:
#: skipped here until fixed there (remove the entry to check it again)
OPEN_ELSEWHERE: dict[tuple[str, str], str] = {}


def test_every_command_is_found() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    for expected in ("data import", "data delete", "trade paper", "strategies list",
                     "audit verify", "fake-exchange", "features labels", "backtest run"):
        assert expected in names


@pytest.mark.parametrize("group", sorted({path[0] for path, _ in COMMANDS}))
def test_bad_values_never_give_a_traceback(group: str, workspace: Path, stubs: None) -> None:
    problems: list[str] = []
    for path, cmd in COMMANDS:
        if path[0] != group:
            continue
        base = _baseline(cmd, workspace)
        calls = [[*path], [*path, "--help"], [*path, *base]]
        for p in cmd.params:  # type: ignore[attr-defined]
            if p.name == "help":
                continue
            opt = p.opts[0] if getattr(p, "opts", None) and p.opts[0].startswith("-") else None
            if (" ".join(path), opt) in OPEN_ELSEWHERE:
                continue
            for bad in BAD[_type_name(p)]:
                if opt:
                    rest = _drop(base, opt)
                    calls.append([*path, *rest, opt, bad])
                else:
                    rest = [a for a in base if a not in _positional_values(cmd, base)]
                    calls.append([*path, *rest, bad])
        for args in calls:
            try:
                result, output = _invoke(args)
            except Hung as exc:
                problems.append(f"{' '.join(args)!r}: {exc}")
                continue
            problem = _problem(args, result, output)
            if problem:
                problems.append(problem)
    assert not problems, "\n".join(problems)


def _drop(args: list[str], opt: str) -> list[str]:
    out, skip = [], False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a == opt and i + 1 < len(args):
            skip = True
            continue
        out.append(a)
    return out


def _positional_values(cmd: object, base: list[str]) -> set[str]:
    values = set()
    i = 0
    while i < len(base):
        if base[i].startswith("-"):
            i += 2
            continue
        values.add(base[i])
        i += 1
    return values


#: the inputs the hardening issue listed, each a one-line error and a non-zero exit
LISTED = [
    (["data", "import", "--market", "moon", "{files}"], {}),
    (["data", "import", "--symbol", "btc/usdt!!", "{files}"], {}),
    (["features", "build", "--timeframe", "7x", "--out", "{tmp}/f.parquet"], {}),
    (["features", "labels", "--future-window", "-1"], {}),
    (["backtest", "run", "--symbol", "BTCUSDT", "--out", "/proc/nope"], {}),
    (["features", "build", "--out", "/proc/nope/f.parquet"], {}),
    (["data", "book-check", "/nope.gz"], {}),
    (["data", "list"], {"PERPTRADER__LOGGING__LEVEL": "LOUD"}),
    (["data", "list"], {"PERPTRADER__DATA_DIR": "/proc/x"}),
    (["data", "list"], {"PERPTRADER__STORE__URL": "duckdb:////proc/x/market.duckdb"}),
    (["data", "list"], {"PERPTRADER__STORE__URL": "postgresql://u@localhost:abc/db"}),
]


@pytest.mark.parametrize(("args", "env"), LISTED, ids=[" ".join(a[:2]) + f" {i}"
                                                        for i, (a, _) in enumerate(LISTED)])
def test_listed_inputs_give_one_line_and_nonzero_exit(args: list[str], env: dict[str, str],
                                                      workspace: Path) -> None:
    args = [a.format(files=workspace / "files", tmp=workspace) for a in args]
    result, output = _invoke(args, env=env)
    assert _problem(args, result, output) is None, output
    assert result.exit_code not in (0, None), output  # type: ignore[attr-defined]
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "invalid" in line.lower()]
    assert errors, output
    assert len(lines) <= 6, output  # one message (a Rich usage box takes a few lines)
