"""Source interfaces.

A *file reader* recognises one file format and turns a file into Datasets. An
*exchange source* (ccxt REST backfill, websocket collectors: a later stage) fetches a
kind for an instrument over a time range and yields the same Datasets, so the store,
validation and the importer's reporting are shared by both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from perptrader.core.instruments import Instrument
from perptrader.marketdata.dataset import Dataset
from perptrader.marketdata.kinds import Kind


@dataclass(frozen=True)
class ImportHints:
    """What the user said on the command line; each overrides what names/content say."""

    symbol: str | None = None
    timeframe: str | None = None
    kind: Kind | None = None
    exchange: str | None = None
    market: str | None = None


class FileReader(Protocol):
    #: short format name shown in reports, e.g. 'freqtrade-feather'
    name: str

    def can_read(self, path: Path, head: bytes) -> bool:
        """Cheap check on the name and the first bytes (decompressed for .gz)."""

    def read(self, path: Path, hints: ImportHints) -> Iterator[Dataset]:
        """Parse the whole file. Raise DataFormatError naming row/field on bad input,
        UnknownFormatError when symbol/timeframe cannot be told (hints fix that)."""


class ExchangeSource(Protocol):
    name: str

    def fetch(
        self,
        kind: Kind,
        instrument: Instrument,
        timeframe: str | None,
        start: datetime,
        end: datetime,
    ) -> Iterator[Dataset]:
        """Yield Datasets covering [start, end) in chronological chunks."""
