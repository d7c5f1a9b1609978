"""CSV files of any layout, through a column mapping (canonical name -> file column).

Built-in mappings cover common REST-API dumps (klines with quote volume and trade
count, funding with ``funding_rate``, open interest with ``sum_open_interest``) and are
picked by the header; ``--map ts=time,close=price,...`` with ``--kind`` handles the rest.
Symbol: ``--symbol``, else a single-valued ``symbol`` column, else a file name that is a
symbol (``ADAUSDT.csv``). Bar timeframe: ``--timeframe``, else a path token (``1h/``),
else the data's own step.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from perptrader.core.errors import DataFormatError, UnknownFormatError
from perptrader.core.instruments import DEFAULT_EXCHANGE, PERP, Instrument, normalize_symbol
from perptrader.core.timeframes import ms_to_timeframe
from perptrader.marketdata.dataset import Dataset, epoch_unit, epoch_us, to_utc
from perptrader.marketdata.kinds import BAR_KINDS, Kind, frame_columns
from perptrader.marketdata.sources.base import ImportHints
from perptrader.marketdata.sources.files import decoded_name, open_bytes, timeframe_from_path
from perptrader.marketdata.sources.funding import funding_frame


@dataclass(frozen=True)
class Preset:
    name: str
    kind: Kind
    mapping: Mapping[str, str]  # canonical column -> file column

    def matches(self, header: list[str]) -> bool:
        return set(self.mapping.values()) <= set(header)


PRESETS: tuple[Preset, ...] = (
    Preset("rest-klines", Kind.OHLCV, {
        "ts": "timestamp", "open": "open", "high": "high", "low": "low", "close": "close",
        "volume": "volume", "quote_volume": "quote_volume", "trade_count": "trades"}),
    Preset("rest-funding", Kind.FUNDING, {"ts": "timestamp", "rate": "funding_rate"}),
    Preset("rest-open-interest", Kind.OPEN_INTEREST, {
        "ts": "timestamp", "oi_contracts": "sum_open_interest",
        "oi_value": "sum_open_interest_value"}),
)

_SYMBOL_STEM = re.compile(r"^(?:[A-Z0-9]{5,20}|[A-Z0-9]+_[A-Z0-9]+(?:_[A-Z0-9]+)?)$")


def parse_mapping(text: str) -> dict[str, str]:
    """``ts=time,close=price`` -> {'ts': 'time', 'close': 'price'}."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(
                f"column mapping entries look like canonical=file_column, got {part!r}")
        out[key.strip()] = value.strip()
    return out


class GenericCsv:
    name = "csv"

    def __init__(self, mapping: Mapping[str, str] | None = None) -> None:
        self.mapping = dict(mapping or {})

    def can_read(self, path: Path, head: bytes) -> bool:
        if not (path.suffix == ".csv" or path.name.endswith((".csv.gz", ".csv.zip"))):
            return False
        if self.mapping:
            return True
        header = _header(head)
        return any(p.matches(header) for p in PRESETS)

    def read(self, path: Path, hints: ImportHints) -> Iterator[Dataset]:
        try:
            with open_bytes(path) as fh:
                frame = pd.read_csv(fh)
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"cannot read CSV: {exc}", path=path) from None
        frame.index = frame.index + 2  # file line numbers (the header is line 1)
        header = [str(c).strip() for c in frame.columns]
        frame.columns = header
        if self.mapping:
            if not hints.kind:
                raise UnknownFormatError("a column mapping needs --kind", path=path)
            kind, mapping = hints.kind, self.mapping
        else:
            preset = next((p for p in PRESETS if p.matches(header)), None)
            if preset is None:
                raise UnknownFormatError("no column mapping fits this header; pass --map",
                                         path=path)
            kind, mapping = hints.kind or preset.kind, preset.mapping
        for column in mapping.values():
            if column not in frame.columns:
                raise DataFormatError(f"mapped column '{column}' is not in the file",
                                      path=path, field=column)
        unknown = set(mapping) - set(frame_columns(kind)) - {"rate"}
        if unknown:
            raise DataFormatError(f"not a {kind.value} column: {sorted(unknown)}; expected "
                                  f"some of {frame_columns(kind)}", path=path)
        instrument = Instrument(hints.exchange or DEFAULT_EXCHANGE, hints.market or PERP,
                                _symbol(path, frame, hints))
        ts = _time(frame[mapping["ts"]], path, mapping["ts"])
        if kind is Kind.FUNDING:
            out = funding_frame(ts, frame[mapping["rate"]].to_numpy(), index=frame.index)
            yield Dataset(kind, instrument, out, None, str(path))
            return
        out = pd.DataFrame({"ts": ts}, index=frame.index)
        for canonical, column in mapping.items():
            if canonical != "ts":
                out[canonical] = frame[column]
        timeframe = None
        if kind in BAR_KINDS:
            timeframe = hints.timeframe or timeframe_from_path(path) or _inferred_step(ts)
            if timeframe is None:
                raise UnknownFormatError("timeframe unknown: pass --timeframe", path=path)
        yield Dataset(kind, instrument, out, timeframe, str(path))


class KrakenTradesCsv:
    """Kraken's bulk trade CSVs: no header; unix seconds, price, volume. They carry no
    trade id and no side: ids are made from the time and the order within the same
    second (stable for the same file), and the side is left empty."""

    name = "kraken-trades"

    def can_read(self, path: Path, head: bytes) -> bool:
        if "kraken" not in str(path).lower() or path.suffix != ".csv":
            return False
        first = head.split(b"\n", 1)[0].decode("utf-8", "replace").split(",")
        return len(first) == 3 and first[0].strip().isdigit()

    def read(self, path: Path, hints: ImportHints) -> Iterator[Dataset]:
        try:
            frame = pd.read_csv(path, header=None, names=["time", "price", "volume"])
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"cannot read CSV: {exc}", path=path) from None
        frame.index = frame.index + 1
        ts = _time(frame["time"], path, "time")
        micros = epoch_us(ts)
        order = frame.groupby(micros).cumcount().to_numpy()
        symbol = hints.symbol or decoded_name(path.name).split(".")[0].upper()
        instrument = Instrument(hints.exchange or "kraken", hints.market or "spot",
                                Instrument.parse(symbol).symbol)
        out = pd.DataFrame({"ts": ts, "trade_id": micros // 1000 * 1000 + order,
                            "price": frame["price"], "qty": frame["volume"]}, index=frame.index)
        yield Dataset(Kind.TRADES, instrument, out, None, str(path),
                      notes=["Kraken CSV: no trade ids (made from time + order) and no side"])


def _header(head: bytes) -> list[str]:
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace")
    return [c.strip() for c in first.split(",")]


def _symbol(path: Path, frame: pd.DataFrame, hints: ImportHints) -> str:
    if hints.symbol:
        return Instrument.parse(hints.symbol).symbol
    if "symbol" in frame.columns:
        values = frame["symbol"].dropna().unique()
        if len(values) == 1:
            return Instrument.parse(str(values[0])).symbol
        raise DataFormatError(f"the symbol column holds {len(values)} symbols; split the file "
                              "or pass --symbol", path=path, field="symbol")
    stem = decoded_name(path.name).split(".")[0].upper()
    if _SYMBOL_STEM.match(stem):
        return normalize_symbol(stem)
    raise UnknownFormatError("symbol unknown: pass --symbol", path=path)


def _time(values: pd.Series, path: Path, field: str) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        arr = numbers.to_numpy()
        out = to_utc(arr, epoch_unit(arr))
    else:
        out = pd.to_datetime(values, utc=True, errors="coerce").astype("datetime64[us, UTC]")
        bad = out.isna().to_numpy()
        if bad.any():
            raise DataFormatError(f"not a time: {values[bad].iloc[0]!r}", path=path,
                                  row=int(values.index[np.flatnonzero(bad)[0]]), field=field)
    out.index = values.index
    return out


def _inferred_step(ts: pd.Series) -> str | None:
    if len(ts) < 3:
        return None
    diffs = np.diff(epoch_us(ts)) // 1000
    diffs = diffs[diffs > 0]
    return ms_to_timeframe(int(np.median(diffs))) if len(diffs) else None
