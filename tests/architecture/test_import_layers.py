"""Imports flow one way: core <- marketdata/sim/persistence <- features/venues <-
strategies <- backtest <- ml <- rl <- research/trading <- commands/api/notify/cli.

Every ``import``/``from ... import`` in every module is read from the source (lazy
imports inside functions included, which ``python -c 'import x'`` would never see), and
each one must point at the package itself or at a package it may depend on. A cycle is
impossible under such a table, so this test also proves there is none.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "perptrader"

BASE = {"core", "config", "__init__"}
#: package -> the perptrader packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "core": {"__init__"},
    "config": {"core"},
    "marketdata": BASE,
    "sim": BASE,
    "persistence": BASE,
    "features": BASE | {"marketdata"},
    "venues": BASE | {"marketdata"},
    "strategies": BASE | {"marketdata", "sim", "features"},
    "backtest": BASE | {"marketdata", "sim", "features", "strategies"},
    "ml": BASE | {"marketdata", "sim", "features", "strategies", "backtest"},
    "rl": BASE | {"marketdata", "sim", "features", "strategies", "backtest", "ml"},
    "research": BASE | {"marketdata", "sim", "features", "strategies", "backtest", "ml", "rl"},
    "trading": BASE | {"marketdata", "sim", "features", "strategies", "backtest", "ml", "rl",
                       "persistence", "venues"},
}
#: the composition roots may import everything
TOP = {"commands", "api", "notify", "cli", "__main__", "__init__"}


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _is_module(name: str) -> bool:
    return (SRC / name).is_dir() or (SRC / f"{name}.py").is_file()


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, first package under perptrader) of every perptrader import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "perptrader":  # `from perptrader import x`: a module or a name
                names = [f"perptrader.{a.name}" if _is_module(a.name) else "perptrader"
                         for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}:{node.lineno}: relative import; use absolute ones")
        for name in names:
            parts = name.split(".")
            if parts[0] == "perptrader":
                found.append((node.lineno, parts[1] if len(parts) > 1 else "__init__"))
    return found


def _violations() -> list[str]:
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        package = _package_of(path)
        if package in TOP:
            continue
        if package not in ALLOWED:
            problems.append(f"{path.relative_to(SRC)}: package {package!r} has no place in "
                            f"the layer table of tests/architecture/test_import_layers.py")
            continue
        for line, target in _imports(path):
            if target != package and target not in ALLOWED[package]:
                problems.append(f"{path.relative_to(SRC)}:{line}: {package} imports "
                                f"{target}")
    return problems


def test_imports_flow_one_way() -> None:
    problems = _violations()
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def test_the_table_has_no_cycle() -> None:
    """The allowed-dependency table itself is acyclic (a topological order exists)."""
    graph = {k: {d for d in v if d in ALLOWED and d != k} for k, v in ALLOWED.items()}
    done: set[str] = set()
    while graph:
        ready = [k for k, deps in graph.items() if deps <= done]
        assert ready, f"cycle among {sorted(graph)}"
        for k in ready:
            done.add(k)
            del graph[k]


def test_a_planted_violation_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scanner sees a lazy import inside a function body."""
    src = tmp_path / "perptrader"
    (src / "strategies").mkdir(parents=True)
    (src / "strategies" / "leak.py").write_text(
        "def f():\n    from perptrader.ml.strategy import ModelStrategy\n    return 1\n")
    monkeypatch.setattr(f"{__name__}.SRC", src)
    assert any("strategies imports ml" in p for p in _violations())
