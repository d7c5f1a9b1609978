"""Data-quality checks over canonical frames and over a whole store.

``dataset.validate`` refuses, at import time, rows that no store should hold. The
checks here report on what *is* stored: holes, duplicates, broken bars, Binance's own
kline incidents (zero-volume placeholder candles), candles saved while still forming,
outliers worth a look, implausible funding rates and funding-interval changes.

Severities:

* ``error``: the data is wrong and will mislead any consumer (duplicate keys,
  timestamps out of order, OHLC that contradicts itself, non-positive prices, negative
  volumes, bars off their timeframe's grid, crossed books, implausible funding).
* ``warning``: real-world data that deserves attention but is not necessarily wrong
  (gaps, zero-volume bars, a possibly partial last bar, robust outliers, funding
  rates outside the usual band, funding times not on a settlement slot).
* ``info``: facts worth knowing (funding-interval changes).

Everything is vectorised with numpy/pandas; the checks cost a fraction of a second per
million bars.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perptrader.core.timeframes import timeframe_ms
from perptrader.marketdata.kinds import BAR_KINDS, Kind
from perptrader.marketdata.resample import anchor_ms, can_resample, resample_bars
from perptrader.marketdata.store.base import MarketStore, SeriesInfo

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)
_HOUR_US = 3_600_000_000
_MINUTE = pd.Timedelta(seconds=60)
_SIX_HOURS = pd.Timedelta(hours=6)
_MAD_SIGMA = 1.4826  # MAD -> standard deviation for normal data


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the checks (the defaults suit Binance perpetuals)."""

    #: a step longer than this many expected steps is a gap
    gap_factor: float = 1.5
    #: a log return further than this many robust standard deviations (1.4826 x MAD,
    #: about 15 raw MADs) from the rolling median is an outlier. Crypto returns are fat
    #: tailed: real market moves get flagged too, hence only a warning
    outlier_k: float = 10.0
    #: rows in the centred window of the rolling median / MAD
    outlier_window: int = 480
    #: a bar whose log(high/low) exceeds this many times the median of the previous
    #: ``range_window`` bars is an outlier
    range_factor: float = 20.0
    range_window: int = 48
    #: the last bar is possibly partial when its volume is below this share of the
    #: median volume of the previous ``partial_lookback`` bars
    partial_ratio: float = 0.2
    partial_lookback: int = 48
    #: |funding rate| per interval beyond which a rate is unusual (warning) ...
    funding_warn: float = 0.01
    #: ... and beyond which it is not plausible for any Binance contract (error)
    funding_max: float = 0.04
    #: how far a raw exchange funding time may lie from its settlement slot
    funding_exchange_lag: pd.Timedelta = _MINUTE
    #: check_store reads only the last window of book snapshots and trades
    event_window: pd.Timedelta = _SIX_HOURS
    #: timestamps listed per issue
    max_timestamps: int = 5


@dataclass(frozen=True)
class Issue:
    """One finding: which series, which check, how bad, how often, where first."""

    series: str  # e.g. 'BTCUSDT/ohlcv/1h'
    check: str
    severity: str  # error | warning | info
    count: int
    timestamps: tuple[str, ...]  # first few, ISO 8601 UTC
    message: str

    def as_json(self) -> dict[str, object]:
        out = asdict(self)
        out["timestamps"] = list(self.timestamps)
        return out


@dataclass
class QualityReport:
    issues: list[Issue] = field(default_factory=list)
    #: one entry per series checked: series, kind, timeframe, rows, checked_rows, first,
    #: last, sampled (True when only a window of an event stream was read)
    series: list[dict[str, object]] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return any(i.severity == ERROR for i in self.issues)

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for i in self.issues if i.severity == s) for s in SEVERITIES}

    def as_table(self) -> Any:
        """A rich Table for the terminal (``perptrader data check``): one row per issue,
        errors first."""
        from rich.table import Table

        counts = self.counts()
        table = Table(title="Data quality",
                      caption=f"{len(self.series)} series checked: {counts[ERROR]} error(s), "
                              f"{counts[WARNING]} warning(s), {counts[INFO]} info")
        for col in ("series", "check", "severity", "count", "first at", "message"):
            table.add_column(col, overflow="fold")
        style = {ERROR: "bold red", WARNING: "yellow", INFO: "cyan"}
        for issue in sorted(self.issues, key=lambda i: SEVERITIES.index(i.severity)):
            table.add_row(issue.series, issue.check,
                          f"[{style[issue.severity]}]{issue.severity}[/]", str(issue.count),
                          "\n".join(issue.timestamps[:3]), issue.message)
        return table

    def as_json(self) -> dict[str, object]:
        return {
            "ok": not self.has_errors,
            "has_errors": self.has_errors,
            "counts": self.counts(),
            "series": [dict(s) for s in self.series],
            "issues": [i.as_json() for i in self.issues],
        }


# --------------------------------------------------------------------------- frames


def check_frame(
    kind: Kind | str,
    frame: pd.DataFrame,
    timeframe: str | None = None,
    *,
    series: str | None = None,
    config: QualityConfig | None = None,
) -> list[Issue]:
    """Run every check that applies to ``kind`` over a canonical frame.

    ``timeframe`` is the bar timeframe (bars); without it the median step is used.
    ``series`` labels the issues (default ``kind/timeframe``).
    """
    kind = Kind(kind)
    cfg = config or QualityConfig()
    label = series or "/".join(p for p in (kind.value, timeframe) if p)
    ctx = _Ctx(label, cfg)
    if frame is None or frame.empty:
        return []
    if "ts" not in frame.columns and isinstance(frame.index, pd.DatetimeIndex):
        frame = frame.rename_axis("ts").reset_index()
    ts = _ts(frame)
    if np.isnan(ts).any():
        missing = np.isnan(ts)
        ctx.issues.append(Issue(label, "missing_timestamp", ERROR, int(missing.sum()), (),
                                "rows without a timestamp (left out of the other checks)"))
        frame, ts = frame[~missing], ts[~missing]
    ts = ts.astype(np.int64)
    ctx.check_order(ts)
    if (np.diff(ts) < 0).any():
        order = np.argsort(ts, kind="stable")
        frame, ts = frame.iloc[order].reset_index(drop=True), ts[order]
    else:
        frame = frame.reset_index(drop=True)
    frame, ts = ctx.check_duplicates(kind, frame, ts)

    if kind in BAR_KINDS:
        _check_bars(ctx, kind, frame, ts, timeframe)
    elif kind is Kind.FUNDING:
        _check_funding(ctx, frame, ts)
    elif kind in (Kind.OPEN_INTEREST, Kind.LONG_SHORT, Kind.TAKER_RATIO):
        _check_periodic(ctx, kind, frame, ts)
    elif kind in (Kind.TRADES, Kind.LIQUIDATIONS):
        _check_prints(ctx, frame, ts)
    elif kind is Kind.BOOK:
        _check_book(ctx, frame, ts)
    return ctx.issues


class _Ctx:
    """Collects issues for one series."""

    def __init__(self, series: str, cfg: QualityConfig) -> None:
        self.series, self.cfg, self.issues = series, cfg, []

    def add(self, check: str, severity: str, mask: np.ndarray, ts: np.ndarray,
            message: str) -> None:
        """Add an issue when ``mask`` (over ``ts``) has any hit."""
        n = int(np.count_nonzero(mask))
        if n:
            hits = ts[np.flatnonzero(mask)[: self.cfg.max_timestamps]]
            self.issues.append(Issue(self.series, check, severity, n, _iso(hits), message))

    def check_order(self, ts: np.ndarray) -> None:
        back = np.r_[False, np.diff(ts) < 0]
        self.add("non_monotonic", ERROR, back, ts,
                 "timestamps go backwards (listed: the row after the step back)")

    def check_duplicates(self, kind: Kind, frame: pd.DataFrame,
                         ts: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
        key = {
            Kind.LIQUIDATIONS: ["ts", "side", "price", "qty"],
            Kind.BOOK: ["ts", "level"],
            Kind.TRADES: ["trade_id"],
        }.get(kind, ["ts"])
        key = [k for k in key if k in frame.columns] or ["ts"]
        dup = frame.duplicated(subset=key, keep="first").to_numpy()
        if dup.any():
            same = frame.duplicated(keep="first").to_numpy()
            self.add("duplicates", ERROR, dup, ts,
                     f"rows share the key ({', '.join(key)}); {int(same.sum())} of them are "
                     f"exact copies, {int((dup & ~same).sum())} conflict; later checks keep "
                     "the first")
            return frame[~dup].reset_index(drop=True), ts[~dup]
        return frame, ts

    def check_gaps(self, ts: np.ndarray, expected: np.ndarray | int, what: str) -> None:
        """``expected``: the expected step in µs, per step (len(ts) - 1) or scalar."""
        if len(ts) < 2:
            return
        step = np.diff(ts)
        exp = np.broadcast_to(np.asarray(expected, dtype="float64"), step.shape)
        gap = step > self.cfg.gap_factor * exp
        if not gap.any():
            return
        longest = int(np.argmax(np.where(gap, step, -1)))
        missing = int(np.nansum(np.round(step[gap] / exp[gap]) - 1))
        self.add("gaps", WARNING, np.r_[gap, False], ts,
                 f"{int(gap.sum())} gap(s) longer than {self.cfg.gap_factor:g}x {what} "
                 f"(listed: the last row before each gap); longest {_span(step[longest])} "
                 f"after {_iso(ts[[longest]])[0]}; about {missing} row(s) missing in all")


def _check_bars(ctx: _Ctx, kind: Kind, frame: pd.DataFrame, ts: np.ndarray,
                timeframe: str | None) -> None:
    o, h, lo, c = (_num(frame, k) for k in ("open", "high", "low", "close"))
    if timeframe:
        step_us = timeframe_ms(timeframe) * 1000
        what = f"the {timeframe} timeframe"
        off = anchor_ms(timeframe) * 1000
        ctx.add("misaligned", ERROR, (ts - off) % step_us != 0, ts,
                f"bar open times not on the {timeframe} grid (anchored at 00:00 UTC"
                f"{', Monday' if off else ''}); joins and resampling assume the grid")
    else:
        step_us = _median_step(ts)
        what = "the median step"
    ctx.check_gaps(ts, step_us, what)

    nonpos = (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0)
    ctx.add("non_positive_price", ERROR, nonpos, ts, "open/high/low/close must be > 0")
    high_bad = h < np.fmax(o, c)
    low_bad = lo > np.fmin(o, c)
    inverted = h < lo
    ctx.add("ohlc_violation", ERROR, high_bad | low_bad | inverted, ts,
            f"bars contradict themselves: high below open/close {int(high_bad.sum())}, "
            f"low above open/close {int(low_bad.sum())}, high below low {int(inverted.sum())}")
    neg = np.zeros(len(ts), dtype=bool)
    for name in ("volume", "quote_volume", "trade_count", "taker_buy_base", "taker_buy_quote"):
        if name in frame.columns:
            neg |= _num(frame, name) < 0
    ctx.add("negative_volume", ERROR, neg, ts,
            "volume, quote volume, trade count or taker-buy volume below zero")
    if kind is Kind.OHLCV and "volume" in frame.columns:
        _check_volume(ctx, frame, ts, o, h, lo, c)
    _check_outliers(ctx, o, h, lo, c, ts, kind)


def _check_volume(ctx: _Ctx, frame: pd.DataFrame, ts: np.ndarray, o: np.ndarray,
                  h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> None:
    """Trade-price bars only: mark and index bars carry no meaningful volume."""
    vol = _num(frame, "volume")
    if "taker_buy_base" in frame.columns:
        over = _num(frame, "taker_buy_base") > vol * (1 + 1e-9) + 1e-12
        ctx.add("taker_buy_exceeds_volume", ERROR, over, ts,
                "taker-buy volume larger than the bar's volume")
    zero = vol == 0
    flat = zero & (o == h) & (h == lo) & (lo == c)
    ctx.add("zero_volume", WARNING, zero, ts,
            f"bars without volume ({int(flat.sum())} flat O=H=L=C): Binance publishes such "
            "placeholder candles during incidents and for intervals without trades; the "
            "coarser candles of those hours may hold the trades")
    _check_partial_last(ctx, vol, ts)


def _check_partial_last(ctx: _Ctx, vol: np.ndarray, ts: np.ndarray) -> None:
    cfg = ctx.cfg
    prev = vol[-cfg.partial_lookback - 1 : -1]
    prev = prev[~np.isnan(prev)]
    if len(prev) < min(12, cfg.partial_lookback) or np.isnan(vol[-1]):
        return
    median = float(np.median(prev))
    if median > 0 and vol[-1] < cfg.partial_ratio * median:
        mask = np.zeros(len(ts), dtype=bool)
        mask[-1] = True
        ctx.add("partial_last_bar", WARNING, mask, ts,
                f"the last bar's volume {vol[-1]:g} is {vol[-1] / median:.0%} of the median "
                f"of the previous {len(prev)} bars ({median:g}): possibly still forming when "
                "collected; re-import it once the bar has closed")


def _check_outliers(ctx: _Ctx, o: np.ndarray, h: np.ndarray, lo: np.ndarray,
                    c: np.ndarray, ts: np.ndarray, kind: Kind) -> None:
    cfg = ctx.cfg
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.r_[np.nan, np.diff(np.log(c))]
        rng = np.log(h / lo)
    jump = _robust_outliers(ret, cfg.outlier_k, cfg.outlier_window)
    if jump.any():
        # a bad print typically reverts on the next bar: flag those separately
        nxt = np.r_[ret[1:], np.nan]
        reverted = jump & (np.sign(nxt) == -np.sign(ret)) & (np.abs(ret + nxt)
                                                              < 0.25 * np.abs(ret))
        largest = float(np.nanmax(np.abs(ret[jump])))
        ctx.add("return_outlier", WARNING, jump, ts,
                f"close-to-close log return beyond {cfg.outlier_k:g} robust sigmas "
                f"(1.4826 x MAD) of the rolling median ({cfg.outlier_window} bars); largest "
                f"|return| {largest:.2%}; {int(reverted.sum())} of them revert on the next "
                "bar (a bad print?); the rest are usually real moves: compare with another "
                "source before removing anything")
    ref = pd.Series(rng).shift(1).rolling(cfg.range_window,
                                          min_periods=max(cfg.range_window // 4, 2)).median()
    ref_v = ref.to_numpy()
    wide = (ref_v > 0) & (rng > cfg.range_factor * ref_v)
    ctx.add("range_outlier", WARNING, wide, ts,
            f"bar range log(high/low) above {cfg.range_factor:g}x the median range of the "
            f"previous {cfg.range_window} bars"
            + ("" if kind is Kind.OHLCV else f" ({kind.value} prices)"))


def _robust_outliers(x: np.ndarray, k: float, window: int) -> np.ndarray:
    """|x - rolling median| > k * 1.4826 * rolling MAD (centred window), NaN-safe.

    The rolling MAD is floored at a quarter of the series' global MAD so that a quiet
    stretch (many zero returns) does not turn every tick into an outlier.
    """
    finite = x[np.isfinite(x)]
    if len(finite) < 20:
        return np.zeros(len(x), dtype=bool)
    g_med = float(np.median(finite))
    g_mad = float(np.median(np.abs(finite - g_med)))
    if g_mad == 0:
        return np.zeros(len(x), dtype=bool)
    s = pd.Series(np.where(np.isfinite(x), x, np.nan))
    minp = min(window, 20)
    med = s.rolling(window, center=True, min_periods=minp).median().fillna(g_med)
    mad = (s - med).abs().rolling(window, center=True, min_periods=minp).median().fillna(g_mad)
    mad_v = np.maximum(mad.to_numpy(), 0.25 * g_mad)
    dev = np.abs(s.to_numpy() - med.to_numpy())
    return np.nan_to_num(dev, nan=0.0) > k * _MAD_SIGMA * mad_v


def _check_funding(ctx: _Ctx, frame: pd.DataFrame, ts: np.ndarray) -> None:
    cfg = ctx.cfg
    rate = _num(frame, "rate")
    iv = _num(frame, "interval_hours") if "interval_hours" in frame.columns else \
        np.full(len(ts), np.nan)
    regime = _interval_regimes(ts, iv)
    if len(ts) > 1:
        expected = regime[1:] * _HOUR_US
        fallback = _median_step(ts)
        expected = np.where(np.isnan(expected), fallback, expected)
        ctx.check_gaps(ts, expected, "the funding interval")
    ctx.add("funding_ts_off_slot", WARNING, ts % _HOUR_US != 0, ts,
            "funding times not on a whole-hour settlement slot: floor the raw fundingTime "
            "to the slot for ts and keep the raw time in exchange_ts")
    if "exchange_ts" in frame.columns:
        raw = _ts_col(frame["exchange_ts"])
        far = ~np.isnan(raw) & (np.abs(raw - ts) > cfg.funding_exchange_lag.value / 1000)
        ctx.add("funding_exchange_ts_far", WARNING, far, ts,
                f"raw exchange time more than {cfg.funding_exchange_lag} from the slot")
    mag = np.abs(rate)
    ctx.add("funding_rate_implausible", ERROR, mag > cfg.funding_max, ts,
            f"|funding rate| above {cfg.funding_max:.2%} per interval: beyond any Binance "
            "cap; a unit mix-up (percent vs fraction)?")
    ctx.add("funding_rate_extreme", WARNING, (mag > cfg.funding_warn) & (mag <= cfg.funding_max),
            ts, f"|funding rate| above {cfg.funding_warn:.2%} per interval (rare; real in "
            "squeezes of small contracts)")
    if "mark_price" in frame.columns:
        ctx.add("non_positive_price", ERROR, _num(frame, "mark_price") <= 0, ts,
                "mark price must be > 0")
    iv_bad = iv <= 0
    ctx.add("funding_interval_invalid", ERROR, iv_bad, ts, "funding interval must be > 0 h")
    change = np.r_[False, (regime[1:] != regime[:-1]) & ~np.isnan(regime[1:])
                   & ~np.isnan(regime[:-1])]
    if change.any():
        idx = np.flatnonzero(change)
        pairs = ", ".join(f"{regime[i - 1]:g}h -> {regime[i]:g}h at {_iso(ts[[i]])[0]}"
                          for i in idx[: cfg.max_timestamps])
        source = "stored interval_hours" if not np.isnan(iv).all() else "inferred from steps"
        ctx.add("funding_interval_change", INFO, change, ts,
                f"funding interval changed ({source}): {pairs}")


def _interval_regimes(ts: np.ndarray, iv: np.ndarray) -> np.ndarray:
    """Funding interval in hours per row: the stored value, else inferred from steps.

    Inferred: the step to the previous row, accepted as the interval where three or more
    consecutive steps agree (a regime); other rows take the last regime before them (or
    the first one). NaN when no regime exists at all.
    """
    out = iv.astype("float64").copy()
    if not np.isnan(out).any() or len(ts) < 2:
        return out
    steps = np.r_[np.nan, np.diff(ts) / _HOUR_US]
    run_start = np.r_[True, steps[1:] != steps[:-1]]
    run_id = np.cumsum(run_start)
    lengths = np.bincount(run_id)[run_id]
    regime = pd.Series(np.where((lengths >= 3) & ~np.isnan(steps), steps, np.nan))
    regime = regime.ffill().bfill().to_numpy()
    return np.where(np.isnan(out), regime, out)


def _check_periodic(ctx: _Ctx, kind: Kind, frame: pd.DataFrame, ts: np.ndarray) -> None:
    ctx.check_gaps(ts, _median_step(ts), "the median step")
    values = [c for c in frame.columns if c != "ts"]
    neg = np.zeros(len(ts), dtype=bool)
    for name in values:
        neg |= _num(frame, name) < 0
    ctx.add("negative_value", ERROR, neg, ts, f"{', '.join(values)} must not be negative")
    if kind is Kind.OPEN_INTEREST:
        oi = _num(frame, "oi_contracts")
        with np.errstate(divide="ignore", invalid="ignore"):
            chg = np.r_[np.nan, np.diff(np.log(np.where(oi > 0, oi, np.nan)))]
        jump = _robust_outliers(chg, ctx.cfg.outlier_k, ctx.cfg.outlier_window)
        ctx.add("oi_outlier", WARNING, jump, ts,
                f"open-interest change beyond {ctx.cfg.outlier_k:g} robust sigmas of the "
                "rolling median")
    if kind is Kind.TAKER_RATIO and {"buy_volume", "sell_volume"} <= set(frame.columns):
        with np.errstate(divide="ignore", invalid="ignore"):
            implied = _num(frame, "buy_volume") / _num(frame, "sell_volume")
        ratio = _num(frame, "buy_sell_ratio")
        off = np.isfinite(implied) & (np.abs(implied - ratio) > 0.01 * np.abs(implied) + 1e-3)
        ctx.add("taker_ratio_inconsistent", WARNING, off, ts,
                "buy_sell_ratio differs from buy_volume / sell_volume by more than 1%")


def _check_prints(ctx: _Ctx, frame: pd.DataFrame, ts: np.ndarray) -> None:
    ctx.add("non_positive_price", ERROR, _num(frame, "price") <= 0, ts, "price must be > 0")
    ctx.add("non_positive_qty", ERROR, _num(frame, "qty") <= 0, ts, "quantity must be > 0")
    if "side" in frame.columns:
        side = frame["side"].astype("string")
        bad = (side.notna() & ~side.isin(["buy", "sell"])).to_numpy(dtype=bool)
        ctx.add("invalid_side", ERROR, bad, ts, "side must be buy or sell")


def _check_book(ctx: _Ctx, frame: pd.DataFrame, ts: np.ndarray) -> None:
    bid, ask = _num(frame, "bid_price"), _num(frame, "ask_price")
    ctx.add("non_positive_price", ERROR, (bid <= 0) | (ask <= 0), ts, "book prices must be > 0")
    neg = (_num(frame, "bid_qty") < 0) | (_num(frame, "ask_qty") < 0)
    ctx.add("negative_qty", ERROR, neg, ts, "book quantities must not be negative")
    ctx.add("crossed_book", ERROR, bid >= ask, ts, "bid at or above the ask at the same level")
    order = np.lexsort((_num(frame, "level"), ts))
    b, a, t = bid[order], ask[order], ts[order]
    same = np.r_[False, t[1:] == t[:-1]]
    bad = same & ((b >= np.r_[np.inf, b[:-1]]) | (a <= np.r_[-np.inf, a[:-1]]))
    ctx.add("book_levels_unordered", ERROR, bad, t,
            "deeper levels must have lower bids and higher asks")


def check_consistency(
    fine: pd.DataFrame,
    fine_tf: str,
    coarse: pd.DataFrame,
    coarse_tf: str,
    *,
    series: str | None = None,
    config: QualityConfig | None = None,
) -> list[Issue]:
    """Compare ``coarse`` bars with complete buckets aggregated from ``fine`` bars.

    OHLC must match exactly (relative 1e-9), volume to 1e-6 relative. Mismatches are
    warnings: Binance builds each interval's klines separately, so incidents and
    candles saved while still forming (less volume) show up here.
    """
    cfg = config or QualityConfig()
    label = series or f"{coarse_tf}<-{fine_tf}"
    if fine.empty or coarse.empty:
        return []
    agg = resample_bars(fine, fine_tf, coarse_tf)
    both = agg.merge(coarse, on="ts", suffixes=("_fine", ""), how="inner")
    if both.empty:
        return []
    ts = _ts(both)
    ohlc = np.zeros(len(both), dtype=bool)
    for name in ("open", "high", "low", "close"):
        ohlc |= ~np.isclose(_num(both, f"{name}_fine"), _num(both, name), rtol=1e-9, atol=0)
    vf, vc = _num(both, "volume_fine"), _num(both, "volume")
    known = ~np.isnan(vf) & ~np.isnan(vc)
    vol = known & ~np.isclose(vf, vc, rtol=1e-6, atol=1e-12)
    ctx = _Ctx(label, cfg)
    ctx.add("cross_timeframe_mismatch", WARNING, ohlc | vol, ts,
            f"of {len(both)} complete {coarse_tf} buckets rebuilt from {fine_tf} bars, "
            f"{int(ohlc.sum())} differ in OHLC and {int(vol.sum())} in volume "
            f"({int((vol & (vf < vc)).sum())} with less volume in the {fine_tf} bars, "
            f"{int((vol & (vf > vc)).sum())} with less in the {coarse_tf} bar): candles "
            "saved while still forming, or exchange-side kline incidents (listed: the "
            f"{coarse_tf} bars)")
    return ctx.issues


# --------------------------------------------------------------------------- store


def check_store(
    store: MarketStore,
    *,
    config: QualityConfig | None = None,
    series: Sequence[SeriesInfo] | None = None,
) -> QualityReport:
    """Check every stored series (or the given ``series`` from ``store.inventory()``).

    Bars and other periodic series are read whole. Book snapshots and trades can be
    huge, so only their last ``config.event_window`` is read (marked ``sampled``);
    liquidations are read whole.
    """
    cfg = config or QualityConfig()
    report = QualityReport()
    infos = list(series) if series is not None else store.inventory()
    for info in infos:
        label = "/".join(p for p in (info.instrument.display, info.kind_label, info.timeframe)
                         if p)
        start = None
        if info.kind in (Kind.BOOK, Kind.TRADES):
            last = pd.Timestamp(info.last)
            start = max(pd.Timestamp(info.first), last - cfg.event_window)
            start = None if start <= pd.Timestamp(info.first) else start
        timeframe = info.timeframe if info.kind in BAR_KINDS else None
        frame = store.read(info.kind, info.instrument, timeframe, start=start)
        report.issues.extend(check_frame(info.kind, frame, timeframe, series=label, config=cfg))
        report.series.append({
            "series": label,
            "kind": info.kind_label,
            "timeframe": info.timeframe,
            "rows": info.rows,
            "checked_rows": len(frame),
            "first": _iso_one(info.first),
            "last": _iso_one(info.last),
            "sampled": start is not None,
        })
    report.issues.extend(_check_timeframes(store, infos, cfg))
    return report


def _check_timeframes(store: MarketStore, infos: list[SeriesInfo],
                      cfg: QualityConfig) -> list[Issue]:
    """Each bar series against the next finer stored timeframe that tiles it: rebuilt
    buckets must match, and a coarse last bar reaching past the end of the finer data
    was probably still forming when collected (its volume can look normal: a daily bar
    collected at 20:00 already has most of its volume)."""
    issues: list[Issue] = []
    groups: dict[tuple, dict[str, SeriesInfo]] = {}
    for info in infos:
        if info.kind in BAR_KINDS and info.timeframe:
            key = (info.instrument, info.kind, info.kind_label)
            groups.setdefault(key, {})[info.timeframe] = info
    for (inst, kind, kind_label), by_tf in groups.items():
        tfs = sorted(by_tf, key=timeframe_ms)
        for i, coarse_tf in enumerate(tfs):
            finer = [tf for tf in tfs[:i] if can_resample(tf, coarse_tf)]
            if not finer:
                continue
            fine_tf = finer[-1]
            label = f"{inst.display}/{kind_label}/{coarse_tf}"
            issues.extend(check_consistency(
                store.read(kind, inst, fine_tf), fine_tf, store.read(kind, inst, coarse_tf),
                coarse_tf, series=label, config=cfg))
            c_open = pd.Timestamp(by_tf[coarse_tf].last)
            c_close = c_open + pd.Timedelta(milliseconds=timeframe_ms(coarse_tf))
            f_close = pd.Timestamp(by_tf[fine_tf].last) + pd.Timedelta(
                milliseconds=timeframe_ms(fine_tf))
            if c_open < f_close < c_close:
                issues.append(Issue(
                    label, "last_bar_beyond_finer_data", WARNING, 1, (_iso_one(c_open),),
                    f"the last {coarse_tf} bar closes at {_iso_one(c_close)} but the "
                    f"{fine_tf} data ends at {_iso_one(f_close)}: the {coarse_tf} bar was "
                    "probably still forming when collected"))
    return issues


# --------------------------------------------------------------------------- helpers


def _ts(frame: pd.DataFrame) -> np.ndarray:
    if "ts" in frame.columns:
        return _ts_col(frame["ts"])
    if isinstance(frame.index, pd.DatetimeIndex):
        return _ts_col(pd.Series(frame.index))
    raise ValueError("a canonical frame needs a 'ts' column")


def _ts_col(values: pd.Series) -> np.ndarray:
    """Epoch µs as float (NaN for NaT), or int64 when there is no NaT."""
    idx = pd.DatetimeIndex(values)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    us = idx.as_unit("us").asi8
    nat = idx.isna()
    return np.where(nat, np.nan, us) if nat.any() else us


def _iso_one(value: object) -> str:
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts
    return _iso(np.array([ts.value // 1000]))[0]  # Timestamp.value is always in ns


def _num(frame: pd.DataFrame, name: str) -> np.ndarray:
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _median_step(ts: np.ndarray) -> float:
    steps = np.diff(ts)
    steps = steps[steps > 0]
    return float(np.median(steps)) if len(steps) else np.nan


def _iso(us: np.ndarray) -> tuple[str, ...]:
    """Epoch µs -> 'YYYY-MM-DDTHH:MM:SS[.ffffff]Z' (a handful at a time)."""
    idx = pd.to_datetime(np.asarray(us, dtype=np.int64), unit="us", utc=True)
    text = idx.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return tuple(t.rstrip("0").rstrip(".") + "Z" for t in text)


def _span(us: float) -> str:
    hours = us / _HOUR_US
    return f"{hours / 24:.1f} d" if hours >= 48 else f"{hours:g} h" if hours >= 1 else \
        f"{us / 60e6:g} min"


__all__ = ["ERROR", "INFO", "SEVERITIES", "WARNING", "Issue", "QualityConfig",
           "QualityReport", "check_consistency", "check_frame", "check_store"]
