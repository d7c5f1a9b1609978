"""Backfill from an exchange into the store: resumable, idempotent, one page at a time.

Each page an ExchangeSource yields goes through the same ``validate`` then
``store.write`` as ``data import`` (one transaction per page), so a download and an
import of the same data store the same rows, and re-running a download changes nothing.
A series resumes after the last row already stored in the requested window; an
interrupted run therefore continues where it stopped, with no duplicate (the store's
upsert) and no gap (pages are contiguous and a page lands whole or not at all).

This module knows nothing about venues: the source is anything with the
``ExchangeSource.fetch`` shape (``perptrader.venues.backfill.CcxtRestSource``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from perptrader.core.errors import InputError, PerptraderError
from perptrader.core.instruments import Instrument
from perptrader.core.timeframes import timeframe_ms, utc_time
from perptrader.marketdata.dataset import validate
from perptrader.marketdata.kinds import BAR_KINDS, Kind
from perptrader.marketdata.sources.base import ExchangeSource
from perptrader.marketdata.store.base import MarketStore

#: ``--kinds`` names -> kinds
KIND_NAMES: dict[str, Kind] = {
    "ohlcv": Kind.OHLCV, "mark": Kind.MARK, "index": Kind.INDEX, "funding": Kind.FUNDING,
    "oi": Kind.OPEN_INTEREST, "ls_ratio": Kind.LONG_SHORT, "taker_ratio": Kind.TAKER_RATIO,
}


class DownloadError(PerptraderError):
    """A download request that cannot run (bad range, kinds, ...)."""


def parse_kinds(text: str) -> list[Kind]:
    names = [k.strip().lower() for k in text.split(",") if k.strip()]
    unknown = [n for n in names if n not in KIND_NAMES]
    if unknown or not names:
        raise DownloadError(f"unknown kind(s) {', '.join(unknown) or '(none)'}: choose from "
                            f"{','.join(KIND_NAMES)}")
    return [KIND_NAMES[n] for n in dict.fromkeys(names)]


def utc(text: str | datetime | pd.Timestamp) -> pd.Timestamp:
    """``2024-01-01`` / ISO time / datetime -> UTC timestamp (naive means UTC)."""
    try:
        return utc_time(text)
    except InputError as exc:
        raise DownloadError(str(exc)) from None


@dataclass(frozen=True)
class SeriesRequest:
    instrument: Instrument
    kind: Kind
    timeframe: str | None  # bars: the bar timeframe; OI/ratios: the period; funding: None

    @property
    def label(self) -> str:
        tf = f" {self.timeframe}" if self.timeframe else ""
        return f"{self.instrument.display} {self.kind.value}{tf}"


@dataclass
class SeriesReport:
    label: str
    status: str = "pending"  # done | failed | up-to-date
    resumed_from: str | None = None
    pages: int = 0
    rows_read: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    first: str | None = None
    last: str | None = None
    error: str = ""
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def resume_point(store: MarketStore, req: SeriesRequest, start: pd.Timestamp,
                 end: pd.Timestamp) -> pd.Timestamp:
    """Where to continue: just after the last stored row in [start, end), else start."""
    frame = store.read(req.kind, req.instrument, req.timeframe if req.kind in BAR_KINDS
                       else None, start, end)
    if frame.empty:
        return start
    last = pd.Timestamp(frame["ts"].max())
    if req.kind is Kind.FUNDING:
        raw = frame["exchange_ts"].max()
        last = max(last, pd.Timestamp(raw)) if not pd.isna(raw) else last
    step = pd.Timedelta(milliseconds=timeframe_ms(req.timeframe)) if (
        req.kind in BAR_KINDS and req.timeframe) else pd.Timedelta(milliseconds=1)
    return max(start, last + step)


ProgressFn = Callable[[SeriesRequest, pd.Timestamp, pd.Timestamp, pd.Timestamp], None]


def download_series(source: ExchangeSource, store: MarketStore, req: SeriesRequest,
                    start: pd.Timestamp, end: pd.Timestamp,
                    on_progress: ProgressFn | None = None,
                    report: SeriesReport | None = None) -> SeriesReport:
    """Fetch one series page by page into the store; raises the source's errors after
    recording them in ``report`` (pages already stored stay stored)."""
    report = report or SeriesReport(req.label)
    begin = resume_point(store, req, start, end)
    if begin > start:
        report.resumed_from = begin.isoformat()
    if begin >= end:
        report.status = "up-to-date"
        return report
    if on_progress:
        on_progress(req, start, begin, end)
    try:
        for page in source.fetch(req.kind, req.instrument, req.timeframe,
                                 begin.to_pydatetime(), end.to_pydatetime()):
            checked = validate(page)
            results = store.write([checked])
            report.pages += 1
            report.rows_read += checked.rows
            report.rows_inserted += sum(r.rows_inserted for r in results)
            report.rows_updated += sum(r.rows_updated for r in results)
            report.notes += [n for n in checked.notes if n not in report.notes]
            if checked.rows:
                first, last = checked.frame["ts"].min(), checked.frame["ts"].max()
                report.first = report.first or pd.Timestamp(first).isoformat()
                report.last = pd.Timestamp(last).isoformat()
                if on_progress:
                    on_progress(req, start, pd.Timestamp(last), end)
    except PerptraderError as exc:
        report.status, report.error = "failed", str(exc)
        raise
    report.status = "done"
    if on_progress:
        on_progress(req, start, end, end)
    return report


def download(source: ExchangeSource, store: MarketStore, requests: list[SeriesRequest],
             start: pd.Timestamp, end: pd.Timestamp,
             on_progress: ProgressFn | None = None,
             on_series: Callable[[SeriesReport], None] | None = None) -> list[SeriesReport]:
    """Every requested series in turn. The first error stops the run (a 418 ban or a
    refused request would fail the next series the same way); its report says so."""
    if start >= end:
        raise DownloadError(f"start {start.isoformat()} is not before end {end.isoformat()}")
    reports: list[SeriesReport] = []
    for req in requests:
        report = SeriesReport(req.label)
        try:
            download_series(source, store, req, start, end, on_progress, report)
        except PerptraderError as exc:
            report.status, report.error = "failed", str(exc)
            reports.append(report)
            if on_series:
                on_series(report)
            raise
        reports.append(report)
        if on_series:
            on_series(report)
    return reports
