"""A registered model as a backtest strategy: ``--strategy model:NAME[@VERSION]``.

``targets(frame)`` rebuilds the model's feature set on the backtest frame (the same
``build_ml_frame`` the model was trained on), REFUSES the frame when its feature list or
hash differs from the manifest (``registry.load_registered``), predicts every bar and
applies the thresholds of ``ml.trading.signals``. Bars dropped by the feature warm-up
(and, for sequence experts, the first ``seq_len - 1`` bars after it) have no prediction
and get target 0 (flat).

No look-ahead: the features are causal (the pipeline's look-ahead check) and a bar's
target depends only on its own probabilities, so targets of rows <= t are the same
on ``frame[:t+1]`` as on the whole frame. The label columns the build also computes
look ahead, but are never read here.

In-sample caution: the registered model is the FINAL refit on the most recent window
(manifest ``data`` and ``walk_forward``); a backtest over that window is in-sample. The
honest out-of-sample trading figures are the walk-forward's (``ml.trading``, printed by
``perptrader train`` and stored in the manifest under ``metrics.trading``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perptrader.core.errors import PerptraderError
from perptrader.ml.trading import signals

PREFIX = "model:"


def parse_model_ref(text: str) -> tuple[str, int | None]:
    """``"model:NAME[@VERSION]"`` or ``"NAME[@VERSION]"`` -> (name, version or None)."""
    ref = text[len(PREFIX):] if text.startswith(PREFIX) else text
    name, sep, version = ref.partition("@")
    if not name:
        raise ValueError(f"model strategy {text!r}: expected model:NAME[@VERSION]")
    if not sep:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise ValueError(f"model strategy {text!r}: version must be a positive integer")
    return name, int(version)


@dataclass
class ModelStrategy:
    """Long when P(BUY) >= buy_threshold (and > P(SELL)), short when P(SELL) >=
    sell_threshold (and > P(BUY)), else flat; see ``ml.trading.signals``."""

    model: str
    version: int | None = None
    buy_threshold: float = 0.45
    sell_threshold: float = 0.45
    _loaded: tuple[Any, dict[str, Any]] | None = field(default=None, init=False, repr=False,
                                                       compare=False)

    def __post_init__(self) -> None:
        for name in ("buy_threshold", "sell_threshold"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
            setattr(self, name, value)

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.model}"

    @property
    def params(self) -> dict[str, Any]:
        from perptrader.ml.registry import show

        version = self.version if self.version is not None else show(self.model)["version"]
        return {"model": self.model, "version": version, "buy_threshold": self.buy_threshold,
                "sell_threshold": self.sell_threshold}

    def manifest(self) -> dict[str, Any]:
        from perptrader.ml.registry import show

        return show(self.model, self.version)

    def probabilities(self, frame: pd.DataFrame) -> pd.DataFrame:
        """SELL/HOLD/BUY probabilities of every bar the model can predict (after the
        feature warm-up and, for sequence models, their first window)."""
        from perptrader.ml.base import CLASSES
        from perptrader.ml.dataset import build_ml_frame
        from perptrader.ml.registry import (
            feature_mismatch,
            load_registered,
            predict_registered,
            predictable_rows,
        )

        manifest = self.manifest()
        try:
            data = build_ml_frame(frame, symbol=manifest["symbol"],
                                  timeframe=manifest["timeframe"],
                                  feature_set=manifest["feature_set"], label=manifest["label"])
        except ValueError as exc:  # too few bars for the warm-up
            raise PerptraderError(f"model {self.model!r}: cannot build its features on this "
                                  f"frame: {exc}") from None
        if self._loaded is None or self._loaded[1]["version"] != manifest["version"]:
            self._loaded = load_registered(self.model, manifest["version"], data=data)
        else:
            problem = feature_mismatch(self._loaded[1], data)
            if problem:
                raise PerptraderError(f"model {self.model!r} v{manifest['version']}: this "
                                      f"frame's features do not match: {problem}")
        model, loaded_manifest = self._loaded
        # sequence experts need seq_len - 1 bars of features first: those bars are flat
        rows = predictable_rows(model, data, np.arange(len(data), dtype=np.int64))
        proba = predict_registered(model, loaded_manifest, data, rows)
        return pd.DataFrame(np.asarray(proba, dtype=np.float64), index=data.index[rows],
                            columns=list(CLASSES))

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        proba = self.probabilities(frame)
        sig = pd.Series(signals(proba.to_numpy(), self.buy_threshold, self.sell_threshold),
                        index=proba.index)
        return sig.reindex(frame.index).fillna(0.0).to_numpy(dtype=np.float64)


def model_strategy(name: str, params: Mapping[str, object] | None = None) -> ModelStrategy:
    """``get_strategy("model:NAME[@VERSION]", params)``: params buy_threshold,
    sell_threshold (CLI strings accepted). Raises ValueError on unknown parameters."""
    model, version = parse_model_ref(name)
    params = dict(params or {})
    known = {"buy_threshold", "sell_threshold"}
    extra = sorted(set(params) - known)
    if extra:
        raise ValueError(f"strategy {name!r} has no parameter(s) {extra}; it takes "
                         f"{sorted(known)}")
    kwargs = {k: float(str(v)) for k, v in params.items()}
    return ModelStrategy(model, version, **kwargs)


def register() -> None:
    """Entry point (``perptrader.policies``): ``model:NAME[@VERSION]`` resolves here."""
    from perptrader.strategies.registry import register_prefix

    register_prefix(PREFIX, model_strategy, "a registered ML model: long/short when "
                    "P(BUY)/P(SELL) >= buy_threshold/sell_threshold (model:NAME[@VERSION])")
