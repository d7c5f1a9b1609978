"""Optional MLflow record of a study run (``research run --mlflow URI``).

The run folder (``trials.jsonl``, ``study.json``) is the record a study always writes;
MLflow is a second copy for users who browse experiments there. One MLflow experiment
per study; one parent run per study run (its summary, verdict and trial count, the
report and JSON as artifacts) with one nested run per trial (the recipe as parameters,
its signal and trading figures as metrics). Needs the ``tracking`` extra
(``pip install 'perptrader[tracking]'``); asking for it without the package is an error,
never a silent skip.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from perptrader.core.errors import PerptraderError

#: trial fields logged as parameters (what defines the variant)
PARAM_KEYS = ("kind", "symbol", "timeframe", "feature_set", "label", "model", "decision",
              "recipe", "seen")


def _numbers(prefix: str, values: dict[str, Any] | None) -> dict[str, float]:
    out = {}
    for key, value in (values or {}).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[f"{prefix}{key}"] = float(value)
    return out


def trial_metrics(trial: dict[str, Any]) -> dict[str, float]:
    """A trial's numeric figures, flattened: ``signal.*``, ``trading.*``, ``bh.*``."""
    signal = dict(trial.get("signal") or {})
    f1 = signal.pop("f1", None) or {}
    return {**_numbers("signal.", signal), **_numbers("signal.f1_", f1),
            **_numbers("trading.", trial.get("trading")),
            **_numbers("bh.", trial.get("buy_and_hold"))}


def log_study(uri: str, folder: Path, summary: dict[str, Any],
              trials: list[dict[str, Any]]) -> str:
    """Log a finished run to the MLflow tracking server or store at ``uri``; returns the
    parent run id."""
    try:
        import mlflow
    except ImportError:
        raise PerptraderError("--mlflow needs MLflow: pip install 'perptrader[tracking]'"
                              ) from None
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(f"perptrader-{summary['study']}")
        with mlflow.start_run(run_name=folder.name) as parent:
            mlflow.set_tags({"perptrader.run_folder": str(folder),
                             "perptrader.verdict": summary["verdict"]["line"][:5000]})
            mlflow.log_params({"backend": summary.get("backend"),
                               "planned_trials": summary.get("planned_trials"),
                               "champion": summary["champion"]["recipe"]})
            mlflow.log_metrics({"n_trials": float(summary["n_trials"]),
                                "edge": float(bool(summary["verdict"]["edge"])),
                                **_numbers("champion.", summary["champion"])})
            for name in ("study.json", "report.html", "study.toml"):
                if (folder / name).is_file():
                    mlflow.log_artifact(str(folder / name))
            for trial in trials:
                with mlflow.start_run(run_name=trial["id"], nested=True):
                    mlflow.log_params({k: trial.get(k) for k in PARAM_KEYS if k in trial})
                    mlflow.log_metrics(trial_metrics(trial))
        return parent.info.run_id
    except PerptraderError:
        raise
    except Exception as exc:  # MLflow's own errors: an unreachable server, a bad URI
        raise PerptraderError(f"MLflow at {uri}: {str(exc).splitlines()[0]} (the run "
                              f"folder {folder} holds the full record)") from None


__all__ = ["log_study", "trial_metrics"]
