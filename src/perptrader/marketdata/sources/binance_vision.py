"""data.binance.vision dumps: klines (trade, mark, index, premium), aggTrades, trades,
fundingRate and metrics, as CSV or the original daily/monthly zips.

Layouts differ by market and age: futures kline CSVs have a header since 2022, spot
ones never do; spot timestamps switched to microseconds in 2025. So the columns are
read by position for klines, the unit is detected from magnitudes, and the market comes
from the path (``spot`` / ``futures`` / ``um`` in folder or file names) or --market.
Kline files with a header are read by column NAME (official snake_case or the camelCase
of REST dumps); a header naming a column no known layout has is refused rather than
read by position, which would silently swap columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from perptrader.core.errors import DataFormatError, UnknownFormatError
from perptrader.core.instruments import DEFAULT_EXCHANGE, PERP, SPOT, Instrument
from perptrader.core.timeframes import is_timeframe
from perptrader.marketdata.dataset import Dataset, epoch_unit, to_utc
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.sources.base import ImportHints
from perptrader.marketdata.sources.files import inner_name, open_bytes, path_tokens
from perptrader.marketdata.sources.funding import funding_frame

KLINE_COLUMNS = ["open_time", "open", "high", "low", "close", "volume", "close_time",
                 "quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume",
                 "ignore"]
_KLINE_HEADERS = {"open_time", "opentime"}
#: header names of kline columns (lower-case, without '_') -> KLINE_COLUMNS name
_KLINE_ALIASES = {
    "opentime": "open_time", "open": "open", "high": "high", "low": "low", "close": "close",
    "volume": "volume", "closetime": "close_time", "quotevolume": "quote_volume",
    "quoteassetvolume": "quote_volume", "count": "count", "trades": "count",
    "numberoftrades": "count", "takerbuyvolume": "taker_buy_volume",
    "takerbuybase": "taker_buy_volume", "takerbuybasevolume": "taker_buy_volume",
    "takerbuybaseassetvolume": "taker_buy_volume",
    "takerbuyquotevolume": "taker_buy_quote_volume",
    "takerbuyquote": "taker_buy_quote_volume",
    "takerbuyquoteassetvolume": "taker_buy_quote_volume", "ignore": "ignore",
}
_KLINE_REQUIRED = ("open_time", "open", "high", "low", "close")
_NAME = re.compile(r"(?<![A-Za-z0-9_])(?P<symbol>[A-Z0-9]{5,}|[A-Z0-9]+_[A-Z0-9]+(?:_[A-Z0-9]+)?)"
                   r"-(?P<what>\d+[smhdwM]|aggTrades|trades|fundingRate"
                   r"|funding|metrics|bookTicker|bookDepth)")
_PRICE_KIND = {"markpriceklines": Kind.MARK, "mark": Kind.MARK, "indexpriceklines": Kind.INDEX,
               "index": Kind.INDEX}


class BinanceVision:
    name = "binance-vision"

    def can_read(self, path: Path, head: bytes) -> bool:
        if path.suffix not in (".csv", ".zip"):
            return False
        first = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip().lower()
        cols = [c.strip() for c in first.split(",")]
        if cols and cols[0] in _KLINE_HEADERS | {"agg_trade_id", "fundingtime", "calc_time",
                                                 "create_time", "id"}:
            return bool(_NAME.search(inner_name(path)))
        # header-less klines: 12 numeric fields whose first is an epoch time
        return len(cols) == 12 and cols[0].isdigit() and bool(_NAME.search(inner_name(path)))

    def read(self, path: Path, hints: ImportHints) -> Iterator[Dataset]:
        name = inner_name(path)
        match = _NAME.search(name)
        if not match and not hints.symbol:
            raise UnknownFormatError("cannot find SYMBOL-<what> in the name; pass --symbol",
                                     path=path)
        symbol = hints.symbol or match.group("symbol")  # type: ignore[union-attr]
        what = match.group("what") if match else ""
        with open_bytes(path) as fh:
            text_head = fh.read(1024).split(b"\n", 1)[0].decode("utf-8", "replace")
        has_header = not text_head.split(",")[0].strip().isdigit()
        header = [c.strip() for c in text_head.lower().split(",")] if has_header else []
        market = hints.market or _market(path, header)
        instrument = Instrument(hints.exchange or DEFAULT_EXCHANGE, market,
                                Instrument.parse(symbol).symbol)
        if is_timeframe(what) or (header and header[0] in _KLINE_HEADERS):
            yield self._klines(path, instrument, hints.timeframe or what, has_header, hints)
        elif what == "aggTrades" or (header and header[0] == "agg_trade_id"):
            yield self._agg_trades(path, instrument, has_header)
        elif what == "trades" or (header and header[0] == "id"):
            yield self._trades(path, instrument, has_header)
        elif header and header[0] in ("fundingtime", "calc_time"):
            yield self._funding(path, instrument)
        elif header and header[0] == "create_time":
            yield from self._metrics(path, instrument)
        else:
            raise UnknownFormatError(f"data.binance.vision file of an unsupported kind "
                                     f"({what or header[:3]})", path=path)

    def _csv(self, path: Path, has_header: bool, names: list[str] | None) -> pd.DataFrame:
        try:
            with open_bytes(path) as fh:
                frame = pd.read_csv(fh, header=0 if has_header else None, names=names)
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"cannot read CSV: {exc}", path=path) from None
        frame.index = frame.index + (2 if has_header else 1)  # file line numbers
        return frame

    def _klines(self, path: Path, instrument: Instrument, timeframe: str, has_header: bool,
                hints: ImportHints) -> Dataset:
        if not is_timeframe(timeframe):
            raise UnknownFormatError("timeframe unknown: pass --timeframe", path=path)
        if has_header:
            frame = self._csv(path, True, None)
            frame.columns = _kline_header(list(frame.columns), path)
            for col in KLINE_COLUMNS:
                if col not in frame.columns:
                    frame[col] = np.nan
        else:
            frame = self._csv(path, False, KLINE_COLUMNS)
        kind = hints.kind or next((k for t, k in _PRICE_KIND.items()
                                   if t in path_tokens(path)), Kind.OHLCV)
        out = pd.DataFrame({
            "ts": _epoch(frame["open_time"], path, "open_time"),
            "open": frame["open"], "high": frame["high"], "low": frame["low"],
            "close": frame["close"], "volume": frame["volume"],
            "quote_volume": frame["quote_volume"], "trade_count": frame["count"],
            "taker_buy_base": frame["taker_buy_volume"],
            "taker_buy_quote": frame["taker_buy_quote_volume"],
        }, index=frame.index)
        if kind is not Kind.OHLCV:
            for col in ("volume", "quote_volume", "trade_count", "taker_buy_base",
                        "taker_buy_quote"):
                out[col] = np.nan
        return Dataset(kind, instrument, out, timeframe, str(path))

    def _agg_trades(self, path: Path, instrument: Instrument, has_header: bool) -> Dataset:
        names = ["agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id",
                 "transact_time", "is_buyer_maker"] + ([] if has_header else ["best_match"])
        frame = self._csv(path, has_header, None if has_header else names)
        maker = _bool(frame["is_buyer_maker"], path, "is_buyer_maker")
        out = pd.DataFrame({
            "ts": _epoch(frame["transact_time"], path, "transact_time"),
            "trade_id": frame["first_trade_id"], "price": frame["price"],
            "qty": frame["quantity"], "side": np.where(maker, "sell", "buy"),
            "last_trade_id": frame["last_trade_id"],
        }, index=frame.index)
        return Dataset(Kind.TRADES, instrument, out, None, str(path), notes=[
            "aggregated trades: trade_id is the first trade id of each aggregate"])

    def _trades(self, path: Path, instrument: Instrument, has_header: bool) -> Dataset:
        names = ["id", "price", "qty", "quote_qty", "time", "is_buyer_maker"]
        frame = self._csv(path, has_header, None if has_header else [*names, "best_match"])
        maker = _bool(frame["is_buyer_maker"], path, "is_buyer_maker")
        out = pd.DataFrame({
            "ts": _epoch(frame["time"], path, "time"), "trade_id": frame["id"],
            "price": frame["price"], "qty": frame["qty"], "side": np.where(maker, "sell", "buy"),
        }, index=frame.index)
        return Dataset(Kind.TRADES, instrument, out, None, str(path))

    def _funding(self, path: Path, instrument: Instrument) -> Dataset:
        frame = self._csv(path, True, None)
        frame.columns = [c.strip().lower() for c in frame.columns]
        time_col = "fundingtime" if "fundingtime" in frame.columns else "calc_time"
        rate_col = "fundingrate" if "fundingrate" in frame.columns else "last_funding_rate"
        hours_col = next((c for c in ("fundingintervalhours", "funding_interval_hours")
                          if c in frame.columns), None)
        for col in (time_col, rate_col):
            if col not in frame.columns:
                raise DataFormatError("missing column", path=path, field=col)
        hours = (pd.to_numeric(frame[hours_col], errors="coerce").to_numpy()
                 if hours_col else None)
        out = funding_frame(_epoch(frame[time_col], path, time_col),
                            frame[rate_col].to_numpy(), index=frame.index, interval_hours=hours)
        return Dataset(Kind.FUNDING, instrument, out, None, str(path))

    def _metrics(self, path: Path, instrument: Instrument) -> Iterator[Dataset]:
        """Open interest, long/short ratios and the taker ratio, sampled every 5 minutes."""
        frame = self._csv(path, True, None)
        ts = pd.to_datetime(frame["create_time"], utc=True, errors="coerce")
        if ts.isna().any():
            row = int(frame.index[np.flatnonzero(ts.isna().to_numpy())[0]])
            raise DataFormatError("not a time", path=path, row=row, field="create_time")
        ts = ts.astype("datetime64[us, UTC]")
        yield Dataset(Kind.OPEN_INTEREST, instrument, pd.DataFrame({
            "ts": ts, "oi_contracts": frame["sum_open_interest"],
            "oi_value": frame["sum_open_interest_value"]}, index=frame.index), None, str(path))
        yield Dataset(Kind.LONG_SHORT, instrument, pd.DataFrame({
            "ts": ts, "global_account_ratio": frame["count_long_short_ratio"],
            "top_account_ratio": frame["count_toptrader_long_short_ratio"],
            "top_position_ratio": frame["sum_toptrader_long_short_ratio"]},
            index=frame.index), None, str(path))
        yield Dataset(Kind.TAKER_RATIO, instrument, pd.DataFrame({
            "ts": ts, "buy_sell_ratio": frame["sum_taker_long_short_vol_ratio"]},
            index=frame.index), None, str(path))


def _kline_header(header: list[str], path: Path) -> list[str]:
    """Header names -> KLINE_COLUMNS names; refuse unknown, repeated or missing ones."""
    out: list[str] = []
    for raw in header:
        key = str(raw).strip().lower().replace("_", "").replace(" ", "")
        name = _KLINE_ALIASES.get(key)
        if name is None:
            raise DataFormatError(
                f"kline header column {str(raw).strip()!r} is not in a known layout "
                f"(expected names like {', '.join(KLINE_COLUMNS)})", path=path, row=1,
                field=str(raw).strip())
        if name in out:
            raise DataFormatError(f"kline header names {name} twice", path=path, row=1,
                                  field=str(raw).strip())
        out.append(name)
    missing = [c for c in _KLINE_REQUIRED if c not in out]
    if missing:
        raise DataFormatError(f"kline header lacks {missing}", path=path, row=1,
                              field=missing[0])
    return out


def _market(path: Path, header: list[str]) -> str:
    tokens = path_tokens(path)
    if "spot" in tokens:
        return SPOT
    if tokens & {"futures", "um", "usdm", "perp", "fapi"}:
        return PERP
    raise UnknownFormatError("cannot tell spot from USD-M futures from the path; "
                             "pass --market spot|perp", path=path)


def _epoch(values: pd.Series, path: Path, field: str) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna().to_numpy()
    if bad.any():
        raise DataFormatError(f"not an epoch time: {values[bad].iloc[0]!r}", path=path,
                              row=int(values.index[np.flatnonzero(bad)[0]]), field=field)
    arr = numbers.to_numpy()
    out = to_utc(arr, epoch_unit(arr))
    out.index = values.index
    return out


def _bool(values: pd.Series, path: Path, field: str) -> np.ndarray:
    text = values.astype("string").str.strip().str.lower()
    ok = text.isin(["true", "false"]).to_numpy()
    if not ok.all():
        raise DataFormatError(f"expected true/false, got {values[~ok].iloc[0]!r}", path=path,
                              row=int(values.index[np.flatnonzero(~ok)[0]]), field=field)
    return (text == "true").to_numpy()
