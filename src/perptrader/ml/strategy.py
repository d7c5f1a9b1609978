"""A registered model as a policy: ``--strategy model:NAME[@VERSION]``.

``targets(frame)`` rebuilds the model's features on the frame (the same
``build_ml_frame`` the model was trained on, restricted to the families whose columns
the model reads: ``features.pipeline.families_of``), predicts every bar and applies the
thresholds of ``ml.trading.signals``. A frame with MORE inputs than the model was
trained with is fine (the extra families are not built); a frame lacking an input of
one of the model's families is refused, naming the missing features, and so is a
feature list or hash that differs from the manifest (``registry.feature_mismatch``).
Bars inside the feature warm-up (and, for sequence experts, the first ``seq_len - 1``
bars after it) have no prediction and get target 0 (flat).

The decision from probabilities to a target is the model's STORED decision layer when
``perptrader train`` chose one (manifest ``decision``; ``decision=auto``, the default):
the cost-aware layer of ``ml.decision`` (expected return net of costs, hysteresis,
minimum holding period, volatility-targeted size), with the settings and the measured
edge scale chosen on the walk-forward's out-of-sample rows. ``decision=threshold``
forces the plain rule (long when P(BUY) >= buy_threshold ...), the only one of models
registered without a layer. The cost-aware layer is path-dependent (the position held
decides whether an edge is enough to stay), so its batch form runs from the frame's
first bar, flat.

``decide(bars, account)`` gives the same number for the last bar from the LIVE feature
path (``features.incremental.IncrementalFeatures``: one bar's features from bounded
tails), with a buffer of the last ``seq_len`` feature rows for sequence experts. The
state (live features, row buffer, last bar seen) is rebuilt from ``bars`` whenever the
previous call was not for the bar just before; the model is loaded once per object.
The cost-aware layer's state (side, bars held, size) is carried from call to call
(``CostAwareRule.step``) and, on a stale call (first call, restart), rebuilt by running
the batch form over all of ``bars``, as the ``vsa`` policy rebuilds its holding state.

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
from perptrader.ml.decision import CostAwareRule
from perptrader.ml.trading import signals
from perptrader.strategies.base import AccountView, PolicyBase

PREFIX = "model:"
#: ``decision=`` values: the model's stored layer, the plain thresholds, the cost-aware layer
DECISIONS = ("auto", "threshold", "cost_aware")


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


def sequence_length(model: Any) -> int:
    """Rows of features one prediction reads: ``seq_len`` for sequence experts, the
    longest member's for a stack, 1 for row models (gradient boosting)."""
    config = getattr(model, "config", None)
    own = int(getattr(config, "seq_len", 1) or 1) if callable(
        getattr(model, "usable_rows", None)) else 1
    members = getattr(model, "members", None) or ()
    return max([own, *(sequence_length(m) for m in members)])


@dataclass
class ModelStrategy(PolicyBase):
    """The model's stored decision layer (see the module doc), or with
    ``decision="threshold"``: long when P(BUY) >= buy_threshold (and > P(SELL)), short
    when P(SELL) >= sell_threshold (and > P(BUY)), else flat (``ml.trading.signals``)."""

    model: str
    version: int | None = None
    buy_threshold: float = 0.45
    sell_threshold: float = 0.45
    decision: str = "auto"
    #: (model, manifest), loaded on first use and kept: a policy is one model version
    _loaded: tuple[Any, dict[str, Any]] | None = field(default=None, init=False, repr=False,
                                                       compare=False)
    #: per-run state of ``decide`` (see the module doc)
    _live: dict[str, Any] = field(default_factory=dict, init=False, repr=False,
                                  compare=False)
    #: ``warmup_bars`` of the loaded model (decide reads it every bar)
    _warmup: int | None = field(default=None, init=False, repr=False, compare=False)
    #: the parsed stored layer (``rule``), read once
    _rule: CostAwareRule | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("buy_threshold", "sell_threshold"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
            setattr(self, name, value)
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {self.decision!r}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{PREFIX}{self.model}"

    @property
    def params(self) -> dict[str, Any]:
        rule = self.rule()
        out: dict[str, Any] = {"model": self.model, "version": self.manifest()["version"],
                               "decision": "threshold" if rule is None else "cost_aware"}
        if rule is None:
            out.update(buy_threshold=self.buy_threshold, sell_threshold=self.sell_threshold)
        else:
            out["cost_aware"] = rule.as_dict()
        return out

    def rule(self) -> CostAwareRule | None:
        """The cost-aware layer this policy trades with, None for the plain thresholds
        (``decision=auto``: what the manifest says, thresholds when it says nothing)."""
        stored = self.manifest().get("decision") or {}
        use = stored.get("use", "threshold") if self.decision == "auto" else self.decision
        if use == "threshold":
            return None
        if not stored.get("cost_aware"):
            raise PerptraderError(f"model {self.model!r} v{self.manifest()['version']} has "
                                  "no stored cost-aware decision layer (registered before "
                                  "`perptrader train` stored one): retrain it, or use "
                                  "decision=threshold")
        if self._rule is None:
            self._rule = CostAwareRule.from_dict(stored["cost_aware"])
        return self._rule

    @property
    def warmup_bars(self) -> int:
        """The feature warm-up of the model's families, plus ``seq_len - 1`` rows of
        features for sequence experts: the first bar with a prediction."""
        if self._warmup is None:
            from perptrader.features.pipeline import candidate_families
            from perptrader.features.sets import get_set

            manifest = self.manifest()
            wanted = set(self._family_names())
            families = candidate_families(get_set(manifest["feature_set"]),
                                          manifest["timeframe"])
            warmup = max((f.warmup for f in families if f.name in wanted), default=0)
            self._warmup = warmup + sequence_length(self.loaded()[0]) - 1
        return self._warmup

    def loaded(self) -> tuple[Any, dict[str, Any]]:
        """The model and its manifest, read from the registry once per policy."""
        if self._loaded is None:
            from perptrader.ml.registry import load_registered

            self._loaded = load_registered(self.model, self.version)
        return self._loaded

    def manifest(self) -> dict[str, Any]:
        return self.loaded()[1]

    def _family_names(self) -> list[str]:
        from perptrader.features.pipeline import families_of
        from perptrader.features.sets import get_set

        manifest = self.manifest()
        return families_of(list(manifest["features"]), get_set(manifest["feature_set"]),
                           manifest["timeframe"])

    def _refuse(self, problem: str) -> PerptraderError:
        manifest = self.manifest()
        return PerptraderError(f"model {self.model!r} v{manifest['version']}: this frame's "
                               f"features do not match: {problem}")

    def probabilities(self, frame: pd.DataFrame) -> pd.DataFrame:
        """SELL/HOLD/BUY probabilities of every bar the model can predict (after the
        feature warm-up and, for sequence models, their first window)."""
        from perptrader.ml.base import CLASSES
        from perptrader.ml.dataset import build_ml_frame
        from perptrader.ml.registry import (
            feature_mismatch,
            predict_registered,
            predictable_rows,
        )

        model, manifest = self.loaded()
        try:
            data = build_ml_frame(frame, symbol=manifest["symbol"],
                                  timeframe=manifest["timeframe"],
                                  feature_set=manifest["feature_set"], label=manifest["label"],
                                  families=self._family_names())
        except ValueError as exc:  # too few bars for the warm-up
            raise PerptraderError(f"model {self.model!r}: cannot build its features on this "
                                  f"frame: {exc}") from None
        problem = feature_mismatch(manifest, data)
        if problem:
            raise self._refuse(problem)
        # sequence experts need seq_len - 1 bars of features first: those bars are flat
        rows = predictable_rows(model, data, np.arange(len(data), dtype=np.int64))
        proba = predict_registered(model, manifest, data, rows)
        return pd.DataFrame(np.asarray(proba, dtype=np.float64), index=data.index[rows],
                            columns=list(CLASSES))

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        return self._batch(frame)[0]

    def _batch(self, frame: pd.DataFrame) -> tuple[np.ndarray, tuple[float, int, float]]:
        """(targets of every bar, state of the cost-aware layer after the last bar)."""
        proba = self.probabilities(frame)
        rule = self.rule()
        if rule is None:
            sig = pd.Series(signals(proba.to_numpy(), self.buy_threshold,
                                    self.sell_threshold), index=proba.index)
            return sig.reindex(frame.index).fillna(0.0).to_numpy(dtype=np.float64), FLAT
        full = proba.reindex(frame.index).to_numpy(dtype=np.float64)
        return rule.final_state(full, frame["close"].to_numpy(dtype=np.float64),
                                _funding(frame))

    # -- the per-bar path ---------------------------------------------------------------
    def decide(self, bars: pd.DataFrame, account: AccountView) -> float:
        """``targets(bars)[-1]`` from one bar's live features (see the module doc)."""
        if len(bars) == 0:
            raise ValueError(f"{self.name}: decide needs at least one bar")
        live = self._live
        if len(bars) - 1 < self.warmup_bars:
            live.clear()  # no prediction yet: flat, exactly like the batch form
            return 0.0
        rule = self.rule()
        if rule is not None and not (len(bars) >= 2 and live.get("ts") == bars.index[-2]):
            # a stale call: the layer's state needs the whole path, i.e. the batch form
            self._rebuild(bars)
            targets, live["state"] = self._batch(bars)
            live["ts"] = bars.index[-1]
            return float(targets[-1])
        if len(bars) >= 2 and live.get("ts") == bars.index[-2]:
            last = bars.iloc[-1:]  # one slice (a list index, ``iloc[[-1]]``, is a take)
            row = live["features"].update(last).to_numpy()
            # our own slice: its column reads below need not deep-copy the loader's
            # provenance (``attrs``) each (the live features checked its timeframe)
            last.attrs = {}
            seq = live["seq"]
            if seq == 1:
                live["rows"] = row[None, :]
                live["ohlcv"] = _ohlcv_values(last)
                live["index"] = last.index
            else:
                live["rows"] = np.vstack([live["rows"], row])[-seq:]
                live["ohlcv"] = np.vstack([live["ohlcv"], _ohlcv_values(last)])[-seq:]
                live["index"] = live["index"].append(last.index)[-seq:]
        else:
            self._rebuild(bars)
        live["ts"] = bars.index[-1]
        proba = self._predict_last()
        if rule is None:
            return float(signals(proba, self.buy_threshold, self.sell_threshold)[0])
        funding = _funding(bars.iloc[-1:])
        live["state"], target = rule.step(live["state"], proba[0],
                                          bars["close"].to_numpy(dtype=np.float64),
                                          0.0 if funding is None else float(funding[0]))
        return target

    def _rebuild(self, bars: pd.DataFrame) -> None:
        """The live state from all of ``bars``: live features with ``bars[:-1]`` as
        history, and the feature rows of the last ``seq_len`` bars."""
        from perptrader.features.base import FeatureContext
        from perptrader.features.incremental import MARGIN_ROWS, IncrementalFeatures
        from perptrader.features.pipeline import compute_features, feature_hash, plan
        from perptrader.features.sets import get_set

        model, manifest = self.loaded()
        ctx = FeatureContext(symbol=manifest["symbol"], timeframe=manifest["timeframe"])
        wanted = set(self._family_names())
        the_plan = plan(bars, get_set(manifest["feature_set"]), ctx)
        the_plan = type(the_plan)(tuple(f for f in the_plan.families if f.name in wanted))
        names = the_plan.names
        if names != list(manifest["features"]):
            missing = [f for f in manifest["features"] if f not in set(names)]
            raise self._refuse(f"{len(missing)} feature(s) missing: {missing[:10]}"
                               if missing else "same features in a different order")
        if feature_hash(the_plan) != manifest.get("feature_hash"):
            raise self._refuse(f"feature hash {feature_hash(the_plan)!r} != the model's "
                               f"{manifest.get('feature_hash')!r}")
        seq = sequence_length(model)
        features = IncrementalFeatures(the_plan.families, ctx, bars.iloc[:-1])
        if seq > 1:
            tail = bars.iloc[-(features.buffer_rows + MARGIN_ROWS + seq):-1]
            before = compute_features(tail, the_plan.families, ctx).to_numpy(np.float64)
            before = before[-(seq - 1):]
        else:
            before = np.empty((0, len(names)))
        row = features.update(bars.iloc[[-1]])
        ohlcv = _ohlcv(bars.iloc[-seq:])
        label = manifest["label"]
        columns = [*ohlcv.columns, *names, label]
        self._live.update(features=features, seq=seq, names=names,
                          rows=np.vstack([before, row.to_numpy()]),
                          ohlcv=ohlcv.to_numpy(), index=ohlcv.index,
                          # one float64 block of OHLCV, features and the (unknown) label:
                          # the table ``_predict_last`` builds every bar, without pandas'
                          # concatenation; only where its columns are distinct (else the
                          # general construction below)
                          columns=pd.Index(columns) if len(set(columns)) == len(columns)
                          else None)

    def _predict_last(self) -> np.ndarray:
        """The (1, 3) probabilities of the newest buffered row: the model on a small
        table of the buffered rows (a sequence expert normalises each window on its
        own)."""
        from perptrader.ml.base import OHLCV, MLFrame
        from perptrader.ml.registry import predict_registered

        model, manifest = self.loaded()
        live = self._live
        if live["columns"] is not None:
            block = np.empty((len(live["rows"]), len(live["columns"])))
            n_ohlcv = live["ohlcv"].shape[1]
            block[:, :n_ohlcv] = live["ohlcv"]
            block[:, n_ohlcv:-1] = live["rows"]
            block[:, -1] = np.nan
            table = pd.DataFrame(block, index=live["index"], columns=live["columns"],
                                 copy=False)
        else:
            ohlcv = pd.DataFrame(live["ohlcv"], index=live["index"], columns=list(OHLCV))
            table = pd.DataFrame(live["rows"], index=live["index"], columns=live["names"])
            table = pd.concat([ohlcv, table], axis=1)
            table[manifest["label"]] = np.nan
        data = MLFrame(table, live["names"], label=manifest["label"],
                       horizon=int(manifest.get("horizon") or 1), meta={})
        rows = np.array([len(table) - 1], dtype=np.int64)
        return np.asarray(predict_registered(model, manifest, data, rows), dtype=np.float64)


#: the cost-aware layer's state when flat (side, bars held, size)
FLAT = (0.0, 0, 0.0)


def _funding(frame: pd.DataFrame) -> np.ndarray | None:
    """The funding rate known at each bar (the loader's ``funding_rate``), or None."""
    if "funding_rate" not in frame.columns:
        return None
    return frame["funding_rate"].to_numpy(dtype=np.float64, na_value=np.nan)


def _ohlcv(bars: pd.DataFrame) -> pd.DataFrame:
    from perptrader.ml.base import OHLCV

    return bars[list(OHLCV)].astype("float64")


def _ohlcv_values(bars: pd.DataFrame) -> np.ndarray:
    """``_ohlcv(bars).to_numpy()``: read column by column where they are float64 already
    (selecting a list of columns costs ~0.3 ms, for one row on every bar)."""
    from perptrader.ml.base import OHLCV

    columns = [bars[c] for c in OHLCV]
    if all(c.dtype == np.float64 for c in columns):
        return np.column_stack([c.to_numpy() for c in columns])
    return _ohlcv(bars).to_numpy()


def model_strategy(name: str, params: Mapping[str, object] | None = None) -> ModelStrategy:
    """``get_strategy("model:NAME[@VERSION]", params)``: params buy_threshold,
    sell_threshold, decision (auto|threshold|cost_aware; CLI strings accepted). A
    threshold given without ``decision`` selects the threshold rule (the one it
    belongs to). Raises ValueError on unknown parameters."""
    model, version = parse_model_ref(name)
    params = dict(params or {})
    known = {"buy_threshold", "sell_threshold", "decision"}
    extra = sorted(set(params) - known)
    if extra:
        raise ValueError(f"strategy {name!r} has no parameter(s) {extra}; it takes "
                         f"{sorted(known)}")
    kwargs: dict[str, Any] = {k: float(str(v)) for k, v in params.items() if k != "decision"}
    if "decision" in params:
        kwargs["decision"] = str(params["decision"])
    elif kwargs:
        kwargs["decision"] = "threshold"  # thresholds given: the rule they belong to
    return ModelStrategy(model, version, **kwargs)


def register() -> None:
    """Entry point (``perptrader.policies``): ``model:NAME[@VERSION]`` resolves here."""
    from perptrader.strategies.registry import register_prefix

    register_prefix(PREFIX, model_strategy, "a registered ML model through its stored "
                    "decision layer (cost-aware when `train` chose one), or decision="
                    "threshold: long/short when P(BUY)/P(SELL) >= buy_threshold/"
                    "sell_threshold (model:NAME[@VERSION])")
