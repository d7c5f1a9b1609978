"""Which reader takes a file: the first whose ``can_read`` says yes, most specific first."""

from __future__ import annotations

from pathlib import Path

from perptrader.core.errors import UnknownFormatError
from perptrader.marketdata.sources.base import FileReader
from perptrader.marketdata.sources.binance_vision import BinanceVision
from perptrader.marketdata.sources.files import read_head
from perptrader.marketdata.sources.freqtrade import FreqtradeCandles, FreqtradeTrades
from perptrader.marketdata.sources.generic_csv import GenericCsv, KrakenTradesCsv

#: files that are recognised but deliberately not imported, with the reason shown
_KNOWN_UNSUPPORTED = (
    (lambda p, h: p.parent.name == "cryptofeed" or (h.startswith(b"https://") and b" -> " in h),
     "cryptofeed raw REST/websocket session log: not a market-data dump (replay it through "
     "a collector instead)"),
)

#: folder walks skip these quietly; named explicitly they are refused
NON_DATA_SUFFIXES = {".md", ".sha256", ".txt", ".py", ".toml", ".ini", ".yaml", ".yml", ".lock",
                     ".log", ".jsonl", ".duckdb", ".wal", ".html"}


def file_readers(mapping: dict[str, str] | None = None) -> list[FileReader]:
    readers: list[FileReader] = []
    if mapping:
        readers.append(GenericCsv(mapping))
    readers += [
        *_order_book_readers(),
        FreqtradeTrades(),
        BinanceVision(),
        KrakenTradesCsv(),
        GenericCsv(),
        FreqtradeCandles(),
    ]
    return readers


def _order_book_readers() -> list[FileReader]:
    from perptrader.marketdata.sources.depth_capture import DepthCaptureReader
    from perptrader.marketdata.sources.nautilus import NautilusReader
    from perptrader.marketdata.sources.tardis import TardisReader

    return [DepthCaptureReader(), NautilusReader(), TardisReader()]


def reader_for(path: Path, readers: list[FileReader]) -> FileReader:
    head = read_head(path)
    for reader in readers:
        if reader.can_read(path, head):
            return reader
    for test, reason in _KNOWN_UNSUPPORTED:
        if test(path, head):
            raise UnknownFormatError(reason, path=path)
    if path.suffix.lower() in NON_DATA_SUFFIXES:
        raise UnknownFormatError(f"not a market-data file ({path.suffix})", path=path)
    raise UnknownFormatError("unrecognised format (supported: freqtrade feather/JSON, "
                             "data.binance.vision CSV/zip, REST-dump CSVs, Binance depth "
                             "captures, Tardis, nautilus; or pass --map with --kind)", path=path)
