"""Where agents live: ``<data_dir>/agents/<name>/``.

``manifest.json`` (symbol, timeframe, agent kind, windows, models by registry name and
version, reward, PPO settings, training records), ``state.json`` (the fitted
``StateSpec``), one folder per policy (``ppo/`` or ``pattern/`` + ``indicator/``, each
with ``policy.zip``, ``final.zip``, ``best/``, ``checkpoints/``, ``eval/``),
``tensorboard/`` and one ``eval-<start>-<end>/`` per evaluation. An agent is written
into a hidden temporary folder and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from perptrader.core.errors import PerptraderError
from perptrader.core.jsonsafe import json_safe
from perptrader.ml.registry import check_name

MANIFEST = "manifest.json"
STATE = "state.json"
#: the policies of an agent's second, third... seed live under ``seeds/<seed>/``
SEEDS_DIR = "seeds"


def policy_root(folder: Path, seed: int, primary_seed: int) -> Path:
    """Where one seed's policy folders (``ppo/`` or ``pattern/`` + ``indicator/``) are:
    the agent folder itself for the primary seed (the one ``rl:NAME`` trades, laid out as
    before seeds existed, so older agents load unchanged), ``seeds/<seed>/`` for others."""
    return Path(folder) if seed == primary_seed else Path(folder) / SEEDS_DIR / str(seed)


def manifest_seeds(manifest: dict[str, Any]) -> list[int]:
    """The seeds an agent was trained with, primary first (one for older manifests)."""
    seeds = manifest.get("seeds")
    if seeds:
        return [int(s) for s in seeds]
    return [int(manifest.get("ppo", {}).get("seed", 0))]


def agents_root(root: Path | None = None) -> Path:
    if root is not None:
        return Path(root)
    from perptrader.config import load_settings

    return Path(load_settings().data_dir) / "agents"


def agent_folder(name: str, *, root: Path | None = None) -> Path:
    return agents_root(root) / check_name(name)


def new_agent_folder(name: str, *, overwrite: bool = False, root: Path | None = None
                     ) -> tuple[Path, Path]:
    """(temporary folder to write into, final folder). Refuses an existing agent unless
    ``overwrite``."""
    final = agent_folder(name, root=root)
    if final.exists() and not overwrite:
        raise PerptraderError(f"agent {name!r} exists ({final}); pick another --name or "
                              f"pass --overwrite")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp, final


def commit_agent(tmp: Path, final: Path) -> Path:
    """Move a complete agent into place (replacing an older one of the same name)."""
    if final.exists():
        old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    return final


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(json_safe(payload), indent=2), encoding="utf-8")


def read_manifest(name: str, *, root: Path | None = None) -> dict[str, Any]:
    folder = agent_folder(name, root=root)
    path = folder / MANIFEST
    if not path.is_file():
        known = sorted(p.name for p in agents_root(root).glob("*")
                       if (p / MANIFEST).is_file()) if agents_root(root).is_dir() else []
        raise PerptraderError(f"no agent {name!r} (known: {', '.join(known) or 'none'}); "
                              f"train one with `perptrader rl train --name {name} ...`")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["path"] = str(folder)
    return manifest


def read_state(name: str, *, root: Path | None = None) -> dict[str, Any]:
    return json.loads((agent_folder(name, root=root) / STATE).read_text(encoding="utf-8"))


def list_agents(*, root: Path | None = None) -> list[dict[str, Any]]:
    """One summary per saved agent (name, kind, symbol, timeframe, windows, timesteps)."""
    base = agents_root(root)
    if not base.is_dir():
        return []
    out = []
    for folder in sorted(p for p in base.iterdir() if (p / MANIFEST).is_file()):
        m = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        out.append({"name": m["name"], "agent": m["agent"], "symbol": m["symbol"],
                    "timeframe": m["timeframe"], "train": m["windows"]["train"],
                    "valid": m["windows"]["valid"], "timesteps": m["timesteps"],
                    "models": {r: f"{v['name']} v{v['version']}"
                               for r, v in m["models"].items()},
                    "created": m["created"], "path": str(folder)})
    return out
