"""What the fake exchange serves: recorded data, found by file name and parsed by
perptrader's own readers, loaded lazily per series.

Bars, funding and open interest go through the same importer as ``data import`` into an
in-memory store, so overlapping files merge by the same rules (the larger-volume candle
wins) and the fake serves exactly what an import of the same files would hold. The
exchangeInfo is the real USD-M capture in ``orderbook/cryptofeed``; order-book snapshots,
depth diffs and trades come from the hftbacktest websocket captures.

Without a data folder (unit tests) the same class serves synthetic datasets handed to
:meth:`MarketData.add`.
"""

from __future__ import annotations

import copy
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from perptrader.core.instruments import DEFAULT_EXCHANGE, PERP, Instrument
from perptrader.core.timeframes import timeframe_ms
from perptrader.marketdata.dataset import Dataset, epoch_us, validate
from perptrader.marketdata.importer import import_file
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.sources.base import ImportHints
from perptrader.marketdata.sources.depth_capture import read_capture_bytes
from perptrader.marketdata.sources.files import parse_freqtrade_name
from perptrader.marketdata.store.duckdb_store import DuckDBStore

EXCHANGE_INFO_CAPTURE = "orderbook/cryptofeed/BINANCE_FUTURES.0"
_VISION = re.compile(r"^(?P<symbol>[A-Z0-9]{5,})-(?P<what>\d+[smhdw]|funding)-futures\.csv$|"
                     r"^(?P<fsymbol>[A-Z0-9]{5,})-funding\.csv$")
_CAPTURE = re.compile(r"^(?P<symbol>[a-z0-9]+)_(?P<date>\d{8})(\.dat)?\.gz$")
_FT_KIND = {"futures": Kind.OHLCV, "mark": Kind.MARK, "index": Kind.INDEX,
            "funding_rate": Kind.FUNDING}

#: a series the fake can serve: (symbol, kind, timeframe or OI period or None)
SeriesKey = tuple[str, Kind, str | None]


@dataclass
class Capture:
    """One symbol's websocket capture, parsed: the REST snapshot, then diffs and trades
    in file order (exchange times in ms)."""

    snapshot: dict[str, Any] | None = None
    diffs: list[dict[str, Any]] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)


def index_files(data_dir: Path) -> dict[SeriesKey, list[Path]]:
    """Which recorded files hold which perpetual series, from their names alone (so the
    fake starts at once and parses a file only when a client asks for its series)."""
    out: dict[SeriesKey, list[Path]] = defaultdict(list)
    futures = data_dir / "freqtrade" / "binance" / "futures"
    for path in sorted(futures.glob("*.feather")) if futures.is_dir() else []:
        parsed = parse_freqtrade_name(path.name)
        if parsed is None or parsed.spot or parsed.candle_type not in _FT_KIND:
            continue
        kind = _FT_KIND[parsed.candle_type]
        out[(parsed.symbol, kind, None if kind is Kind.FUNDING else parsed.timeframe)].append(path)
    vision = data_dir / "binance_vision" / "futures_um"
    for path in sorted(vision.glob("*.csv")) if vision.is_dir() else []:
        m = _VISION.match(path.name)
        if not m:
            continue
        if m.group("fsymbol") or m.group("what") == "funding":
            out[(m.group("fsymbol") or m.group("symbol"), Kind.FUNDING, None)].append(path)
        else:
            out[(m.group("symbol"), Kind.OHLCV, m.group("what"))].append(path)
    grave = data_dir / "gravestone" / "data"
    for folder in sorted(grave.iterdir()) if grave.is_dir() else []:
        for path in sorted(folder.glob("*.csv")):
            symbol = path.stem.upper()
            if folder.name == "funding":
                out[(symbol, Kind.FUNDING, None)].append(path)
            elif folder.name.startswith("oi_"):
                out[(symbol, Kind.OPEN_INTEREST, folder.name[3:])].append(path)
            else:
                out[(symbol, Kind.OHLCV, folder.name)].append(path)
    return dict(out)


def index_captures(data_dir: Path) -> dict[str, list[Path]]:
    """USD-M websocket captures per symbol, oldest first."""
    folder = data_dir / "orderbook" / "hftbacktest" / "usdm"
    out: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.glob("*.gz")) if folder.is_dir() else []:
        m = _CAPTURE.match(path.name)
        if m:
            out[m.group("symbol").upper()].append(path)
    return dict(out)


def read_exchange_info(path: Path) -> dict[str, Any]:
    """The exchangeInfo body of a cryptofeed REST capture line ``<url> -> <t>: <json>``."""
    for line in path.read_bytes().split(b"\n"):
        if b"/exchangeInfo" in line and b" -> " in line:
            body = line.split(b": ", 1)[1]
            return orjson.loads(body)
    raise ValueError(f"no exchangeInfo response in {path}")


def synthetic_symbol(symbol: str, base: str, quote: str = "USDT") -> dict[str, Any]:
    """A plausible exchangeInfo entry for a symbol the capture does not list."""
    return {
        "symbol": symbol, "pair": symbol, "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
        "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
        "baseAsset": base, "quoteAsset": quote, "marginAsset": quote,
        "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8,
        "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [],
        "settlePlan": 0, "triggerProtect": "0.0500", "liquidationFee": "0.012000",
        "marketTakeBound": "0.30",
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000",
             "tickSize": "0.01"},
            {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000",
             "minQty": "0.001"},
            {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "maxQty": "1000",
             "minQty": "0.001"},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MIN_NOTIONAL", "notional": "5"},
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                       "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }


_DEFAULT_INFO: dict[str, Any] = {
    "timezone": "UTC", "serverTime": 0, "futuresType": "U_MARGINED",
    "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
         "limit": 2400},
        {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
    ],
    "exchangeFilters": [], "assets": [{"asset": "USDT", "marginAvailable": True,
                                       "autoAssetExchange": "-10000"}],
    "symbols": [],
}


class MarketData:
    """Series by (symbol, kind, timeframe), loaded on first use."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = Path(data_dir) if data_dir else None
        self.store = DuckDBStore(":memory:")
        self.store.migrate()
        self.files: dict[SeriesKey, list[Path]] = {}
        self.captures_index: dict[str, list[Path]] = {}
        self._loaded: set[SeriesKey] = set()
        self._captures: dict[str, Capture] = {}
        self._synthetic_symbols: set[str] = set()
        self.info: dict[str, Any] = copy.deepcopy(_DEFAULT_INFO)
        self.info_source = "built-in template"
        if self.data_dir is not None:
            self.files = index_files(self.data_dir)
            self.captures_index = index_captures(self.data_dir)
            capture = self.data_dir / EXCHANGE_INFO_CAPTURE
            if capture.is_file():
                self.info = read_exchange_info(capture)
                self.info_source = EXCHANGE_INFO_CAPTURE
        self._listed = {s["symbol"] for s in self.info["symbols"]}
        for symbol in sorted({k[0] for k in self.files} | set(self.captures_index)):
            self._ensure_listed(symbol)

    # -- symbols --------------------------------------------------------------------
    def _ensure_listed(self, symbol: str) -> None:
        if symbol in self._listed:
            return
        base = symbol[:-4] if symbol.endswith("USDT") else symbol[:-3]
        self.info["symbols"].append(synthetic_symbol(symbol, base, symbol[len(base):]))
        self._listed.add(symbol)
        self._synthetic_symbols.add(symbol)

    def listed(self, symbol: str) -> bool:
        return symbol in self._listed

    def exchange_info(self, server_time: int) -> dict[str, Any]:
        info = dict(self.info)
        info["serverTime"] = server_time
        return info

    def add(self, datasets: list[Dataset]) -> None:
        """Serve these (synthetic) datasets; their symbols are listed if they are not."""
        checked = [validate(ds) for ds in datasets]
        self.store.write(checked)
        for ds in checked:
            self._ensure_listed(ds.instrument.symbol)
            tf = ds.timeframe if ds.kind is not Kind.OPEN_INTEREST else None
            self._loaded.add((ds.instrument.symbol, ds.kind, tf))

    def add_open_interest(self, symbol: str, period: str, frame: pd.DataFrame) -> None:
        """Synthetic open interest served for one period."""
        self.add([Dataset(Kind.OPEN_INTEREST, _instrument(symbol), frame, None, "synthetic")])
        self._loaded.add((symbol, Kind.OPEN_INTEREST, period))

    # -- series ---------------------------------------------------------------------
    def _load(self, key: SeriesKey) -> None:
        if key in self._loaded:
            return
        self._loaded.add(key)
        for path in self.files.get(key, []):
            # the same validate-then-store path as `data import`; a refused file is skipped
            import_file(path, self.store, ImportHints())

    def has_series(self, key: SeriesKey) -> bool:
        return key in self.files or key in self._loaded

    def frame(self, key: SeriesKey, start_ms: int | None, end_ms: int | None) -> pd.DataFrame:
        """Stored rows of a series with start <= ts <= end (ms, inclusive both ends)."""
        self._load(key)
        symbol, kind, tf = key
        start = pd.Timestamp(start_ms, unit="ms", tz="UTC") if start_ms is not None else None
        end = pd.Timestamp(end_ms + 1, unit="ms", tz="UTC") if end_ms is not None else None
        if kind is Kind.OPEN_INTEREST:
            frame = self.store.read(kind, _instrument(symbol), None, start, end)
            if tf is None:
                return frame
            step = timeframe_ms(tf) * 1000
            return frame[epoch_us(frame["ts"]) % step == 0].reset_index(drop=True)
        return self.store.read(kind, _instrument(symbol), tf, start, end)

    def first_bar_ms(self, symbol: str) -> int | None:
        """Open time of the first recorded bar of the symbol's finest kline series (what
        ``--clock-start data`` starts the clock at), None when it has no bars."""
        tfs = [k[2] for k in (*self.files, *self._loaded)
               if k[0] == symbol and k[1] is Kind.OHLCV and k[2]]
        if not tfs:
            return None
        finest = min(tfs, key=timeframe_ms)
        frame = self.frame((symbol, Kind.OHLCV, finest), None, None)
        return None if frame.empty else int(epoch_us(frame["ts"]).min() // 1000)

    def symbols_with_data(self) -> list[str]:
        return sorted({k[0] for k in (*self.files, *self._loaded)})

    def native_oi_periods(self, symbol: str) -> list[str]:
        return sorted({k[2] for k in (*self.files, *self._loaded)
                       if k[0] == symbol and k[1] is Kind.OPEN_INTEREST and k[2]})

    # -- order book and trades --------------------------------------------------------
    def capture(self, symbol: str) -> Capture | None:
        """The first capture of the symbol that holds a REST snapshot, parsed once."""
        if symbol in self._captures:
            return self._captures[symbol]
        for path in self.captures_index.get(symbol, []):
            cap = _parse_capture(path)
            if cap.snapshot is not None:
                self._captures[symbol] = cap
                return cap
        return None

    def set_capture(self, symbol: str, capture: Capture) -> None:
        """Serve a synthetic capture (tests)."""
        self._ensure_listed(symbol)
        self._captures[symbol] = capture


def _instrument(symbol: str) -> Instrument:
    return Instrument(DEFAULT_EXCHANGE, PERP, symbol)


def _parse_capture(path: Path) -> Capture:
    """Snapshot, then the diffs that follow it (Binance's rule: drop diffs with
    ``u < lastUpdateId``, including those buffered before the snapshot arrived), and every
    trade of the capture."""
    cap = Capture()
    diffs: list[dict[str, Any]] = []
    for line in read_capture_bytes(path).split(b"\n"):
        sp = line.find(b" ")
        if sp <= 0 or b"@bookTicker" in line[sp: sp + 48]:
            continue
        msg = orjson.loads(line[sp + 1:])
        data = msg.get("data", msg)
        if "lastUpdateId" in data:
            if cap.snapshot is None:
                cap.snapshot = data
        elif data.get("e") == "depthUpdate":
            diffs.append(data)
        elif data.get("e") in ("trade", "aggTrade"):
            cap.trades.append(data)
    if cap.snapshot is not None:
        last = cap.snapshot["lastUpdateId"]
        cap.diffs = [d for d in diffs if d["u"] >= last]
    return cap
