"""The model registry: ``<data_dir>/models/<name>/<version>/``.

A registered version is everything needed to use a model later and to know what it
was: the weights (``model/``, written by the model's own ``save``), a ``manifest.json``
(kind, data, features and their hash, label, walk-forward spec, settings, out-of-sample
metrics, code version) and optionally the HTML report of its walk-forward.

Why the feature hash matters: a model is a function of ITS columns in ITS order. A
table built with another feature set, another formula or a family that dropped out
(too little coverage on a short window) would be fed silently to the wrong weights, so
``load_registered(..., data=...)`` refuses a table whose feature list or hash differs
from the manifest and says what differs.

Versions are written to a hidden temporary folder and renamed into place, so a crash
while saving leaves no half version that ``list_models`` or a later load could see.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from perptrader import __version__
from perptrader.core.errors import PerptraderError
from perptrader.core.jsonsafe import json_safe
from perptrader.ml.base import Classifier, MLFrame

MANIFEST = "manifest.json"
MODEL_DIR = "model"
REPORT = "report.html"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def models_root(root: Path | None = None) -> Path:
    """``root`` if given, else ``settings.data_dir / "models"``."""
    if root is not None:
        return Path(root)
    from perptrader.config import load_settings

    return Path(load_settings().data_dir) / "models"


def check_name(name: str) -> str:
    """A registry name is one path component: letters, digits, ``.``, ``_``, ``-``."""
    if not _NAME.match(name or ""):
        raise PerptraderError(f"invalid model name {name!r}: use letters, digits, '.', '_', "
                              "'-' (starting with a letter or digit)")
    return name


def versions(name: str, *, root: Path | None = None) -> list[int]:
    """The registered versions of ``name``, ascending (hidden temp folders ignored)."""
    folder = models_root(root) / check_name(name)
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir()
                  if p.is_dir() and p.name.isdigit() and (p / MANIFEST).is_file())


def git_commit() -> str | None:
    """The checked-out commit of the source tree, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip()
    return text if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", text) else None


def spec_dict(spec: Any) -> Any:
    """The walk-forward spec as a dict (a dataclass), or as given."""
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        return dataclasses.asdict(spec)
    return spec


def build_manifest(name: str, version: int, model: Classifier, *, data: MLFrame,
                   summary: dict[str, Any], spec: Any,
                   model_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest of one version (see the module docstring)."""
    meta = data.meta
    idx = data.index
    folds = summary.get("folds") or []
    return json_safe({
        "name": name,
        "version": version,
        "kind": model.kind,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "perptrader_version": __version__,
        "git_commit": git_commit(),
        "symbol": meta.get("symbol"),
        "timeframe": meta.get("timeframe"),
        "feature_set": meta.get("feature_set"),
        "feature_hash": meta.get("feature_hash"),
        "features": list(data.features),
        "n_features": len(data.features),
        "label": data.label,
        "horizon": data.horizon,
        "data": {"first_bar": idx[0].isoformat() if len(idx) else None,
                 "last_bar": idx[-1].isoformat() if len(idx) else None,
                 "rows": len(idx)},
        "walk_forward": spec_dict(spec),
        "model_kwargs": model_kwargs or {},
        # temperature scaling of the final model (None: probabilities used as predicted)
        "temperature": summary.get("final_temperature"),
        # the decision layer ``model:NAME`` trades with (``ml.decision_oos``); None:
        # the plain thresholds
        "decision": _stored_decision(summary.get("decision")),
        "metrics": {
            "oos": summary.get("oos"),
            "baselines": summary.get("baselines"),
            "folds_macro_f1": [f.get("metrics", {}).get("macro_f1") for f in folds],
            "trading": summary.get("trading"),
        },
        "warnings": summary.get("warnings", []),
    })


def _stored_decision(decision: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the policy needs of the training's decision record (its fold-by-fold
    details stay in the summary's trading figures)."""
    if not decision:
        return None
    return {k: decision.get(k) for k in ("use", "cost_aware", "chosen_on")}


def register(name: str, model: Classifier, *, data: MLFrame, summary: dict[str, Any],
             spec: Any, model_kwargs: dict[str, Any] | None = None,
             report_path: Path | None = None, root: Path | None = None) -> Path:
    """Write the next version of ``name`` and return its folder.

    Everything goes into ``<name>/.tmp-<random>/`` first and is renamed to
    ``<name>/<version>/`` at the end; any failure removes the temporary folder.
    """
    base = models_root(root) / check_name(name)
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        (tmp / MODEL_DIR).mkdir()
        model.save(tmp / MODEL_DIR)
        if report_path is not None:
            report_path = Path(report_path)
            if not report_path.is_file():
                raise PerptraderError(f"report {report_path} does not exist")
            shutil.copyfile(report_path, tmp / REPORT)
        version = (versions(name, root=root) or [0])[-1] + 1
        manifest = build_manifest(name, version, model, data=data, summary=summary,
                                  spec=spec, model_kwargs=model_kwargs)
        manifest["report"] = REPORT if report_path is not None else None
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        final = base / str(version)
        # os.rename refuses an existing non-empty target: a concurrent writer that took
        # this version number makes us fail loudly instead of overwriting its files
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def version_folder(name: str, version: int | None = None, *, root: Path | None = None) -> Path:
    """The folder of ``name`` at ``version`` (latest when None); PerptraderError when absent."""
    have = versions(name, root=root)
    if not have:
        raise PerptraderError(f"no model named {name!r} is registered "
                              f"(under {models_root(root)})")
    if version is None:
        version = have[-1]
    if version not in have:
        raise PerptraderError(f"model {name!r} has no version {version}; versions: {have}")
    return models_root(root) / name / str(version)


def show(name: str, version: int | None = None, *, root: Path | None = None) -> dict[str, Any]:
    """The manifest of ``name`` (latest version by default), plus its folder."""
    folder = version_folder(name, version, root=root)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    manifest["path"] = str(folder)
    return manifest


def list_models(*, root: Path | None = None) -> list[dict[str, Any]]:
    """One row per registered name: latest version, versions, kind, data, OOS figures."""
    base = models_root(root)
    if not base.is_dir():
        return []
    rows = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and _NAME.match(p.name)):
        have = versions(folder.name, root=root)
        if not have:
            continue
        m = show(folder.name, have[-1], root=root)
        oos = (m.get("metrics") or {}).get("oos") or {}
        rows.append({
            "name": m["name"], "version": m["version"], "versions": have, "kind": m["kind"],
            "created": m["created"], "symbol": m["symbol"], "timeframe": m["timeframe"],
            "feature_set": m["feature_set"], "n_features": m.get("n_features"),
            "macro_f1": oos.get("macro_f1"), "accuracy": oos.get("accuracy"),
            "log_loss": oos.get("log_loss"), "path": m["path"],
        })
    return rows


def feature_mismatch(manifest: dict[str, Any], data: MLFrame) -> str | None:
    """What differs between a manifest's features and a table's, or None."""
    want, have = list(manifest.get("features") or []), list(data.features)
    problems = []
    h_want, h_have = manifest.get("feature_hash"), data.meta.get("feature_hash")
    if h_want != h_have:
        problems.append(f"feature hash {h_have!r} != the model's {h_want!r}")
    missing = [f for f in want if f not in set(have)]
    extra = [f for f in have if f not in set(want)]
    if missing:
        problems.append(f"{len(missing)} feature(s) missing: {missing[:10]}"
                        + (" ..." if len(missing) > 10 else ""))
    if extra:
        problems.append(f"{len(extra)} extra feature(s): {extra[:10]}"
                        + (" ..." if len(extra) > 10 else ""))
    if not missing and not extra and want != have:
        problems.append("same features in a different order")
    return "; ".join(problems) or None


def load_registered(name: str, version: int | None = None, *, data: MLFrame | None = None,
                    root: Path | None = None) -> tuple[Classifier, dict[str, Any]]:
    """The model and its manifest. With ``data``, REFUSES (PerptraderError) a table whose
    feature list or feature hash differs from the one the model was trained on."""
    from perptrader.ml.models import load_model

    manifest = show(name, version, root=root)
    if data is not None:
        problem = feature_mismatch(manifest, data)
        if problem:
            raise PerptraderError(
                f"model {name!r} v{manifest['version']} was trained on feature set "
                f"{manifest.get('feature_set')!r} ({manifest.get('n_features')} features); "
                f"this table does not match: {problem}")
    model = load_model(Path(manifest["path"]) / MODEL_DIR)
    return model, manifest


def predict_registered(model: Classifier, manifest: dict[str, Any], data: MLFrame,
                       rows: np.ndarray) -> np.ndarray:
    """The model's (n, 3) probabilities with the manifest's temperature applied (when the
    walk-forward ran with calibration), as the trading evaluation saw them."""
    proba = np.asarray(model.predict_proba(data, rows), dtype=np.float64)
    temperature = manifest.get("temperature")
    if temperature is not None and len(proba):
        from perptrader.ml.evaluate import apply_temperature

        proba = apply_temperature(proba, float(temperature))
    return proba


def predictable_rows(model: Any, data: MLFrame, rows: np.ndarray) -> np.ndarray:
    """The positions among ``rows`` the model can predict: sequence experts need
    ``seq_len - 1`` bars of history (their ``usable_rows``); a stack needs what every
    member needs (its ``members``); other models predict every row."""
    rows = np.asarray(rows, dtype=np.int64)
    usable = getattr(model, "usable_rows", None)
    if callable(usable):
        return np.asarray(usable(data, rows), dtype=np.int64)
    for member in getattr(model, "members", None) or ():
        rows = predictable_rows(member, data, rows)
    return rows
