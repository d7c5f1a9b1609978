"""Import files into a store: one file at a time, each validated whole and written in
one transaction, so a file either lands completely or leaves the store untouched.

Whatever goes wrong with one file (bad rows, a truncated archive, an unexpected error)
is reported against that file, and the run goes on with the next one. Rows whose key is
already stored with other values are resolved and reported by marketdata.conflicts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from perptrader.core.errors import DataFormatError, PerptraderError, StoreError
from perptrader.marketdata.conflicts import ConflictSummary, resolve
from perptrader.marketdata.dataset import DEFAULT_PLAUSIBILITY, Plausibility, validate
from perptrader.marketdata.sources.base import ImportHints
from perptrader.marketdata.sources.files import check_archive
from perptrader.marketdata.sources.registry import NON_DATA_SUFFIXES, file_readers, reader_for
from perptrader.marketdata.store.base import MarketStore

log = logging.getLogger(__name__)


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
    conflicts: ConflictSummary = field(default_factory=ConflictSummary)

    def as_json(self) -> dict[str, object]:
        return {"path": self.path, "status": self.status, "reason": self.reason,
                "rows_inserted": self.rows_inserted, "rows_updated": self.rows_updated,
                "rows_read": self.rows_read, "format": self.format, "series": self.series,
                "notes": self.notes, "conflicts": self.conflicts.as_json()}


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
                mapping: dict[str, str] | None = None, *, on_conflict: str = "keep",
                bounds: Plausibility = DEFAULT_PLAUSIBILITY) -> FileReport:
    """Import one file; never raises for a problem of the file itself (the report says
    ``refused`` and why). Store errors (the store cannot be written) do propagate."""
    report = FileReport(path=str(path), status="refused")
    if not path.is_file():
        report.reason = "no such file"
        return report
    try:
        check_archive(path)
        reader = reader_for(path, file_readers(mapping))
        report.format = reader.name
        datasets = [validate(ds, bounds) for ds in reader.read(path, hints)]
        if not datasets or all(ds.rows == 0 for ds in datasets):
            report.reason = "no rows"
            return report
        to_write = []
        for ds in datasets:
            parts, summary = resolve(ds, store, on_conflict, bounds)
            report.conflicts.add(summary)
            to_write += parts
    except DataFormatError as exc:
        report.reason = str(exc.with_path(path))
        return report
    except StoreError:
        raise  # the store, not this file: nothing later could be written either
    except Exception as exc:  # one bad file must not stop the run
        log.debug("import of %s failed", path, exc_info=True)
        report.reason = f"{path}: {_describe(exc)}"
        return report
    results = store.write(to_write)
    report.status = "imported"
    report.rows_read = sum(ds.rows for ds in datasets)
    report.rows_inserted = sum(r.rows_inserted for r in results)
    report.rows_updated = sum(r.rows_updated for r in results)
    report.series = sorted({f"{ds.instrument.display} {ds.instrument.market} {ds.kind.value}"
                            + (f" {ds.timeframe}" if ds.timeframe else "") for ds in datasets})
    report.notes = [n for ds in datasets for n in ds.notes]
    if report.conflicts.rows:
        report.notes.append(report.conflicts.describe())
    return report


def _describe(exc: BaseException) -> str:
    """An unexpected reader error as one line a user can act on."""
    if isinstance(exc, PerptraderError):
        hint = (" (pass --symbol)" if "symbol must be" in str(exc)
                else " (pass --market perp or spot)" if "market must be" in str(exc) else "")
        return f"{exc}{hint}"
    if isinstance(exc, EOFError):
        return "the file ends early (truncated?)"
    if isinstance(exc, UnicodeDecodeError):
        return "not text in the expected encoding (binary or corrupt file?)"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"cannot read the file ({type(exc).__name__}{': ' + text if text else ''})"


def import_paths(paths: Iterable[Path], store: MarketStore, hints: ImportHints | None = None,
                 mapping: dict[str, str] | None = None,
                 on_file: Callable[[FileReport], None] | None = None, *,
                 on_conflict: str = "keep",
                 bounds: Plausibility = DEFAULT_PLAUSIBILITY) -> list[FileReport]:
    reports = []
    for path in expand_paths(paths):
        report = import_file(path, store, hints or ImportHints(), mapping,
                             on_conflict=on_conflict, bounds=bounds)
        reports.append(report)
        if on_file:
            on_file(report)
    return reports
