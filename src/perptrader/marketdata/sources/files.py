"""Opening files the same way whatever their wrapping (plain, .gz, single-member .zip)
and parsing what their names say. Shared by every file reader."""

from __future__ import annotations

import gzip
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from perptrader.core.errors import DataFormatError
from perptrader.core.instruments import normalize_symbol
from perptrader.core.timeframes import is_timeframe

HEAD_BYTES = 4096


def open_bytes(path: Path) -> io.BufferedIOBase:
    """A binary stream of the file's content: .gz decompressed, .zip's single member."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if path.suffix == ".zip":
        archive = zipfile.ZipFile(path)
        members = [m for m in archive.namelist() if not m.endswith("/")]
        if len(members) != 1:
            raise DataFormatError(f"zip must hold exactly one file, holds {len(members)}",
                                  path=path)
        return archive.open(members[0])  # type: ignore[return-value]
    return open(path, "rb")


def read_head(path: Path, size: int = HEAD_BYTES) -> bytes:
    try:
        with open_bytes(path) as fh:
            return fh.read(size)
    except (OSError, zipfile.BadZipFile, EOFError, DataFormatError):
        return b""


def inner_name(path: Path) -> str:
    """The name that describes the data: the zip member's or the file's, minus .gz."""
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                names = [m for m in archive.namelist() if not m.endswith("/")]
                if len(names) == 1:
                    return Path(names[0]).name
        except zipfile.BadZipFile:
            pass
    return path.name[:-3] if path.name.endswith(".gz") else path.name


def path_tokens(path: Path) -> set[str]:
    """Lower-case words of the path and name, for hints like 'spot', 'futures', 'um'."""
    words = re.split(r"[/\\_\-.]+", str(path).lower())
    return {w for w in words if w}


@dataclass(frozen=True)
class FreqtradeName:
    symbol: str
    timeframe: str
    candle_type: str  # '' (spot), futures, mark, index, premiumIndex, funding_rate, trades
    spot: bool


_FT = re.compile(
    r"^(?P<pair>[A-Za-z0-9]+_[A-Za-z0-9]+(?:_[A-Za-z0-9]+)?)-(?P<tf>\d+[smhdwM])"
    r"(?:-(?P<type>futures|mark|index|premiumIndex|funding_rate))?"
    r"\.(?P<ext>feather|json|json\.gz|parquet)$"
)
_FT_TRADES = re.compile(
    r"^(?P<pair>[A-Za-z0-9]+_[A-Za-z0-9]+(?:_[A-Za-z0-9]+)?)-trades(?:-futures)?"
    r"\.(?P<ext>feather|json|json\.gz|csv)$"
)


def parse_freqtrade_name(name: str) -> FreqtradeName | None:
    """``BTC_USDT_USDT-1h-futures.feather`` and friends; None when it does not match."""
    m = _FT.match(name)
    if m:
        pair = m.group("pair")
        candle = m.group("type") or ""
        perp = pair.count("_") == 2 or candle != ""
        return FreqtradeName(normalize_symbol(pair), m.group("tf"), candle or "spot", not perp)
    m = _FT_TRADES.match(name)
    if m:
        pair = m.group("pair")
        return FreqtradeName(normalize_symbol(pair), "", "trades", pair.count("_") != 2)
    return None


def timeframe_from_path(path: Path) -> str | None:
    """A timeframe token in the name or a parent folder (``gravestone/data/1h/X.csv``)."""
    for part in [*re.split(r"[-_.]", path.name), *(p.name for p in path.parents)]:
        if is_timeframe(part):
            return part
    return None
