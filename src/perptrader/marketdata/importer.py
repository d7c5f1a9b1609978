"""Import files into a store: one file at a time, each validated whole and written in
one transaction, so a file either lands completely or leaves the store untouched."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from perptrader.core.errors import DataFormatError
from perptrader.marketdata.dataset import validate
from perptrader.marketdata.sources.base import ImportHints
from perptrader.marketdata.sources.registry import NON_DATA_SUFFIXES, file_readers, reader_for
from perptrader.marketdata.store.base import MarketStore


@dataclass
class FileReport:
    path: str
    status: str  # imported | refused
    reason: str = ""
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_read: int = 0
    format: str = ""
    series: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {"path": self.path, "status": self.status, "reason": self.reason,
                "rows_inserted": self.rows_inserted, "rows_updated": self.rows_updated,
                "rows_read": self.rows_read, "format": self.format, "series": self.series,
                "notes": self.notes}


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, plus every data file under named folders (sorted).

    Folder walks skip hidden files and documentation; a missing path is kept so that
    it is reported as refused rather than silently dropped.
    """
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                hidden = any(p.startswith(".") for p in child.relative_to(path).parts)
                if (child.is_file() and not hidden
                        and child.suffix.lower() not in NON_DATA_SUFFIXES):
                    out.append(child)
        else:
            out.append(path)
    return out


def import_file(path: Path, store: MarketStore, hints: ImportHints,
                mapping: dict[str, str] | None = None) -> FileReport:
    report = FileReport(path=str(path), status="refused")
    if not path.is_file():
        report.reason = "no such file"
        return report
    try:
        reader = reader_for(path, file_readers(mapping))
        report.format = reader.name
        datasets = [validate(ds) for ds in reader.read(path, hints)]
    except DataFormatError as exc:
        report.reason = str(exc.with_path(path))
        return report
    if not datasets or all(ds.rows == 0 for ds in datasets):
        report.reason = "no rows"
        return report
    results = store.write(datasets)
    report.status = "imported"
    report.rows_read = sum(ds.rows for ds in datasets)
    report.rows_inserted = sum(r.rows_inserted for r in results)
    report.rows_updated = sum(r.rows_updated for r in results)
    report.series = sorted({f"{ds.instrument.display} {ds.instrument.market} {ds.kind.value}"
                            + (f" {ds.timeframe}" if ds.timeframe else "") for ds in datasets})
    report.notes = [n for ds in datasets for n in ds.notes]
    return report


def import_paths(paths: Iterable[Path], store: MarketStore, hints: ImportHints | None = None,
                 mapping: dict[str, str] | None = None,
                 on_file: Callable[[FileReport], None] | None = None) -> list[FileReport]:
    reports = []
    for path in expand_paths(paths):
        report = import_file(path, store, hints or ImportHints(), mapping)
        reports.append(report)
        if on_file:
            on_file(report)
    return reports
