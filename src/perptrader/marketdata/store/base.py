"""The store interface every backend implements.

Writes are idempotent upserts: a row whose key is already stored is merged, never
duplicated (bars keep the larger-volume version; other kinds fill missing values).
``write`` takes all datasets of one source file and commits them in one transaction,
so a file either lands whole or not at all.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from perptrader.core.instruments import Instrument
from perptrader.marketdata.dataset import Dataset
from perptrader.marketdata.kinds import Kind


@dataclass(frozen=True)
class WriteResult:
    kind: Kind
    instrument: Instrument
    timeframe: str | None
    rows_in: int
    rows_inserted: int
    rows_updated: int


@dataclass(frozen=True)
class SeriesInfo:
    """One stored series, as ``data list`` shows it."""

    instrument: Instrument
    kind: Kind
    timeframe: str | None  # bars: their timeframe; others: the dominant step; events: None
    first: datetime
    last: datetime
    rows: int
    gaps: int | None  # steps longer than 1.5x the expected step; None for event streams

    @property
    def kind_label(self) -> str:
        """Spot series are labelled so they never pass for the perpetual."""
        return self.kind.value if self.instrument.market == "perp" else f"spot_{self.kind.value}"

    def as_json(self) -> dict[str, object]:
        return {
            "symbol": self.instrument.display,
            "kind": self.kind_label,
            "timeframe": self.timeframe,
            "first": _iso(self.first),
            "last": _iso(self.last),
            "rows": self.rows,
            "gaps": self.gaps,
        }


def _iso(ts: datetime) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip(
        "0").rstrip(".") + "Z"


class MarketStore(abc.ABC):
    """Embedded and PostgreSQL stores behave the same through this interface."""

    #: short name for messages: 'duckdb' or 'postgresql'
    backend: str

    @abc.abstractmethod
    def migrate(self) -> str:
        """Bring the schema to the newest Alembic revision; return that revision."""

    @abc.abstractmethod
    def write(self, datasets: Sequence[Dataset]) -> list[WriteResult]:
        """Upsert validated datasets in ONE transaction (all or nothing)."""

    @abc.abstractmethod
    def read(
        self,
        kind: Kind,
        instrument: Instrument,
        timeframe: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """Canonical frame (see kinds.frame_columns) sorted by time; ``end`` exclusive."""

    def delete(
        self,
        kind: Kind,
        instrument: Instrument,
        timeframe: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        dry_run: bool = False,
    ) -> int:
        """Remove one series' rows in [start, end) (all of it without bounds), in one
        transaction; return the number of rows removed (``dry_run``: that would be)."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete")

    @abc.abstractmethod
    def inventory(self) -> list[SeriesInfo]:
        """Every stored series with its coverage, row count and gap count."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> MarketStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
