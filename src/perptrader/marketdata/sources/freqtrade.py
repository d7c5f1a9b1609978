"""freqtrade's data files: candles as feather / JSON / JSON.gz (``date`` = bar open
time), funding rates stored as candles with the rate in ``open``, mark and index
candles, and public-trades CSVs from its order-flow feature.

Names carry pair, timeframe and candle type (``BTC_USDT_USDT-1h-futures.feather``);
a three-part pair or a candle-type suffix means the USD-M perpetual, two parts spot.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from perptrader.core.errors import DataFormatError, UnknownFormatError
from perptrader.core.instruments import DEFAULT_EXCHANGE, PERP, SPOT, Instrument
from perptrader.marketdata.dataset import Dataset, epoch_unit, to_utc
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.sources.base import ImportHints
from perptrader.marketdata.sources.files import inner_name, open_bytes, parse_freqtrade_name
from perptrader.marketdata.sources.funding import funding_frame

CANDLE_COLUMNS = ["date", "open", "high", "low", "close", "volume"]
_KIND_OF_CANDLE = {"futures": Kind.OHLCV, "spot": Kind.OHLCV, "mark": Kind.MARK,
                   "index": Kind.INDEX, "funding_rate": Kind.FUNDING}


class FreqtradeCandles:
    name = "freqtrade-candles"

    def can_read(self, path: Path, head: bytes) -> bool:
        if path.suffix == ".feather":
            return True
        return inner_name(path).endswith(".json") and head.lstrip()[:1] in (b"[", b"{")

    def read(self, path: Path, hints: ImportHints) -> Iterator[Dataset]:
        parsed = parse_freqtrade_name(inner_name(path))
        if parsed is not None and parsed.candle_type == "trades":
            yield from FreqtradeTrades().read(path, hints)
            return
        frame = _read_candles(path)
        if parsed is None and not hints.symbol:
            raise UnknownFormatError(
                "candles whose file name does not follow freqtrade's PAIR-TIMEFRAME[-TYPE] "
                "pattern: the symbol is unknown; pass --symbol (and --timeframe, --market)",
                path=path)
        symbol = hints.symbol or parsed.symbol  # type: ignore[union-attr]
        kind = hints.kind or _KIND_OF_CANDLE.get(parsed.candle_type if parsed else "spot",
                                                 Kind.OHLCV)
        spot = parsed.spot if parsed else False
        market = hints.market or (SPOT if spot else PERP)
        instrument = Instrument.parse(symbol, market)
        if hints.exchange:
            instrument = Instrument(hints.exchange, market, instrument.symbol)
        ts = _timestamps(frame["date"], path)
        if kind is Kind.FUNDING:
            out = funding_frame(ts, frame["open"].to_numpy(dtype="float64"), index=frame.index)
            yield Dataset(Kind.FUNDING, instrument, out, None, str(path))
            return
        timeframe = hints.timeframe or (parsed.timeframe if parsed else None)
        if not timeframe:
            raise UnknownFormatError("timeframe unknown: pass --timeframe", path=path)
        out = pd.DataFrame({"ts": ts.to_numpy(), **{c: frame[c] for c in CANDLE_COLUMNS[1:]}},
                           index=frame.index)
        if kind in (Kind.MARK, Kind.INDEX):
            out["volume"] = np.nan  # price series without traded volume
        yield Dataset(kind, instrument, out, timeframe, str(path))


def _read_candles(path: Path) -> pd.DataFrame:
    try:
        if path.suffix == ".feather":
            frame = pd.read_feather(path)
        else:
            with open_bytes(path) as fh:
                raw = json.load(fh)
            if isinstance(raw, list):
                frame = pd.DataFrame(raw, columns=CANDLE_COLUMNS)
            elif isinstance(raw, dict):
                frame = pd.DataFrame({k: pd.Series(v) for k, v in raw.items()})
                frame.index = frame.index.astype("int64")
            else:
                raise DataFormatError("JSON is neither a list of candles nor column-oriented",
                                      path=path)
    except (OSError, ValueError) as exc:
        raise DataFormatError(f"cannot read: {exc}", path=path) from None
    missing = [c for c in CANDLE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataFormatError(f"missing column(s) {missing}", path=path, field=missing[0])
    frame = frame.reset_index(drop=True)
    frame.index = frame.index + 1  # data row numbers, 1-based
    return frame


def _timestamps(values: pd.Series, path: Path) -> pd.Series:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    if pd.api.types.is_datetime64_dtype(values):
        return values.dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().any():
        row = int(values.index[np.flatnonzero(numbers.isna().to_numpy())[0]])
        raise DataFormatError("not a timestamp", path=path, row=row, field="date")
    out = to_utc(numbers.to_numpy(), epoch_unit(numbers.to_numpy()))
    out.index = values.index
    return out


class FreqtradeTrades:
    """Public trades as freqtrade stores them: ``timestamp`` (ms), ``id``, ``side``,
    ``price``, ``amount`` (CSV with an unnamed index column, or feather)."""

    name = "freqtrade-trades"
    _HEADER = ("timestamp", "id", "type", "side", "price", "amount")

    def can_read(self, path: Path, head: bytes) -> bool:
        first = head.split(b"\n", 1)[0].decode("utf-8", "replace")
        cols = [c.strip() for c in first.split(",")]
        return all(c in cols for c in self._HEADER)

    def read(self, path: Path, hints: ImportHints) -> Iterator[Dataset]:
        parsed = parse_freqtrade_name(inner_name(path))
        if not hints.symbol and parsed is None:
            raise UnknownFormatError(
                "public trades whose file name does not name the pair: pass --symbol "
                "(and --market spot|perp, --exchange)", path=path)
        symbol = hints.symbol or parsed.symbol  # type: ignore[union-attr]
        market = hints.market or (SPOT if parsed and parsed.spot else PERP)
        instrument = Instrument(hints.exchange or DEFAULT_EXCHANGE, market,
                                Instrument.parse(symbol, market).symbol)
        try:
            if path.suffix == ".feather":
                raw = pd.read_feather(path)
                raw.index = raw.index + 1
            else:
                with open_bytes(path) as fh:
                    raw = pd.read_csv(fh, skipinitialspace=True, dtype={"side": "string"})
                raw.index = raw.index + 2  # line numbers: header is line 1
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"cannot read: {exc}", path=path) from None
        ids = pd.to_numeric(raw["id"], errors="coerce")
        bad = ids.isna().to_numpy()
        if bad.any():
            raise DataFormatError("trade id is not a number", path=path,
                                  row=int(raw.index[np.flatnonzero(bad)[0]]), field="id")
        ts = _timestamps(raw["timestamp"], path)
        side = raw["side"].astype("string").str.strip().str.lower()
        out = pd.DataFrame({"ts": ts.to_numpy(), "trade_id": ids, "price": raw["price"],
                            "qty": raw["amount"], "side": side}, index=raw.index)
        yield Dataset(Kind.TRADES, instrument, out, None, str(path))
