"""What every model and every split shares: the research table, the classes, the
model protocol.

An ``MLFrame`` is ONE table per symbol and timeframe: trade-price OHLCV (for the
pattern expert's price shape), the feature columns of a feature build, and the label
columns. Models never get a pre-cut copy: they get the whole frame plus the row
positions they may use (``rows``), so a sequence model can look back L bars before the
first row of a fold (those bars' features were known at the time) while a fold's test
rows are never seen in training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

#: class order of every probability matrix: column 0 = SELL, 1 = HOLD, 2 = BUY
CLASSES = ("SELL", "HOLD", "BUY")
N_CLASSES = 3
#: the label a build names by default (``features/labels.py``: -1 SELL, 0 HOLD, +1 BUY)
DEFAULT_LABEL = "label_adaptive"
OHLCV = ("open", "high", "low", "close", "volume")
#: tables of at most this many rows take ``MLFrame.x``'s small-table path
SMALL_TABLE = 64

#: feature-family prefixes of the two experts' inputs (see ``feature_groups``)
PATTERN_PREFIXES = ("vsa_", "candle_", "pattern_", "htf4h_vsa_", "htf4h_candle_",
                    "htf1d_vsa_")
INDICATOR_PREFIXES = ("trend_", "momentum_", "volatility_", "volume_", "htf4h_momentum_",
                      "rangevol_", "htf4h_rangevol_")


def to_class(labels: np.ndarray | pd.Series) -> np.ndarray:
    """-1/0/+1 labels (NaN = unknown) to class indices 0/1/2 (-1 = unknown)."""
    values = np.asarray(labels, dtype=np.float64)
    out = np.full(len(values), -1, dtype=np.int64)
    known = ~np.isnan(values)
    out[known] = values[known].astype(np.int64) + 1
    if known.any() and (out[known].min() < 0 or out[known].max() > 2):
        raise ValueError("labels must be -1 (SELL), 0 (HOLD), +1 (BUY) or NaN")
    return out


@dataclass
class MLFrame:
    """The research table of one symbol/timeframe (index = bar open time, UTC)."""

    frame: pd.DataFrame
    features: list[str]
    label: str = DEFAULT_LABEL
    #: bars the label looks ahead (purging removes this many training rows before a test
    #: window, whose labels would otherwise overlap it)
    horizon: int = 24
    #: feature_hash, feature_set, symbol, timeframe, data range (from the build metadata)
    meta: dict[str, Any] = field(default_factory=dict)
    #: optional per-row training weight (one per frame row; NaN = 1), e.g. label
    #: uniqueness (``ml.weights``); models that support it multiply it into their loss
    sample_weight: np.ndarray | None = None

    def __post_init__(self) -> None:
        # one hash set of plain strs: ``in`` on a str Index costs ~1 us a label
        have = set(self.frame.columns.tolist())
        missing = [c for c in (*self.features, self.label) if c not in have]
        if missing:
            raise KeyError(f"MLFrame: columns missing from the frame: {missing[:10]}")
        if self.sample_weight is not None:
            weight = np.asarray(self.sample_weight, dtype=np.float64)
            if weight.shape != (len(self.frame),):
                raise ValueError(f"MLFrame: sample_weight must have one value per row "
                                 f"({len(self.frame)}), got shape {weight.shape}")
            if (weight[~np.isnan(weight)] < 0).any():
                raise ValueError("MLFrame: sample_weight must be >= 0 (or NaN)")
            self.sample_weight = weight

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def y(self) -> np.ndarray:
        """Class index per row (0 SELL, 1 HOLD, 2 BUY), -1 where the label is unknown."""
        return to_class(self.frame[self.label])

    @property
    def index(self) -> pd.DatetimeIndex:
        return self.frame.index

    def x(self, rows: np.ndarray, columns: list[str] | None = None) -> np.ndarray:
        """Feature matrix (float32, NaN kept) of the given row positions."""
        cols = self.features if columns is None else columns
        if len(self.frame) <= SMALL_TABLE:
            fast = self._small_x(rows, cols)
            if fast is not None:
                return fast
        return self.frame[cols].to_numpy(np.float32)[rows]

    def _small_x(self, rows: np.ndarray, cols: list[str]) -> np.ndarray | None:
        """``x`` of a table of a few rows (the live path: one row, ~400 columns) whose
        columns are all float64 and distinct: the positions of ``cols`` taken from the
        table's one array, instead of pandas building a 375-column frame first (the
        same float64 -> float32 conversion of the same values). None otherwise."""
        rows = np.asarray(rows)
        if rows.ndim != 1 or rows.dtype.kind not in "iu":
            return None
        frame = self.frame
        values = frame.to_numpy()  # the block itself for a one-block float table
        if values.dtype != np.float64:
            return None
        if not all(dtype == np.float64 for dtype in frame.dtypes):
            return None  # e.g. ints and floats interleaved into float64
        names = frame.columns.tolist()  # plain strs: lookups in a str Index are slow
        if len(set(names)) != len(names) or not cols:
            return None
        first = names.index(cols[0]) if cols[0] in names else -1
        if first >= 0 and names[first:first + len(cols)] == list(cols):
            return values[rows, first:first + len(cols)].astype(np.float32)
        position = {name: i for i, name in enumerate(names)}
        if any(c not in position for c in cols):
            return None  # the ordinary path names the missing column
        at = np.fromiter((position[c] for c in cols), dtype=np.int64, count=len(cols))
        return values[rows[:, None], at].astype(np.float32)

    def weights(self, rows: np.ndarray) -> np.ndarray:
        """``sample_weight`` of the given row positions (1 where absent or NaN)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.sample_weight is None:
            return np.ones(len(rows))
        weight = self.sample_weight[rows]
        return np.where(np.isnan(weight), 1.0, weight)

    def labelled(self, rows: np.ndarray) -> np.ndarray:
        """The positions among ``rows`` whose label is known."""
        return rows[self.y[rows] >= 0]


def feature_groups(features: list[str]) -> dict[str, list[str]]:
    """The two experts' inputs: price shape (VSA, candles, patterns) and indicators."""
    return {
        "pattern": [f for f in features if f.startswith(PATTERN_PREFIXES)],
        "indicator": [f for f in features if f.startswith(INDICATOR_PREFIXES)],
    }


#: progress callback: (stage, done, total, metrics) — e.g. ("epoch", 3, 20, {"val_f1": .4})
Progress = Callable[[str, int, int, dict[str, float]], None]


@runtime_checkable
class Classifier(Protocol):
    """A 3-class model over an MLFrame. Implementations: ml.gbdt, ml.experts."""

    #: short kind name, e.g. "lightgbm", "xlstm-pattern"
    kind: str

    def fit(self, data: MLFrame, train_rows: np.ndarray, valid_rows: np.ndarray,
            progress: Progress | None = None) -> dict[str, Any]:
        """Train on ``train_rows`` (early stopping / model selection on ``valid_rows``
        only); return the training history (per-iteration or per-epoch metrics)."""
        ...

    def predict_proba(self, data: MLFrame, rows: np.ndarray) -> np.ndarray:
        """(len(rows), 3) class probabilities, columns in ``CLASSES`` order."""
        ...

    def save(self, folder: Path) -> None:
        """Write weights and config into ``folder`` (created by the caller)."""
        ...

    @classmethod
    def load(cls, folder: Path) -> Classifier:
        ...
