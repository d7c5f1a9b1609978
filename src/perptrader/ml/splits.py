"""Walk-forward folds and purged k-fold: which rows a model may fit, tune and be tested on.

Why purging: a row's label looks ``horizon`` bars ahead (close[t+h] / close[t]), so a
training row at t whose label window [t, t+h] reaches into the test window has seen test
prices. Such rows are removed, as are training rows whose label window reaches into the
validation slice (else early stopping would be chosen on labels the model was fitted on).

Why calendar windows: "train 540 days, test 30 days" means the same thing on 1h and 4h
bars and across data gaps; positions are found with ``searchsorted`` on the index.

Rows are always integer POSITIONS into the frame (int64), never timestamps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

_MODES = ("rolling", "expanding")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "min": "minutes", "m": "minutes"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(w|d|h|min|m)\s*$", re.IGNORECASE)


def parse_duration(text: str) -> pd.Timedelta:
    """``"540d"``, ``"26w"``, ``"12h"``, ``"90min"`` to a Timedelta (no ambiguous months).

    Own parser because pandas deprecates the lower-case ``d`` that every CLI user types.
    """
    m = _DURATION.match(str(text))
    if m is None:
        raise ValueError(f"duration {text!r}: expected <number><w|d|h|min|m>, e.g. 540d")
    return pd.Timedelta(**{_UNITS[m.group(2).lower()]: float(m.group(1))})


def _positions(lo: int, hi: int) -> np.ndarray:
    """Positions lo .. hi-1 (empty when hi <= lo)."""
    return np.arange(lo, max(lo, hi), dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Fold:
    """One walk-forward step. ``train`` and ``valid`` lie before ``test`` and are purged."""

    index: int
    #: row positions used to fit (purged before the valid slice and the test window)
    train: np.ndarray
    #: row positions for early stopping / model selection: the END of the training window
    valid: np.ndarray
    #: out-of-sample rows of this fold, never used to choose anything
    test: np.ndarray
    #: the frame's index, to name the spans in reports (None: spans unavailable)
    stamps: pd.DatetimeIndex | None = field(default=None, repr=False)

    def _span(self, rows: np.ndarray) -> tuple[str, str]:
        if self.stamps is None:
            raise ValueError("Fold built without the frame index: spans are unknown")
        if len(rows) == 0:
            raise ValueError(f"fold {self.index}: no rows to span")
        return (self.stamps[int(rows.min())].isoformat(),
                self.stamps[int(rows.max())].isoformat())

    @property
    def train_span(self) -> tuple[str, str]:
        """(first, last) bar open time of the training window, valid slice included."""
        return self._span(np.concatenate([self.train, self.valid]))

    @property
    def test_span(self) -> tuple[str, str]:
        """(first, last) bar open time of the test window."""
        return self._span(self.test)


@dataclass(frozen=True)
class WalkForwardSpec:
    """Calendar walk-forward: ``train`` window, ``test`` step, the valid share of train."""

    train: str = "540d"
    test: str = "30d"
    #: share of the (purged) training window kept at its end for validation
    valid: float = 0.15
    #: "rolling": fixed-length train window; "expanding": train from the first row
    mode: str = "rolling"
    #: bars after each test window that later folds may not train on (serial correlation
    #: of features right after a test window; matters when later training windows cover
    #: earlier test windows, i.e. always with expanding mode and long rolling windows)
    embargo: int = 0
    #: keep only the LAST max_folds folds (quick runs)
    max_folds: int | None = None

    def __post_init__(self) -> None:
        for name in ("train", "test"):
            td = parse_duration(getattr(self, name))
            if td <= pd.Timedelta(0):
                raise ValueError(f"WalkForwardSpec.{name} must be a positive duration")
        if not 0.0 <= self.valid < 1.0:
            raise ValueError("WalkForwardSpec.valid must be in [0, 1)")
        if self.mode not in _MODES:
            raise ValueError(f"WalkForwardSpec.mode must be one of {_MODES}, got {self.mode!r}")
        if self.embargo < 0:
            raise ValueError("WalkForwardSpec.embargo must be >= 0")
        if self.max_folds is not None and self.max_folds < 1:
            raise ValueError("WalkForwardSpec.max_folds must be >= 1")

    @property
    def train_td(self) -> pd.Timedelta:
        return parse_duration(self.train)

    @property
    def test_td(self) -> pd.Timedelta:
        return parse_duration(self.test)

    def describe(self) -> str:
        """The inverse of ``parse`` (for logs and model metadata)."""
        text = (f"train={self.train},test={self.test},valid={self.valid:g},mode={self.mode},"
                f"embargo={self.embargo}")
        return text + (f",folds={self.max_folds}" if self.max_folds is not None else "")

    @classmethod
    def parse(cls, text: str) -> WalkForwardSpec:
        """``"train=540d,test=30d[,valid=0.15][,mode=expanding][,embargo=24][,folds=3]"``."""
        kwargs: dict[str, object] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            key, sep, value = part.partition("=")
            key, value = key.strip().lower(), value.strip()
            if not sep or not value:
                raise ValueError(f"walk-forward spec: expected key=value, got {part!r}")
            if key in ("train", "test"):
                kwargs[key] = value
            elif key == "valid":
                kwargs["valid"] = float(value)
            elif key == "mode":
                kwargs["mode"] = value.lower()
            elif key == "embargo":
                kwargs["embargo"] = int(value)
            elif key in ("folds", "max_folds"):
                kwargs["max_folds"] = int(value)
            else:
                raise ValueError(f"walk-forward spec: unknown key {key!r} in {text!r} "
                                 "(train, test, valid, mode, embargo, folds)")
        return cls(**kwargs)  # type: ignore[arg-type]


def _bar_duration(index: pd.DatetimeIndex) -> pd.Timedelta:
    """The typical bar spacing (median, robust to data gaps)."""
    if len(index) < 2:
        raise ValueError("walk_forward needs at least two rows")
    steps = np.diff(index.asi8)
    return pd.Timedelta(int(np.median(steps)), unit=index.unit)


def walk_forward(index: pd.DatetimeIndex, spec: WalkForwardSpec, horizon: int) -> list[Fold]:
    """The folds of ``spec`` over ``index`` (sorted bar open times), purged by ``horizon``.

    Test windows [s, s + test) tile the calendar from s0 = first bar + train; each fold's
    training window is [s - train, s) (rolling) or [first bar, s) (expanding). A last
    window shorter than half the test duration is dropped; windows without any bar (a data
    gap) are skipped. Training rows t with t + horizon >= first test row are purged; the
    validation slice is the last ``valid`` share of what remains, and training rows within
    ``horizon`` bars before it are purged too. Rows within ``embargo`` bars after an
    earlier fold's test window are excluded from training and validation.
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError("walk_forward needs a DatetimeIndex")
    if not index.is_monotonic_increasing or index.has_duplicates:
        raise ValueError("walk_forward needs a strictly increasing index")
    if horizon < 0:
        raise ValueError("horizon must be >= 0")
    bar = _bar_duration(index)
    first, end = index[0], index[-1] + bar          # end: close of the last bar
    train_td, test_td = spec.train_td, spec.test_td
    n_windows = int(np.ceil((end - (first + train_td)) / test_td))
    folds: list[Fold] = []
    embargoed = np.zeros(len(index), dtype=bool)
    for k in range(max(n_windows, 0)):
        start = first + train_td + k * test_td
        stop = start + test_td
        if min(stop, end) - start < test_td / 2:     # partial last window too short
            break
        a = int(index.searchsorted(start, side="left"))
        b = int(index.searchsorted(stop, side="left"))
        if b <= a:                                   # a gap in the data: no test bars
            continue
        lo = 0 if spec.mode == "expanding" else int(
            index.searchsorted(start - train_td, side="left"))
        window = _positions(lo, a - horizon)         # t + horizon < a: labels end before
        window = window[~embargoed[window]]
        n_valid = round(spec.valid * len(window))
        if n_valid:
            valid = window[len(window) - n_valid:]
            train = window[window < valid[0] - horizon]
        else:
            valid, train = window[:0], window
        if len(train) == 0:
            raise ValueError(f"walk-forward fold {k}: no training rows left after purging "
                             f"(train={spec.train}, horizon={horizon}, valid={spec.valid})")
        folds.append(Fold(len(folds), train, valid, _positions(a, b), stamps=index))
        embargoed[b:b + spec.embargo] = True
    if not folds:
        raise ValueError(f"walk-forward: {index[0]} .. {index[-1]} is too short for "
                         f"train={spec.train} + half of test={spec.test}")
    if spec.max_folds is not None:
        folds = folds[-spec.max_folds:]
    return folds


def purged_kfold(rows: np.ndarray, k: int, horizon: int,
                 embargo: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit_rows, held_out_rows) for k contiguous blocks of ``rows`` (positions).

    Fit rows exclude the ``horizon`` positions before each held-out block (their labels
    reach into it) and the ``embargo`` positions after it. Used for out-of-fold stacking
    inside one training window.
    """
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    if k < 2:
        raise ValueError("purged_kfold needs k >= 2")
    if len(rows) < k:
        raise ValueError(f"purged_kfold: {len(rows)} rows cannot make {k} blocks")
    if horizon < 0 or embargo < 0:
        raise ValueError("horizon and embargo must be >= 0")
    out = []
    for block in np.array_split(rows, k):
        first, last = block[0], block[-1]
        keep = (rows < first - horizon) | (rows > last + embargo)
        out.append((rows[keep], block))
    return out


__all__ = ["Fold", "WalkForwardSpec", "parse_duration", "purged_kfold", "walk_forward"]
