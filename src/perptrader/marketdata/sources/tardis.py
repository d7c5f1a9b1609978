"""Tardis.dev downloadable CSVs (``datasets`` API), optionally gzipped.

Every file starts ``exchange, symbol, timestamp, local_timestamp``; times are µs since
the epoch and ``timestamp`` (the exchange's time) is used for ``ts``. The data type is
told from the remaining columns:

* ``book_snapshot_N``: ``asks[i].price, asks[i].amount, bids[i].price, bids[i].amount``
  -> BOOK, every row kept (they are already snapshots), reshaped in one go;
* ``quotes``: ``ask_amount, ask_price, bid_price, bid_amount`` -> BOOK level 0;
* ``trades``: ``id, side, price, amount`` -> TRADES (a non-numeric id such as BitMEX's
  UUIDs becomes a stable 63-bit number derived from it; side ``unknown`` is left empty);
* ``incremental_book_L2``: ``is_snapshot, side, price, amount`` -> replayed through
  :class:`~perptrader.marketdata.orderbook.L2Book` (a run of ``is_snapshot`` rows starts a
  new book; amount 0 deletes) and sampled to BOOK snapshots after each timestamp, at
  most one per ``sample_ms``.

Amounts are kept in the exchange's units (contracts on BitMEX/Deribit/Huobi swaps).
Rows in messages are file line numbers (header = line 1).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from perptrader.core.errors import DataFormatError, UnknownFormatError
from perptrader.core.instruments import PERP, SPOT, Instrument, normalize_symbol
from perptrader.marketdata.dataset import Dataset, to_utc, validate
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.orderbook import BookSampler, L2Book
from perptrader.marketdata.sources.base import ImportHints
from perptrader.marketdata.sources.book_common import (
    boolean,
    keep_last_per_ts,
    numeric,
    read_text_csv,
    stable_id,
)

_PREFIX = ["exchange", "symbol", "timestamp", "local_timestamp"]
_LEVEL = re.compile(r"^(asks|bids)\[(\d+)\]\.(price|amount)$")

#: Tardis exchange id -> (exchange, market) in this project's terms. Venues that list
#: dated futures or options next to perpetuals are checked per symbol (see _DATED).
EXCHANGES: dict[str, tuple[str, str]] = {
    "binance": ("binance", SPOT),
    "binance-futures": ("binance", PERP),
    "bitmex": ("bitmex", PERP),
    "deribit": ("deribit", PERP),
    "huobi-dm-swap": ("huobi", PERP),
    "huobi-dm-linear-swap": ("huobi", PERP),
    "huobi": ("huobi", SPOT),
    "okex-swap": ("okx", PERP),
    "okex": ("okx", SPOT),
    "bybit": ("bybit", PERP),
    "bybit-spot": ("bybit", SPOT),
    "bitfinex-derivatives": ("bitfinex", PERP),
    "bitfinex": ("bitfinex", SPOT),
    "coinbase": ("coinbase", SPOT),
    "kraken": ("kraken", SPOT),
    "ftx": ("ftx", PERP),
}
#: symbols that are not perpetuals on venues mapped to perp: dated futures and options
_DATED = {
    "deribit": re.compile(r"^(?!.*PERPETUAL).+-\d{1,2}[A-Z]{3}\d{2}"),  # BTC-25SEP20[-...]
    "bitmex": re.compile(r"^[A-Z]{3,}[FGHJKMNQUVXZ]\d{2}$"),  # XBTZ20
    "ftx": re.compile(r"^(?!.*-PERP$).*$"),  # FTX spot pairs and dated futures
}


class TardisReader:
    """FileReader for Tardis.dev CSVs: book snapshots, quotes, trades, incremental L2."""

    name = "tardis-csv"

    def __init__(self, depth: int = 20, sample_ms: int = 1000) -> None:
        self.depth = depth
        self.sample_ms = sample_ms

    def can_read(self, path: Path, head: bytes) -> bool:
        first = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip().lower()
        return [c.strip() for c in first.split(",")][:4] == _PREFIX

    def read(self, path: Path, hints: ImportHints) -> Iterator[Dataset]:
        path = Path(path)
        raw = read_text_csv(path)
        missing = [c for c in _PREFIX if c not in raw.columns]
        if missing:
            raise DataFormatError(f"missing column(s) {missing}", path=path, field=missing[0])
        if raw.empty:
            raise DataFormatError("no data rows", path=path)
        instrument, notes = self._instrument(raw, path, hints)
        cols = set(raw.columns)
        ts = numeric(raw["timestamp"], path, "timestamp", integer=True)
        if any(_LEVEL.match(c) for c in raw.columns):
            frame = self._snapshots(raw, ts, path)
        elif {"ask_amount", "ask_price", "bid_price", "bid_amount"}.issubset(cols):
            frame = self._quotes(raw, ts, path)
            frame, dropped = keep_last_per_ts(frame)
            if dropped:
                notes.append(f"{dropped} quote(s) sharing a timestamp with a later one dropped")
        elif {"is_snapshot", "side", "price", "amount"}.issubset(cols):
            frame = self._incremental(raw, ts, path, notes)
        elif {"id", "side", "price", "amount"}.issubset(cols):
            yield validate(
                Dataset(
                    Kind.TRADES,
                    instrument,
                    self._trades(raw, ts, path, notes),
                    source=str(path),
                    notes=notes,
                )
            )
            return
        else:
            extra = [c for c in raw.columns if c not in _PREFIX][:6]
            raise UnknownFormatError(
                f"Tardis data type not supported (columns {extra}); "
                "supported: book_snapshot_N, quotes, trades, "
                "incremental_book_L2",
                path=path,
            )
        yield validate(Dataset(Kind.BOOK, instrument, frame, source=str(path), notes=notes))

    # -- instrument ---------------------------------------------------------------------

    @staticmethod
    def _instrument(
        raw: pd.DataFrame, path: Path, hints: ImportHints
    ) -> tuple[Instrument, list[str]]:
        for name in ("exchange", "symbol"):
            values = raw[name].dropna().unique()
            if len(values) != 1:
                raise DataFormatError(
                    f"expected one {name} per file, found {list(values)[:3]}", path=path, field=name
                )
        venue = str(raw["exchange"].iloc[0]).strip().lower()
        symbol = str(raw["symbol"].iloc[0]).strip()
        notes: list[str] = []
        mapped = EXCHANGES.get(venue)
        if mapped is None and not (hints.exchange and hints.market):
            raise UnknownFormatError(
                f"Tardis exchange {venue!r} is not mapped: pass --exchange and --market",
                path=path,
                row=2,
                field="exchange",
            )
        exchange, market = mapped if mapped else (venue, PERP)
        dated = _DATED.get(venue)
        if dated is not None and dated.match(symbol.upper()) and hints.market is None:
            raise UnknownFormatError(
                f"{symbol} on {venue} is not a perpetual (dated future or option): not supported",
                path=path,
                row=2,
                field="symbol",
            )
        try:
            instrument = Instrument(
                exchange=(hints.exchange or exchange).lower(),
                market=hints.market or market,
                symbol=normalize_symbol(hints.symbol or symbol),
            )
        except ValueError as exc:
            raise UnknownFormatError(str(exc), path=path, row=2, field="symbol") from None
        if venue != instrument.exchange:
            notes.append(f"Tardis exchange {venue!r} -> {instrument.exchange} {instrument.market}")
        return instrument, notes

    # -- kinds --------------------------------------------------------------------------

    def _snapshots(self, raw: pd.DataFrame, ts: np.ndarray, path: Path) -> pd.DataFrame:
        depth = 1 + max(int(m.group(2)) for c in raw.columns if (m := _LEVEL.match(c)))
        n = len(raw)
        arrays = {}
        for side in ("bids", "asks"):
            for what in ("price", "amount"):
                grid = np.full((n, depth), np.nan)
                for i in range(depth):
                    name = f"{side}[{i}].{what}"
                    if name in raw.columns:
                        grid[:, i] = numeric(raw[name], path, name, required=False)
                arrays[side, what] = grid
        keep = ~(np.isnan(arrays["bids", "price"]) & np.isnan(arrays["asks", "price"])).ravel()
        rows = np.repeat(raw.index.to_numpy(), depth)[keep]
        return pd.DataFrame(
            {
                "ts": to_utc(np.repeat(ts, depth)[keep], unit="us").array,
                "level": np.tile(np.arange(depth, dtype="int64"), n)[keep],
                "bid_price": arrays["bids", "price"].ravel()[keep],
                "bid_qty": arrays["bids", "amount"].ravel()[keep],
                "ask_price": arrays["asks", "price"].ravel()[keep],
                "ask_qty": arrays["asks", "amount"].ravel()[keep],
                "update_id": pd.array([None] * int(keep.sum()), dtype="Int64"),
            },
            index=pd.Index(rows, dtype="int64"),
        )

    @staticmethod
    def _quotes(raw: pd.DataFrame, ts: np.ndarray, path: Path) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "ts": to_utc(ts, unit="us").array,
                "level": np.zeros(len(raw), dtype="int64"),
                "bid_price": numeric(raw["bid_price"], path, "bid_price", required=False),
                "bid_qty": numeric(raw["bid_amount"], path, "bid_amount", required=False),
                "ask_price": numeric(raw["ask_price"], path, "ask_price", required=False),
                "ask_qty": numeric(raw["ask_amount"], path, "ask_amount", required=False),
                "update_id": pd.array([None] * len(raw), dtype="Int64"),
            },
            index=raw.index,
        )

    @staticmethod
    def _trades(raw: pd.DataFrame, ts: np.ndarray, path: Path, notes: list[str]) -> pd.DataFrame:
        ids_text = raw["id"]
        empty = ids_text.isna().to_numpy()
        if empty.any():
            i = int(np.flatnonzero(empty)[0])
            raise DataFormatError("empty trade id", path=path, row=int(raw.index[i]), field="id")
        as_int = pd.to_numeric(ids_text, errors="coerce")
        if as_int.notna().all():
            ids = numeric(ids_text, path, "id", integer=True)
        else:
            ids = np.array([stable_id(s) for s in ids_text.astype(str)], dtype="int64")
            notes.append(
                "trade ids are not numbers: trade_id is a stable 63-bit hash of the exchange's id"
            )
        side = raw["side"].fillna("").str.strip().str.lower()
        bad = ~side.isin(["buy", "sell", "unknown", ""]).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataFormatError(
                f"side must be buy, sell or unknown, got {raw['side'].iloc[i]!r}",
                path=path,
                row=int(raw.index[i]),
                field="side",
            )
        return pd.DataFrame(
            {
                "ts": to_utc(ts, unit="us").array,
                "trade_id": ids,
                "price": numeric(raw["price"], path, "price"),
                "qty": numeric(raw["amount"], path, "amount"),
                "side": side.where(side.isin(["buy", "sell"]), None).astype(object).to_numpy(),
                "last_trade_id": pd.array([None] * len(raw), dtype="Int64"),
            },
            index=raw.index,
        )

    def _incremental(
        self, raw: pd.DataFrame, ts: np.ndarray, path: Path, notes: list[str]
    ) -> pd.DataFrame:
        snap = boolean(raw["is_snapshot"], path, "is_snapshot")
        side = raw["side"].fillna("").str.strip().str.lower()
        bad = ~side.isin(["bid", "ask"]).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataFormatError(
                f"side must be bid or ask, got {raw['side'].iloc[i]!r}",
                path=path,
                row=int(raw.index[i]),
                field="side",
            )
        price = numeric(raw["price"], path, "price")
        amount = numeric(raw["amount"], path, "amount")
        for name, ok in (("price", price > 0), ("amount", amount >= 0)):
            if not ok.all():
                i = int(np.flatnonzero(~ok)[0])
                raise DataFormatError(
                    f"{name} out of range", path=path, row=int(raw.index[i]), field=name
                )
        is_bid = (side == "bid").to_numpy()
        rows = raw.index.to_numpy()
        # runs of rows with one timestamp and one is_snapshot value
        change = np.ones(len(raw), dtype=bool)
        change[1:] = (ts[1:] != ts[:-1]) | (snap[1:] != snap[:-1])
        starts = np.flatnonzero(change)
        ends = np.append(starts[1:], len(raw))
        book = L2Book()
        sampler = BookSampler(book, self.depth, self.sample_ms, ts_unit="us")
        skipped = 0
        prev_snap = False
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            t_us = int(ts[start])
            sl = slice(start, end)
            levels = np.column_stack([price[sl], amount[sl]])
            bids, asks = levels[is_bid[sl]].tolist(), levels[~is_bid[sl]].tolist()
            if snap[start] or book.in_sync:
                sampler.before(t_us)
            if snap[start] and not prev_snap:
                book.replace([], [], t_us)  # a new snapshot starts: forget the old book
            if snap[start] or book.in_sync:
                book.update_levels(bids, asks, t_us)
                sampler.mark(int(rows[start]))
            else:
                skipped += end - start
            prev_snap = bool(snap[start])
        sampler.flush()
        if skipped:
            notes.append(f"{skipped} update row(s) before the first snapshot skipped")
        if not len(sampler):
            raise DataFormatError(
                "no book could be built: the file has no snapshot rows",
                path=path,
                field="is_snapshot",
            )
        return sampler.frame()
