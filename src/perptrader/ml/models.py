"""One entry point per model kind: build a fresh model by name, load a saved one.

Why a registry: the CLI, the walk-forward runner, the tuner and the model registry all
name models by a short string ("lightgbm", "xlstm-pattern", ...). Keeping the
name -> class mapping in one place means a saved folder can be reloaded from its
``config.json`` alone, without the caller knowing which class wrote it.

The neural kinds live in ``ml.experts`` (torch); they are imported lazily so that a
pure gradient-boosting run never pays the torch import.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from perptrader.ml.base import CLASSES, Classifier

#: the file every saved model folder carries; its "kind" key drives ``load_model``
CONFIG_NAME = "config.json"

#: every kind ``make_model`` / ``load_model`` understand
KINDS = ("lightgbm", "xgboost", "catboost", "gbdt", "xlstm-pattern", "xlstm-indicator",
         "lstm", "ensemble")

#: members of the default "ensemble" (the agreed stack: GBDT ensemble + both experts)
DEFAULT_STACK = ("gbdt", "xlstm-pattern", "xlstm-indicator")

_NEURAL = {"xlstm-pattern", "xlstm-indicator", "lstm"}


def _unknown(kind: str) -> ValueError:
    return ValueError(f"unknown model kind {kind!r}; known kinds: {', '.join(KINDS)}")


def write_config(folder: Path, config: dict[str, Any]) -> Path:
    """Write ``config.json`` (must hold "kind") into an existing ``folder``."""
    if "kind" not in config:
        raise ValueError("a model config must name its kind")
    path = Path(folder) / CONFIG_NAME
    path.write_text(json.dumps(config, indent=2, sort_keys=True))
    return path


def read_config(folder: Path, expect_kind: str | None = None) -> dict[str, Any]:
    """Read a saved model's ``config.json``; refuse a folder of another kind.

    Loading a LightGBM folder as an XGBoost model would otherwise fail deep inside the
    library with an unhelpful message (or worse, half-succeed), so the kind is checked
    first and the class order is checked too (probability columns must mean the same).
    """
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {CONFIG_NAME}; not a saved model folder")
    config = json.loads(path.read_text())
    kind = config.get("kind")
    if kind is None:
        raise ValueError(f"{path}: no 'kind' key")
    if expect_kind is not None and kind != expect_kind:
        raise ValueError(f"{folder} holds a {kind!r} model, not a {expect_kind!r} model; "
                         f"use perptrader.ml.models.load_model to load any kind")
    classes = config.get("classes")
    if classes is not None and tuple(classes) != CLASSES:
        raise ValueError(f"{path}: class order {classes} differs from {list(CLASSES)}")
    return config


def model_class(kind: str) -> type:
    """The class implementing ``kind`` (imports the neural experts lazily)."""
    if kind in ("lightgbm", "xgboost", "catboost"):
        from perptrader.ml import gbdt

        return {"lightgbm": gbdt.LightGBMModel, "xgboost": gbdt.XGBoostModel,
                "catboost": gbdt.CatBoostModel}[kind]
    if kind in ("gbdt", "ensemble"):
        from perptrader.ml import stacking

        return stacking.GBDTEnsemble if kind == "gbdt" else stacking.Stack
    if kind in _NEURAL:
        from perptrader.ml import experts

        return experts.LSTMReference if kind == "lstm" else experts.XLSTMExpert
    raise _unknown(kind)


def _expert_config(config: Any) -> Any:
    """Accept an ``ExpertConfig``, a dict of its fields (CLI / JSON) or None."""
    if config is None or not isinstance(config, dict):
        return config
    from perptrader.ml.experts import ExpertConfig

    return ExpertConfig(**config)


def make_model(kind: str, **kwargs: Any) -> Classifier:
    """A fresh, unfitted model of ``kind``.

    kwargs by kind:
      * lightgbm / xgboost / catboost: ``params``, ``columns``, ``seed``
      * gbdt: ``params`` ({member kind: params}), ``columns``, ``seed``, ``k``, ``members``
      * xlstm-pattern / xlstm-indicator / lstm: ``config`` (ExpertConfig or dict)
      * ensemble: ``members`` (kinds or Classifier instances, default
        gbdt + xlstm-pattern + xlstm-indicator), ``member_kwargs`` ({kind: kwargs}),
        ``config`` (ExpertConfig or dict handed to every neural member without its own
        kwargs), ``C`` (meta-learner inverse regularization)
    """
    if kind not in KINDS:
        raise _unknown(kind)
    if kind in ("xlstm-pattern", "xlstm-indicator"):
        cls = model_class(kind)
        return cls(kind.split("-", 1)[1], config=_expert_config(kwargs.pop("config", None)),
                   **kwargs)
    if kind == "lstm":
        return model_class(kind)(config=_expert_config(kwargs.pop("config", None)), **kwargs)
    if kind == "ensemble":
        return _make_stack(**kwargs)
    return model_class(kind)(**kwargs)


def _make_stack(members: list[Any] | tuple[Any, ...] | None = None,
                member_kwargs: dict[str, dict[str, Any]] | None = None,
                config: Any = None, C: float = 1.0) -> Classifier:
    from perptrader.ml.stacking import Stack

    member_kwargs = member_kwargs or {}
    unknown = set(member_kwargs) - set(KINDS)
    if unknown:
        raise _unknown(sorted(unknown)[0])
    built: list[Classifier] = []
    for member in members if members is not None else DEFAULT_STACK:
        if not isinstance(member, str):
            built.append(member)
            continue
        if member == "ensemble":
            raise ValueError("an ensemble cannot contain another 'ensemble'")
        kw = dict(member_kwargs.get(member, {}))
        if member in _NEURAL and config is not None:
            kw.setdefault("config", config)
        built.append(make_model(member, **kw))
    return Stack(built, C=C)


def load_model(folder: Path) -> Classifier:
    """Load any saved model: the kind comes from the folder's ``config.json``."""
    kind = read_config(Path(folder))["kind"]
    if kind not in KINDS:
        raise _unknown(kind)
    return model_class(kind).load(Path(folder))
