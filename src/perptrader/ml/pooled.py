"""Pooled, cross-symbol training: one model fitted on several symbols' rows at once.

Why pool: one symbol's 1h history gives ~20k rows, of which a 540-day window uses
13k; a model fitted on BTC, ETH, SOL ... together sees several times more examples of
the same market mechanics (squeezes, funding extremes, volume climaxes). It can then be
asked about a symbol it never saw, which is the honest test of "it learnt mechanics,
not one chart".

What has to change against one-symbol training:

* **scales**: price-level and volume features differ by orders of magnitude between
  symbols, so every (non-flag) feature is z-scored PER SYMBOL with a CAUSAL rolling
  window (``normalise_per_symbol``: the statistics at bar t use only that symbol's rows
  <= t, never the future nor another symbol);
* **the index repeats**: the pooled table holds several rows per bar time (one per
  symbol), sorted by time then symbol. Walk-forward windows are cut on the unique bar
  TIMES (``pooled_folds``), then mapped to every symbol's rows, so no symbol's test time
  is ever in training and the label horizon is purged in bars of time, across symbols
  (BTC's label at t overlaps ETH's test window just as much as ETH's own);
* **cross-asset context**: the leader's (BTC's) recent returns and volatility are
  added to every symbol, known at the close of the same bar (``cross_asset_features``);
* **models**: only the gradient-boosting kinds work on a table whose rows interleave
  symbols (they take rows one by one); the sequence experts cut windows of consecutive
  rows, which here would mix symbols, so they are refused.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from perptrader.ml.base import CLASSES, MLFrame
from perptrader.ml.splits import Fold, WalkForwardSpec, walk_forward

#: model kinds that take rows independently (no sequence window): safe on pooled rows
POOLED_KINDS = ("lightgbm", "xgboost", "catboost", "gbdt")
#: the leader's look-back returns (bars) and its realised-volatility window
XA_RETURN_BARS = (1, 4, 24)
XA_VOL_BARS = 24
#: a column with at most this many distinct values is a flag / category (pattern hits,
#: candle directions): it is kept raw, because its z-score would turn the same event
#: into different numbers as the recent base rate drifts
FLAG_MAX_DISTINCT = 5
#: the one-hot symbol columns are named ``sym_<SYMBOL>``
SYMBOL_PREFIX = "sym_"


def _bar_step(index: pd.DatetimeIndex) -> pd.Timedelta | None:
    """Median spacing of a sorted index (None with fewer than two bars)."""
    if len(index) < 2:
        return None
    return pd.Timedelta(int(np.median(np.diff(index.asi8))), unit=index.unit)


def cross_asset_features(frame_index: pd.DatetimeIndex, leader_close: pd.Series,
                         prefix: str = "xa_btc_") -> pd.DataFrame:
    """The leader's log returns over 1, 4, 24 bars and its 24-bar realised volatility
    (std of 1-bar log returns), on ``frame_index``.

    ``leader_close`` is indexed by bar OPEN time on the same timeframe as the frame: the
    leader's bar t closes when the symbol's bar t closes, so its close is known at the
    decision time of bar t (no look-ahead). Returns are taken on the leader's regular bar
    grid: across a gap in the leader's data they are NaN rather than spanning more time
    than they claim. Times where the leader has no bar are NaN (trees take NaN natively).
    """
    if not isinstance(frame_index, pd.DatetimeIndex):
        raise TypeError("cross_asset_features needs a DatetimeIndex")
    close = pd.Series(leader_close, dtype=np.float64).dropna()
    if not isinstance(close.index, pd.DatetimeIndex):
        raise TypeError("leader_close must be indexed by bar open time")
    if not close.index.is_monotonic_increasing or close.index.has_duplicates:
        raise ValueError("leader_close needs a strictly increasing index")
    if (close <= 0).any():
        raise ValueError("leader_close must be positive")
    columns = [f"{prefix}ret_{k}" for k in XA_RETURN_BARS] + [f"{prefix}vol_{XA_VOL_BARS}"]
    step = _bar_step(close.index)
    if step is None:
        return pd.DataFrame(np.nan, index=frame_index, columns=columns)
    own = _bar_step(frame_index.unique().sort_values())
    if own is not None and own != step:
        raise ValueError(f"cross_asset_features: the frame's bars ({own}) and the "
                         f"leader's ({step}) differ; resample the leader first")
    grid = pd.date_range(close.index[0], close.index[-1], freq=step)
    log_close = np.log(close).reindex(grid)
    r1 = log_close.diff(1)
    out = {f"{prefix}ret_{k}": log_close.diff(k) for k in XA_RETURN_BARS}
    out[f"{prefix}vol_{XA_VOL_BARS}"] = r1.rolling(XA_VOL_BARS,
                                                   min_periods=XA_VOL_BARS).std()
    table = pd.DataFrame(out, index=grid)
    return table.reindex(frame_index)


def normalise_per_symbol(frame: pd.DataFrame, columns: list[str], window: int = 500,
                         min_periods: int | None = None) -> pd.DataFrame:
    """Causal rolling z-score of ``columns`` of ONE symbol's table (rows sorted by time).

    At row t: (x_t - mean) / std over that symbol's last ``window`` rows up to and
    including t (NaN skipped), NaN until ``min_periods`` (default window // 4) values are
    known. A window whose values are all equal gives 0 (the value IS the mean). Why
    rolling, not a global fit: a z-score with full-sample statistics would tell a
    training row where the price level stands in the future.
    """
    if window < 2:
        raise ValueError("normalise_per_symbol needs window >= 2")
    if not frame.index.is_monotonic_increasing or frame.index.has_duplicates:
        raise ValueError("normalise_per_symbol needs ONE symbol's rows, sorted by time "
                         "(a repeated time means several symbols were mixed)")
    minimum = max(2, window // 4) if min_periods is None else int(min_periods)
    if not 2 <= minimum <= window:
        raise ValueError("min_periods must be in [2, window]")
    values = frame[list(columns)].astype(np.float64)
    rolling = values.rolling(window, min_periods=minimum)
    mean, std = rolling.mean(), rolling.std()
    z = (values - mean) / std
    # rolling std of a constant window is 0 (or ~1e-17 rounding): the value is the mean
    flat = std.abs() <= 1e-12 * np.maximum(1.0, mean.abs())
    z = z.mask(flat & values.notna() & mean.notna(), 0.0)
    return z


def flag_columns(frames: list[pd.DataFrame], columns: list[str]) -> list[str]:
    """The columns with at most ``FLAG_MAX_DISTINCT`` distinct values in every frame
    (kept raw). A property of what the column IS (a pattern hit, a direction), so it is
    read over whole frames: no row's value depends on it."""
    counts = pd.concat([f[list(columns)].nunique(dropna=True) for f in frames], axis=1)
    most = counts.max(axis=1)
    return [c for c in columns if most[c] <= FLAG_MAX_DISTINCT]


@dataclass
class PooledFrame:
    """Several symbols' rows in one table, sorted by (time, symbol).

    ``data.index`` repeats times (one row per symbol and bar); ``symbol[i]`` names the
    symbol of row i; ``symbols`` is their order (the order of ``pool``'s dict).
    """

    data: MLFrame
    symbol: np.ndarray
    symbols: list[str]

    def rows_of(self, symbols: list[str] | str) -> np.ndarray:
        """Positions of the rows of ``symbols`` (sorted)."""
        wanted = [symbols] if isinstance(symbols, str) else list(symbols)
        unknown = [s for s in wanted if s not in self.symbols]
        if unknown:
            raise KeyError(f"symbols not in the pooled frame: {unknown} "
                           f"(have {self.symbols})")
        return np.flatnonzero(np.isin(self.symbol, wanted)).astype(np.int64)


def _common_features(frames: dict[str, MLFrame]) -> list[str]:
    """Feature columns present in every frame, in the first frame's order."""
    first, *rest = frames.values()
    shared = set(first.features)
    for f in rest:
        shared &= set(f.features)
    return [c for c in first.features if c in shared]


def _leader_close(frames: dict[str, MLFrame], leader: str | None,
                  leader_close: pd.Series | None) -> pd.Series | None:
    if leader is None:
        return None
    if leader_close is not None:
        return leader_close
    if leader not in frames:
        raise ValueError(f"pool: leader {leader!r} is not among the frames "
                         f"({list(frames)}); pass leader_close or leader=None")
    return frames[leader].frame["close"]


def _symbol_table(data: MLFrame, features: list[str], keep: list[str],
                  normalise: bool, raw: list[str], xa_close: pd.Series | None,
                  prefix: str) -> pd.DataFrame:
    """One symbol's part of the pooled table: its kept columns, features normalised."""
    table = data.frame[keep]
    pieces = [table]
    if normalise:
        skip = set(raw)
        scaled = [c for c in features if c not in skip]
        if scaled:
            pieces = [table.drop(columns=scaled), normalise_per_symbol(data.frame, scaled)]
    if xa_close is not None:
        pieces.append(cross_asset_features(data.index, xa_close, prefix=prefix))
    out = pd.concat(pieces, axis=1) if len(pieces) > 1 else table.copy()
    return out[[*keep, *(c for c in out.columns if c not in set(keep))]]


def pool(frames: dict[str, MLFrame], *, normalise: bool = True,
         symbol_feature: bool = False, leader: str | None = "BTCUSDT",
         leader_close: pd.Series | None = None, xa_prefix: str = "xa_btc_") -> PooledFrame:
    """Stack per-symbol tables into one ``PooledFrame``.

    Features: those common to all frames (a family absent for one symbol is dropped for
    all, rather than NaN for one symbol that the model would read as a symbol tag),
    z-scored per symbol when ``normalise`` (flags kept raw, see ``FLAG_MAX_DISTINCT``),
    plus the leader's cross-asset features on every symbol (the leader included, so the
    columns mean the same on every row) and, with ``symbol_feature``, one-hot
    ``sym_<SYMBOL>`` columns. A symbol left out of training keeps its (all-zero in
    training) column: the trees cannot use it, so it sees the symbol-free model.
    The label and every non-feature column common to all frames (OHLCV, label
    helpers) are kept; ``horizon`` is the largest of the frames'.
    """
    if not frames:
        raise ValueError("pool needs at least one frame")
    labels = {f.label for f in frames.values()}
    if len(labels) != 1:
        raise ValueError(f"pool: frames name different labels {sorted(labels)}")
    timeframes = {f.meta.get("timeframe") for f in frames.values()} - {None}
    if len(timeframes) > 1:
        raise ValueError(f"pool: frames of different timeframes {sorted(timeframes)}")
    features = _common_features(frames)
    if not features:
        raise ValueError("pool: the frames share no feature column")
    first = next(iter(frames.values()))
    shared_cols = set.intersection(*(set(f.frame.columns) for f in frames.values()))
    keep = [c for c in first.frame.columns if c in shared_cols]
    raw = flag_columns([f.frame for f in frames.values()], features) if normalise else []
    xa_close = _leader_close(frames, leader, leader_close)
    parts, codes = [], []
    for code, data in enumerate(frames.values()):
        parts.append(_symbol_table(data, features, keep, normalise, raw, xa_close,
                                   xa_prefix))
        codes.append(np.full(len(data), code, dtype=np.int64))
    table = pd.concat(parts, axis=0)
    code = np.concatenate(codes)
    order = np.lexsort((code, table.index.asi8))
    table, code = table.iloc[order], code[order]
    symbols = list(frames)
    all_features = list(features)
    if xa_close is not None:
        all_features += [f"{xa_prefix}ret_{k}" for k in XA_RETURN_BARS]
        all_features.append(f"{xa_prefix}vol_{XA_VOL_BARS}")
    if symbol_feature:
        one_hot = pd.DataFrame(
            {f"{SYMBOL_PREFIX}{name}": (code == i).astype(np.float64)
             for i, name in enumerate(symbols)}, index=table.index)
        table = pd.concat([table, one_hot], axis=1)
        all_features += one_hot.columns.tolist()
    meta = {"symbols": symbols, "timeframe": next(iter(timeframes), None),
            "feature_set": first.meta.get("feature_set"), "pooled": True,
            "normalise": normalise, "symbol_feature": symbol_feature, "leader": leader,
            "raw_flags": raw}
    data = MLFrame(table, all_features, label=first.label,
                   horizon=max(f.horizon for f in frames.values()), meta=meta)
    return PooledFrame(data=data, symbol=np.asarray(symbols, dtype=object)[code],
                       symbols=symbols)


def _times(pooled: PooledFrame) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """(unique sorted bar times, the time position of each row)."""
    index = pooled.data.index
    if not index.is_monotonic_increasing:
        raise ValueError("a pooled frame's rows must be sorted by time")
    unique = index.unique()
    return unique, unique.get_indexer(index).astype(np.int64)


def pooled_folds(pooled: PooledFrame, spec: WalkForwardSpec) -> list[Fold]:
    """Walk-forward folds of ``spec`` cut on the unique bar TIMES, mapped to the rows of
    every symbol (purged by ``data.horizon`` bars of time, see ``splits.walk_forward``).

    A time is in one role for all symbols: no symbol's training row shares a time with,
    or has a label window reaching into, any symbol's test window.
    """
    unique, at = _times(pooled)
    folds = walk_forward(unique, spec, pooled.data.horizon)
    out = []
    for fold in folds:
        parts = []
        for time_rows in (fold.train, fold.valid, fold.test):
            mask = np.zeros(len(unique), dtype=bool)
            mask[time_rows] = True
            parts.append(np.flatnonzero(mask[at]).astype(np.int64))
        out.append(Fold(fold.index, parts[0], parts[1], parts[2],
                        stamps=pooled.data.index))
    return out


def position_horizon(pooled: PooledFrame) -> int:
    """A purge in POSITIONS that covers ``horizon`` bars of time: horizon × the most rows
    one bar time holds. Models that purge internally by position (the ``gbdt`` stack's
    out-of-fold split) get a view with this horizon, so their inner purge stays at
    least as wide in time as on one symbol."""
    _, at = _times(pooled)
    per_time = int(np.bincount(at).max()) if len(at) else 1
    return pooled.data.horizon * per_time


def model_view(pooled: PooledFrame, kind: str) -> MLFrame:
    """The table to hand ``make_model(kind).fit``: ``pooled.data`` itself, or for the
    ``gbdt`` stack (inner purged k-fold by position) a view whose ``horizon`` is
    ``position_horizon``. Use it whenever fitting a model on pooled rows directly."""
    data = pooled.data
    if kind != "gbdt":
        return data
    return MLFrame(data.frame, data.features, label=data.label,
                   horizon=position_horizon(pooled), meta=data.meta)


def pooled_walk_forward(pooled: PooledFrame, kind: str, spec: WalkForwardSpec, *,
                        model_kwargs: dict[str, Any] | None = None,
                        train_symbols: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Out-of-sample probabilities per symbol from models fitted on ``train_symbols``.

    Each fold fits a fresh ``make_model(kind, **model_kwargs)`` on the fold's training
    rows of ``train_symbols`` (all symbols by default), early-stops on their validation
    rows, and predicts the labelled test rows of EVERY symbol: a symbol outside
    ``train_symbols`` is scored on the same test windows as one it never saw. A fold in
    which ``train_symbols`` have no labelled training or validation rows (a data gap)
    is skipped for every symbol, with a warning, so all symbols keep the same windows.
    Returns {symbol: DataFrame(index = bar time, columns SELL, HOLD, BUY, fold)}.
    """
    from perptrader.ml.models import make_model

    if kind not in POOLED_KINDS:
        raise ValueError(f"pooled training supports the row-wise kinds {POOLED_KINDS}, "
                         f"not {kind!r}: sequence models cut windows of consecutive rows, "
                         "which in a pooled table interleave symbols")
    train_symbols = list(pooled.symbols if train_symbols is None else train_symbols)
    if not train_symbols:
        raise ValueError("pooled_walk_forward: train_symbols is empty")
    trainable = np.zeros(len(pooled.symbol), dtype=bool)
    trainable[pooled.rows_of(train_symbols)] = True
    data = model_view(pooled, kind)
    parts: dict[str, list[pd.DataFrame]] = {s: [] for s in pooled.symbols}
    for fold in pooled_folds(pooled, spec):
        test = data.labelled(fold.test)
        if len(test) == 0:
            continue
        train = data.labelled(fold.train[trainable[fold.train]])
        valid = data.labelled(fold.valid[trainable[fold.valid]])
        if len(train) == 0 or len(valid) == 0:
            warnings.warn(f"pooled walk-forward fold {fold.index} ({fold.test_span[0]} ..): "
                          f"no labelled training/validation rows of {train_symbols} (a "
                          "data gap); the fold is skipped for every symbol", stacklevel=2)
            continue
        model = make_model(kind, **dict(model_kwargs or {}))
        model.fit(data, train, valid)
        proba = np.asarray(model.predict_proba(data, test), dtype=np.float64)
        block = pd.DataFrame(proba, index=data.index[test], columns=list(CLASSES))
        block["fold"] = fold.index
        names = pooled.symbol[test]
        for name in pooled.symbols:
            parts[name].append(block[names == name])
    if not any(parts.values()):
        raise ValueError("pooled walk-forward: no fold has labelled test rows that a model "
                         "could be fitted for")
    return {name: pd.concat(p) if p else pd.DataFrame(columns=[*CLASSES, "fold"])
            for name, p in parts.items()}


def per_symbol_metrics(pooled: PooledFrame, oos: dict[str, pd.DataFrame],
                       train_symbols: list[str] | None = None) -> pd.DataFrame:
    """One row per symbol: n, accuracy, macro-F1, log-loss, ECE of its out-of-sample
    probabilities (``pooled_walk_forward``), and whether it was seen in training."""
    from perptrader.ml.evaluate import classification_metrics

    seen = set(pooled.symbols if train_symbols is None else train_symbols)
    y = pooled.data.y
    rows = []
    for name, proba in oos.items():
        if proba.empty:
            continue
        own = pooled.rows_of(name)
        labels = pd.Series(y[own], index=pooled.data.index[own])
        m = classification_metrics(labels.reindex(proba.index).to_numpy(),
                                   proba[list(CLASSES)].to_numpy())
        rows.append({"symbol": name, "seen": name in seen, "n": m["n"],
                     "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                     "log_loss": m["log_loss"], "ece": m["ece"]})
    return pd.DataFrame(rows)


__all__ = ["POOLED_KINDS", "PooledFrame", "cross_asset_features", "flag_columns",
           "model_view", "normalise_per_symbol", "per_symbol_metrics", "pool",
           "pooled_folds", "pooled_walk_forward", "position_horizon"]
