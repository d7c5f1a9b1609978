"""Turning ``data download`` options into checked requests before anything is stored:
venue, symbols, kinds, timeframes and dates are all validated (the markets come from the
venue) so that bad input fails with one line and leaves the store untouched."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from perptrader.marketdata.download import DownloadError, SeriesRequest, parse_kinds, utc
from perptrader.marketdata.kinds import Kind
from perptrader.venues.backfill import CcxtRestSource, SourceOptions
from perptrader.venues.calls import RetryPolicy
from perptrader.venues.ccxt_client import check_venue, load_credentials

URL_ENV = "PERPTRADER__EXCHANGE__URL"


@dataclass
class DownloadPlan:
    source: CcxtRestSource
    requests: list[SeriesRequest]
    start: pd.Timestamp
    end: pd.Timestamp


def exchange_url(option: str | None, settings: object | None = None) -> str | None:
    """--exchange-url, else the ``exchange.url`` setting, else PERPTRADER__EXCHANGE__URL."""
    if option:
        return option
    configured = getattr(getattr(settings, "exchange", None), "url", None)
    return configured or os.environ.get(URL_ENV) or None


def plan_download(*, exchange: str, symbols: list[str], timeframe: str, kinds: str,
                  start: str, end: str | None, url: str | None, period: str | None = None,
                  retries: int = 5, backoff_s: float = 0.5, timeout_s: float = 10.0,
                  max_retry_after_s: float = 300.0) -> DownloadPlan:
    """Validate everything (offline first, then against the venue's markets)."""
    check_venue(exchange)
    wanted = parse_kinds(kinds)
    if not symbols:
        raise DownloadError("name at least one --symbol")
    t0 = utc(start)
    t1 = utc(end) if end else pd.Timestamp.now(tz="UTC").floor("s")
    if t0 >= t1:
        raise DownloadError(f"--start {t0:%Y-%m-%d %H:%M} is not before --end "
                            f"{t1:%Y-%m-%d %H:%M}")
    if retries < 1:
        raise DownloadError("--retries must be at least 1")
    policy = RetryPolicy(attempts=retries, base_s=backoff_s, max_s=max(backoff_s, 30.0),
                         max_retry_after_s=max_retry_after_s)
    source = CcxtRestSource(exchange, SourceOptions(
        url=url, credentials=load_credentials(exchange), policy=policy,
        timeout_ms=int(timeout_s * 1000)))
    requests: list[SeriesRequest] = []
    for symbol in symbols:
        source.market(symbol)  # unknown symbol -> one-line error before any write
        instrument = source.instrument(symbol)
        for kind in wanted:
            tf = None if kind is Kind.FUNDING else (
                period or timeframe if kind in (Kind.OPEN_INTEREST, Kind.LONG_SHORT,
                                                Kind.TAKER_RATIO) else timeframe)
            source.check_timeframe(kind, tf)
            requests.append(SeriesRequest(instrument, kind, tf))
    return DownloadPlan(source, requests, t0, t1)
