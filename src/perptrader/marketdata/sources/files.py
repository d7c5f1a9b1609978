"""Opening files the same way whatever their wrapping (plain, .gz, single-member .zip)
and parsing what their names say. Shared by every file reader."""

from __future__ import annotations

import gzip
import io
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

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


_CHUNK = 1 << 20


def check_archive(path: Path) -> None:
    """Read a .gz or .zip through once and name what is wrong with it: truncated,
    corrupt compressed data, a bad CRC, several members. Other files pass untouched.

    Raises DataFormatError; readers can then trust ``open_bytes`` to stream the data."""
    name = path.name.lower()
    if name.endswith(".gz"):
        _check_gzip(path)
    elif name.endswith(".zip"):
        _check_zip(path)


def _check_gzip(path: Path) -> None:
    with open(path, "rb") as fh:
        if fh.read(2) != b"\x1f\x8b":
            raise DataFormatError("not a gzip file (the name ends .gz, the content does "
                                  "not start with the gzip magic bytes)", path=path)
        fh.seek(0)
        inflater = zlib.decompressobj(wbits=31)
        while True:
            buf = fh.read(_CHUNK)
            if not buf:
                raise DataFormatError("truncated gzip file (the compressed data ends early)",
                                      path=path)
            try:
                while buf and not inflater.eof:
                    inflater.decompress(buf, _CHUNK)  # output discarded: a check only
                    buf = inflater.unconsumed_tail
            except zlib.error as exc:
                what = ("bad CRC (the data does not match its checksum)"
                        if "data check" in str(exc) or "length check" in str(exc)
                        else f"corrupt compressed data ({exc})")
                raise DataFormatError(f"corrupt gzip file: {what}", path=path) from None
            if inflater.eof:
                if (inflater.unused_data + fh.read()).strip(b"\x00"):
                    raise DataFormatError(
                        "gzip file with two or more members (concatenated archives): "
                        "unpack and import each part", path=path)
                return


def _check_zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                raise DataFormatError(f"zip must hold exactly one file, holds {len(members)}",
                                      path=path)
            with archive.open(members[0]) as fh:
                while fh.read(_CHUNK):
                    pass
    except zipfile.BadZipFile as exc:
        what = ("bad CRC (the data does not match its checksum)" if "CRC" in str(exc)
                else f"truncated, or not a zip archive ({exc})")
        raise DataFormatError(f"corrupt zip file: {what}", path=path) from None
    except (zlib.error, EOFError) as exc:
        raise DataFormatError(f"corrupt zip file: corrupt or truncated compressed data "
                              f"({exc or type(exc).__name__})", path=path) from None
    except NotImplementedError as exc:
        raise DataFormatError(f"zip compression not supported: {exc}", path=path) from None


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
                    return decoded_name(Path(names[0]).name)
        except zipfile.BadZipFile:
            pass
    name = decoded_name(path.name)
    return name[:-3] if name.endswith(".gz") else name


def decoded_name(name: str) -> str:
    """A URL-encoded file name decoded (``BTC%2FUSDT-1h.csv`` -> ``BTC_USDT-1h.csv``):
    separators that cannot appear in a file name become ``_``, so that the symbol is
    read whole rather than from the part after the escape."""
    if "%" not in name:
        return name
    return re.sub(r"[/\\:]", "_", unquote(name))


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
