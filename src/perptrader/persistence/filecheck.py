"""Look at an existing SQLite file before the engine touches it.

The engine's first connection switches the file to WAL, which rewrites its header; and a
migration would add tables to whatever file it is given. So a file that is not a
trading database (random bytes, a truncated copy, another program's database, one
written by a newer perptrader) is recognised first, read-only, and refused with one
line, while it is still byte for byte what the user had.
"""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path
from urllib.parse import quote

from perptrader.persistence.migrate import VERSION_TABLE, known_revisions
from perptrader.persistence.models import TABLES

MAGIC = b"SQLite format 3\x00"
HEADER_SIZE = 100


def check_sqlite_file(path: Path) -> str | None:
    """Why ``path`` cannot be opened as the trading database, or None when it can (it is
    missing, empty, or a trading database of a revision this code knows)."""
    if path.is_dir():
        return "it is a directory"
    if not path.exists():
        return None
    try:
        size = path.stat().st_size
        if size == 0:
            return None  # SQLite's own view of an empty file: a new, empty database
        with path.open("rb") as fh:
            header = fh.read(HEADER_SIZE)
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    if not header.startswith(MAGIC):
        return "file is not a database"
    if len(header) < HEADER_SIZE:
        return f"file is truncated ({size} bytes, shorter than a SQLite header)"
    truncated = _truncation(path, header, size)
    if truncated:
        return truncated
    return _check_schema(path)


def _truncation(path: Path, header: bytes, size: int) -> str | None:
    """Compare the file size with the page count in the header. The count is valid when
    the "version-valid-for" number equals the change counter (SQLite >= 3.7.0 keeps it
    so). With a WAL file beside it the main file may legitimately lag: then SQLite's own
    reads below are the judge."""
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    change_counter, page_count = struct.unpack(">II", header[24:32])
    valid_for = struct.unpack(">I", header[92:96])[0]
    if page_count == 0 or valid_for != change_counter:
        return None
    expected = page_size * page_count
    wal = path.with_name(path.name + "-wal")
    if size < expected and not (wal.exists() and wal.stat().st_size > 0):
        return f"file is truncated ({size:,} of {expected:,} bytes)"
    return None


def _check_schema(path: Path) -> str | None:
    uri = f"file:{quote(str(path.resolve()))}?mode=rw"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        names = {name for (name,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
        if VERSION_TABLE in names:
            revisions = [r for (r,) in con.execute(f"SELECT version_num FROM {VERSION_TABLE}")]
            unknown = [r for r in revisions if r not in known_revisions()]
            if unknown:
                return (f"its schema revision {unknown[0]} is unknown to this perptrader "
                        "(written by a newer version?)")
            return None
        if names:
            shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
            ours = names & set(TABLES)
            what = "tables not created by perptrader's migrations" if ours else \
                "tables of another application"
            return f"it holds {what} ({shown})"
        return None
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        con.close()
