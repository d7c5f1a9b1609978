"""What the API shows besides the journal: the market store's inventory and freshness,
backtest result folders, registered models and saved agents.

The market store is opened per request and closed at once, read-only where the backend
allows it (DuckDB): DuckDB lets one process write a file, so holding it open would lock
out `data collect` and `trade paper`. When another process holds it, the answer says so
instead of failing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from perptrader.config import Settings
from perptrader.core.errors import PerptraderError
from perptrader.core.jsonsafe import json_safe

BUSY = ("the market store is in use by another process (the embedded DuckDB store allows "
        "one writing process: a collector, a download or a paper run); try again when it "
        "is free, or use the PostgreSQL store to share it")


def inventory(settings: Settings) -> dict[str, Any]:
    """``{"available": bool, "message": str, "series": [SeriesInfo.as_json(), ...]}``."""
    from perptrader.marketdata.store import open_store
    from perptrader.marketdata.store.duckdb_store import DuckDBStore

    url = settings.store.url
    try:
        if not url or url.startswith("duckdb"):
            path = Path(url.split("///", 1)[1]) if url and "///" in url \
                else settings.embedded_store_path
            if not path.exists():
                return {"available": False, "backend": "duckdb",
                        "message": f"no market store yet at {path}: `perptrader data "
                                   "download` or `data import` fills it", "series": []}
            store: Any = DuckDBStore(path, read_only=True)
        else:
            store = open_store(settings, migrate=False)
    except PerptraderError as exc:
        text = str(exc)
        busy = "lock" in text.lower() or "conflicting" in text.lower()
        return {"available": False, "backend": "duckdb" if not url else "postgresql",
                "message": BUSY if busy else text, "series": []}
    try:
        series = [s.as_json() | {"_last": s.last} for s in store.inventory()]
    except Exception as exc:  # a store without tables yet, a dropped connection
        return {"available": False, "backend": store.backend,
                "message": f"cannot read the market store: {exc}", "series": []}
    finally:
        store.close()
    return {"available": True, "backend": store.backend, "message": "", "series": series}


def freshness(settings: Settings, now: float | None = None) -> dict[str, Any]:
    """Per series: the last stored time, how long ago its newest bar closed (``lag_s``)
    and ``fresh`` (lag under two steps) / ``stale`` / ``unknown`` (event streams)."""
    import pandas as pd

    from perptrader.core.timeframes import is_timeframe, timeframe_delta

    inv = inventory(settings)
    now_ts = pd.Timestamp(now if now is not None else time.time(), unit="s", tz="UTC")
    out = []
    for s in inv["series"]:
        last = pd.Timestamp(s.pop("_last"))
        last = last.tz_localize("UTC") if last.tzinfo is None else last.tz_convert("UTC")
        tf = s.get("timeframe")
        if tf and is_timeframe(tf):
            step = timeframe_delta(tf)
            lag = (now_ts - (last + step)).total_seconds()
            state = "fresh" if lag < 2 * step.total_seconds() else "stale"
        else:
            lag = (now_ts - last).total_seconds()
            state = "unknown"
        out.append({**s, "lag_s": round(lag, 3), "state": state})
    for s in inv["series"]:
        s.pop("_last", None)
    return {"available": inv["available"], "backend": inv["backend"],
            "message": inv["message"], "now": now_ts.isoformat(), "series": out}


def plain_inventory(settings: Settings) -> dict[str, Any]:
    inv = inventory(settings)
    for s in inv["series"]:
        s.pop("_last", None)
    return inv


# ---- backtests ---------------------------------------------------------------------------
def backtests_root(settings: Settings) -> Path:
    return Path(settings.data_dir) / "backtests"


def list_backtests(settings: Settings) -> list[dict[str, Any]]:
    """Every folder under ``<data_dir>/backtests`` (3 levels deep at most) that holds a
    ``result.json``; its id is the path below that root."""
    root = backtests_root(settings)
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.glob("**/result.json")):
        rel = path.parent.relative_to(root)
        if len(rel.parts) > 3 or any(p.startswith(".") for p in rel.parts):
            continue
        try:
            data = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        if not isinstance(data, dict):
            continue
        out.append(json_safe({
            "id": rel.as_posix(), "symbol": data.get("symbol"),
            "timeframe": data.get("timeframe"), "strategy": data.get("strategy"),
            "params": data.get("params"), "final_equity": data.get("final_equity"),
            "total_return": data.get("total_return"),
            "sharpe": data.get("sharpe"), "max_drawdown": data.get("max_drawdown"),
            "has_report": (path.parent / "report.html").is_file(),
            "modified": path.stat().st_mtime,
        }))
    return out


def backtest_dir(settings: Settings, run_id: str) -> Path:
    """The folder of a backtest id, refusing anything outside the backtests root."""
    return _inside(backtests_root(settings), run_id, "result.json")


def _inside(root: Path, rel: str, must_hold: str) -> Path:
    root = root.resolve()
    if not rel or "\\" in rel or any(p in ("", ".", "..") for p in rel.split("/")):
        raise FileNotFoundError(rel)
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not (path / must_hold).is_file():
        raise FileNotFoundError(rel)
    return path


# ---- models and agents -------------------------------------------------------------------
def list_models(settings: Settings) -> list[dict[str, Any]]:
    from perptrader.ml.registry import list_models as registry_models

    rows = registry_models(root=Path(settings.data_dir) / "models")
    for row in rows:
        row["has_report"] = (Path(row["path"]) / "report.html").is_file()
        row.pop("path", None)
    return json_safe(rows)


def model_report(settings: Settings, name: str, version: int) -> Path:
    from perptrader.ml.registry import check_name

    check_name(name)
    path = _inside(Path(settings.data_dir) / "models", f"{name}/{int(version)}", "report.html")
    return path / "report.html"


def list_agents(settings: Settings) -> list[dict[str, Any]]:
    """Saved agents (``<data_dir>/agents/<name>/manifest.json``, see ``rl.storage``) with
    their evaluation reports. Read here rather than through ``perptrader.rl``, whose
    import pulls in torch and stable-baselines3 (seconds, and memory the server does not
    need)."""
    base = Path(settings.data_dir) / "agents"
    if not base.is_dir():
        return []
    rows = []
    for folder in sorted(p for p in base.iterdir() if (p / "manifest.json").is_file()):
        try:
            m = orjson.loads((folder / "manifest.json").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        if not isinstance(m, dict):
            continue
        windows = m.get("windows") or {}
        models = m.get("models") or {}
        rows.append({
            "name": m.get("name", folder.name), "agent": m.get("agent"),
            "symbol": m.get("symbol"), "timeframe": m.get("timeframe"),
            "train": windows.get("train"), "valid": windows.get("valid"),
            "timesteps": m.get("timesteps"), "created": m.get("created"),
            "models": {r: f"{v.get('name')} v{v.get('version')}" for r, v in models.items()
                       if isinstance(v, dict)},
            "reports": sorted(p.relative_to(folder).as_posix()
                              for p in folder.glob("eval-*/*.html")),
        })
    return json_safe(rows)


def agent_report(settings: Settings, name: str, report: str) -> Path:
    from perptrader.ml.registry import check_name

    check_name(name)
    folder = _inside(Path(settings.data_dir) / "agents", name, "manifest.json")
    parts = report.split("/")
    if len(parts) != 2 or not parts[0].startswith("eval-") or not parts[1].endswith(".html") \
            or any(p in ("", ".", "..") for p in parts):
        raise FileNotFoundError(report)
    path = (folder / report).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        raise FileNotFoundError(report)
    return path
