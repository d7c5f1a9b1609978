"""Sample weights by label uniqueness (López de Prado, *Advances in Financial Machine
Learning*, ch. 4).

Labels of neighbouring bars look at almost the same future: with a 24-bar horizon the
labels of t and t+1 share 23 of their 24 returns. Training on every row as if it were
an independent sample counts each stretch of market about ``horizon`` times, and counts
a stretch covered by many overlapping labels (a calm run where every barrier times out)
more than a stretch where labels end quickly (a crash that hits every stop in one bar).
The average uniqueness of a label, the mean over the bars it spans of 1 / (number of
labels spanning that bar), is the share of its information that is its own; using it
as the sample weight makes the model see each stretch of market about once.

A label decided at the close of bar i spans the returns of bars i+1 .. end (end = i +
bars to exit): those are the price moves its outcome depends on. Concurrency is
counted over the rows one passes (a fold's training rows), never over the whole table:
a test row's label (its span, from its own exit) must not shape a training weight.
"""

from __future__ import annotations

import numpy as np

from perptrader.ml.base import MLFrame


def label_end_positions(n: int, bars_to_exit: np.ndarray) -> np.ndarray:
    """Position of the last bar each row's label depends on: i + bars_to_exit[i].

    ``bars_to_exit`` has one entry per row (NaN = unknown label, e.g. ``label_tb_bars``).
    Returns int64, -1 where the label is unknown or would end past the last bar (its
    outcome is not in the data). Raises ValueError on a known span shorter than 1 bar: a
    label that depends on no future bar is not a label.
    """
    bars = np.asarray(bars_to_exit, dtype=np.float64)
    if bars.ndim != 1 or len(bars) != n:
        raise ValueError(f"bars_to_exit must be 1-d of length {n}, got {bars.shape}")
    known = np.isfinite(bars)
    if (bars[known] < 1).any():
        raise ValueError("bars_to_exit must be >= 1 where known")
    end = np.full(n, -1, dtype=np.int64)
    end[known] = np.arange(n, dtype=np.int64)[known] + bars[known].astype(np.int64)
    end[end > n - 1] = -1
    return end


def concurrency(end: np.ndarray) -> np.ndarray:
    """Number of labels (rows with ``end >= 0``) whose span (i, end] covers each bar."""
    end = _check_end(end)
    n = len(end)
    start = np.flatnonzero(end >= 0)
    # +1 where a span starts (bar i+1), -1 after it ends (bar end+1): a running sum
    delta = (np.bincount(start + 1, minlength=n + 1)
             - np.bincount(end[start] + 1, minlength=n + 1))
    return np.cumsum(delta[:n])


def average_uniqueness(end: np.ndarray) -> np.ndarray:
    """Per row: the mean over its span (i, end[i]] of 1 / concurrency (in (0, 1]).

    ``end`` (from ``label_end_positions``) indexes the same bars as its own positions;
    rows with ``end == -1`` take no part in the concurrency and get NaN. Vectorised: a
    prefix sum of 1 / concurrency, read at both ends of each span.
    """
    end = _check_end(end)
    n = len(end)
    out = np.full(n, np.nan)
    rows = np.flatnonzero(end >= 0)
    if len(rows) == 0:
        return out
    conc = concurrency(end)
    inverse = np.zeros(n)
    np.divide(1.0, conc, out=inverse, where=conc > 0)
    prefix = np.concatenate(([0.0], np.cumsum(inverse)))
    first, last = rows + 1, end[rows] + 1  # span = bars first .. last - 1
    out[rows] = (prefix[last] - prefix[first]) / (last - first)
    return out


def _check_end(end: np.ndarray) -> np.ndarray:
    end = np.asarray(end)
    if end.ndim != 1 or end.dtype.kind not in "iu":
        raise ValueError("end positions must be a 1-d integer array")
    known = end >= 0
    positions = np.arange(len(end))
    if (end[known] <= positions[known]).any() or (end >= len(end)).any():
        raise ValueError("end positions must be after their row and inside the data")
    return end.astype(np.int64, copy=False)


def label_bars(data: MLFrame) -> np.ndarray:
    """Bars from decision to the end of each row's label (NaN where unknown).

    A triple-barrier label ends where its barrier was hit: its ``<label>_bars`` column
    (``label_tb`` -> ``label_tb_bars``); any other label ends ``data.horizon`` bars on.
    """
    frame = data.frame
    column = f"{data.label}_bars"
    if column not in frame.columns and data.label.startswith("label_tb"):
        column = "label_tb_bars"
    if column in frame.columns:
        bars = frame[column].to_numpy(dtype=np.float64, na_value=np.nan).copy()
    else:
        bars = np.full(len(frame), float(data.horizon))
    bars[data.y < 0] = np.nan  # an unknown label spans nothing
    return bars


def uniqueness_weights(data: MLFrame, rows: np.ndarray, *, normalize: bool = True
                       ) -> np.ndarray:
    """Average uniqueness of the labels of ``rows``, concurrency counted among ``rows``
    only (one value per entry of ``rows``; NaN where the label is unknown).

    ``normalize`` scales the known weights to mean 1: LightGBM's regularisation
    (``lambda_l2``, ``min_sum_hessian_in_leaf``) acts on sums of weights, so weights of
    mean ~1/horizon would quietly make the trees ~horizon times more regularised than
    the same parameters with unit weights. Only the relative weights carry the idea.
    """
    rows = np.asarray(rows, dtype=np.int64)
    n = len(data)
    end_all = label_end_positions(n, label_bars(data))
    end = np.full(n, -1, dtype=np.int64)
    end[rows] = end_all[rows]  # other rows' labels take no part
    weights = average_uniqueness(end)[rows]
    if normalize:
        known = ~np.isnan(weights)
        if known.any():
            weights = weights / weights[known].mean()
    return weights


def fold_sample_weight(data: MLFrame, train_rows: np.ndarray,
                       valid_rows: np.ndarray | None = None) -> np.ndarray:
    """A per-frame-row ``MLFrame.sample_weight`` for one fold: uniqueness weights of the
    training rows (concurrency among them) and, apart, of the validation rows; NaN
    (weight 1 in the models) everywhere else. The two sets are weighed separately so
    neither's labels shape the other's weights."""
    out = np.full(len(data), np.nan)
    for rows in (train_rows, valid_rows):
        if rows is not None and len(rows):
            rows = np.asarray(rows, dtype=np.int64)
            out[rows] = uniqueness_weights(data, rows)
    return out
