"""nautilus_trader's Binance test-data files.

* Depth CSVs (``*-depth-snap.csv``, ``*-depth-update.csv``): one price level per row:
  ``symbol, timestamp (ms), first_update_id, last_update_id, side (b/a), update_type
  (snap/set), price, qty, pu`` (``pu`` is -1 in snapshots; qty 0 deletes the level).
  Rows sharing (update_type, first/last update id) form one snapshot or one diff; they
  are replayed through :class:`~perptrader.marketdata.orderbook.L2Book` under Binance's
  rules. A snap file alone gives one BOOK snapshot. An update file needs its snapshot:
  the file beside it with ``depth-update`` replaced by ``depth-snap`` (or snap rows of
  its own); its BOOK rows are the states its diffs produce. Diffs that do not continue
  the snapshot are refused with the ids that fail to join, since any book built from
  them would be wrong.
* Parquet quotes (``timestamp, symbol, ask_size, ask, bid_size, bid``) become BOOK level-0
  rows; parquet trades (``timestamp, trade_id, price, quantity, buyer_maker``) TRADES.
  The market is not stated in these files: a ccxt-style symbol ``BTC/USDT`` (no
  ``:USDT`` settle suffix) means spot, and that is what they hold.

Rows in messages: file line numbers for CSV (header = line 1), 0-based record numbers
for parquet.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from perptrader.core.errors import DataFormatError, UnknownFormatError
from perptrader.core.instruments import PERP, SPOT, Instrument, normalize_symbol
from perptrader.marketdata.dataset import Dataset, epoch_unit, to_utc, validate
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.orderbook import BookSampler, L2Book
from perptrader.marketdata.sources.base import ImportHints
from perptrader.marketdata.sources.book_common import (
    boolean,
    keep_last_per_ts,
    numeric,
    read_text_csv,
)

DEPTH_COLUMNS = [
    "symbol",
    "timestamp",
    "first_update_id",
    "last_update_id",
    "side",
    "update_type",
    "price",
    "qty",
    "pu",
]
QUOTE_COLUMNS = {"timestamp", "symbol", "ask_size", "ask", "bid_size", "bid"}
TRADE_COLUMNS = {"timestamp", "trade_id", "price", "quantity", "buyer_maker"}
_SIDES = {"b": "b", "bid": "b", "buy": "b", "a": "a", "ask": "a", "sell": "a"}


def _parquet_columns(path: Path) -> set[str]:
    try:
        return set(pq.read_schema(path).names)
    except (OSError, ValueError):
        return set()


class NautilusReader:
    """FileReader for nautilus_trader's Binance depth CSVs and quotes/trades parquet."""

    name = "nautilus-binance"

    def __init__(self, depth: int = 20, sample_ms: int = 1000) -> None:
        self.depth = depth
        self.sample_ms = sample_ms

    def can_read(self, path: Path, head: bytes) -> bool:
        if head.startswith(b"PAR1") or Path(path).suffix == ".parquet":
            cols = _parquet_columns(Path(path))
            return QUOTE_COLUMNS.issubset(cols) or TRADE_COLUMNS.issubset(cols)
        first = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip().lower()
        return [c.strip() for c in first.split(",")] == DEPTH_COLUMNS

    def read(self, path: Path, hints: ImportHints) -> Iterator[Dataset]:
        path = Path(path)
        if path.suffix == ".parquet" or self._is_parquet(path):
            yield self._read_parquet(path, hints)
        else:
            yield from self._read_depth(path, hints)

    @staticmethod
    def _is_parquet(path: Path) -> bool:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PAR1"

    # -- depth CSV ----------------------------------------------------------------------

    def _parse_depth(self, path: Path) -> pd.DataFrame:
        raw = read_text_csv(path)
        missing = [c for c in DEPTH_COLUMNS if c not in raw.columns]
        if missing:
            raise DataFormatError(f"missing column(s) {missing}", path=path, field=missing[0])
        side = raw["side"].fillna("").str.strip().str.lower().map(_SIDES)
        if side.isna().any():
            i = int(np.flatnonzero(side.isna().to_numpy())[0])
            raise DataFormatError(
                f"side must be b or a, got {raw['side'].iloc[i]!r}",
                path=path,
                row=int(raw.index[i]),
                field="side",
            )
        kind = raw["update_type"].fillna("").str.strip().str.lower()
        bad = ~kind.isin(["snap", "set"]).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataFormatError(
                f"update_type must be snap or set, got {raw['update_type'].iloc[i]!r}",
                path=path,
                row=int(raw.index[i]),
                field="update_type",
            )
        price = numeric(raw["price"], path, "price")
        qty = numeric(raw["qty"], path, "qty")
        for name, arr, ok in (("price", price, price > 0), ("qty", qty, qty >= 0)):
            if not ok.all():
                i = int(np.flatnonzero(~ok)[0])
                raise DataFormatError(
                    f"{name} out of range: {arr[i]!r}", path=path, row=int(raw.index[i]), field=name
                )
        symbols = raw["symbol"].dropna().unique()
        if len(symbols) != 1:
            raise DataFormatError(
                f"expected one symbol, found {list(symbols)[:3]}", path=path, field="symbol"
            )
        return pd.DataFrame(
            {
                "symbol": raw["symbol"],
                "ts": numeric(raw["timestamp"], path, "timestamp", integer=True),
                "first": numeric(raw["first_update_id"], path, "first_update_id", integer=True),
                "last": numeric(raw["last_update_id"], path, "last_update_id", integer=True),
                "pu": numeric(raw["pu"], path, "pu", integer=True),
                "side": side,
                "kind": kind,
                "price": price,
                "qty": qty,
            },
            index=raw.index,
        )

    @staticmethod
    def _groups(frame: pd.DataFrame) -> list[tuple[int, int]]:
        """Start/end positions of runs of rows forming one snapshot or diff."""
        key = frame[["kind", "first", "last", "pu"]]
        change = (key != key.shift()).any(axis=1).to_numpy()
        starts = np.flatnonzero(change)
        ends = np.append(starts[1:], len(frame))
        return list(zip(starts.tolist(), ends.tolist(), strict=True))

    def _replay(
        self, path: Path, frame: pd.DataFrame, book: L2Book, sampler: BookSampler | None
    ) -> None:
        price, qty = frame["price"].to_numpy(), frame["qty"].to_numpy()
        is_bid = (frame["side"] == "b").to_numpy()
        rows = frame.index.to_numpy()
        for start, end in self._groups(frame):
            first = frame.iloc[start]
            sl = slice(start, end)
            levels = np.column_stack([price[sl], qty[sl]])
            bids, asks = levels[is_bid[sl]].tolist(), levels[~is_bid[sl]].tolist()
            ts = int(first["ts"])
            if sampler is not None:
                sampler.before(ts)
            was = book.in_sync
            if first["kind"] == "snap":
                book.apply_snapshot(int(first["last"]), bids, asks, ts)
                ok = book.in_sync
            else:
                pu = int(first["pu"])
                ok = book.apply_diff(
                    int(first["first"]),
                    int(first["last"]),
                    None if book.spot else pu,
                    bids,
                    asks,
                    ts,
                )
            if sampler is not None:
                if ok:
                    sampler.mark(int(rows[start]))
                elif was and not book.in_sync:
                    sampler.flush()
        if sampler is not None and book.in_sync:
            sampler.flush()

    def _read_depth(self, path: Path, hints: ImportHints) -> Iterator[Dataset]:
        frame = self._parse_depth(path)
        updates = frame[frame["kind"] == "set"]
        # USD-M diffs carry pu; spot diffs would have -1 there like snapshots
        spot = bool(len(updates)) and bool((updates["pu"] < 0).all())
        market = hints.market or (SPOT if spot else PERP)
        instrument = Instrument(
            hints.exchange or "binance",
            market,
            normalize_symbol(hints.symbol or str(frame["symbol"].iloc[0])),
        )
        book = L2Book(spot=spot)
        notes: list[str] = []
        has_snap = bool((frame["kind"] == "snap").any())
        if len(updates) and not has_snap:
            snap_path = path.with_name(path.name.replace("depth-update", "depth-snap"))
            if snap_path == path or not snap_path.exists():
                raise UnknownFormatError(
                    "depth updates need their snapshot: put the "
                    f"matching {snap_path.name} beside this file",
                    path=path,
                )
            snap = self._parse_depth(snap_path)
            self._replay(snap_path, snap[snap["kind"] == "snap"], book, None)
            notes.append(f"book seeded from {snap_path.name}")
        sampler = BookSampler(book, self.depth, self.sample_ms if len(updates) else 0)
        self._replay(path, frame, book, sampler)
        if book.gaps:
            g = book.gaps[0]
            row = int(updates.index[np.flatnonzero((updates["first"] == g.first_id).to_numpy())[0]])
            when = ""
            if g.ts is not None and book.last_ts is not None:
                lag = (g.ts - book.last_ts) / 1000
                when = f", {lag:.3f} s after the snapshot"
            raise DataFormatError(
                f"depth updates do not continue the snapshot: the book was at update "
                f"{g.expected} and the next diff covers {g.first_id}..{g.last_id} "
                f"(pu {g.prev_last_id}{when}); the book cannot be rebuilt from these files",
                path=path,
                row=row,
                field="first_update_id",
            )
        if not len(sampler):
            raise DataFormatError(
                "no book state could be built (every diff was older than the snapshot)", path=path
            )
        yield validate(
            Dataset(Kind.BOOK, instrument, sampler.frame(), source=str(path), notes=notes)
        )

    # -- parquet ------------------------------------------------------------------------

    def _read_parquet(self, path: Path, hints: ImportHints) -> Dataset:
        try:
            raw = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"cannot read parquet: {exc}", path=path) from None
        raw.index = pd.RangeIndex(len(raw))
        cols = set(raw.columns)
        ts = self._timestamps(raw, path)
        symbol_raw = hints.symbol
        notes: list[str] = []
        if "symbol" in raw.columns and len(raw):
            symbols = raw["symbol"].dropna().astype(str).unique()
            if len(symbols) != 1:
                raise DataFormatError(
                    f"expected one symbol, found {list(symbols)[:3]}", path=path, field="symbol"
                )
            symbol_raw = symbol_raw or symbols[0]
        if not symbol_raw:
            # trades carry no symbol column: the name says it (btcusdt-trades.parquet)
            symbol_raw = path.name.split("-")[0]
        market = hints.market
        if market is None:
            said_by = symbol_raw if "symbol" in raw.columns else None
            if said_by is None:
                sibling = self._sibling_symbol(path)
                said_by = sibling[0] if sibling else None
                source = f"{sibling[1]}'s symbol" if sibling else ""
            else:
                source = "the symbol"
            if said_by is not None:
                market = SPOT if "/" in said_by and ":" not in said_by else PERP
                notes.append(
                    f"market not stated in the file: {source} {said_by!r} makes it "
                    f"{market} (a ccxt-style symbol without a settle currency is spot)"
                )
            else:
                market = PERP
                notes.append("market not stated in the file: taken as perp (pass --market)")
        instrument = Instrument(hints.exchange or "binance", market, normalize_symbol(symbol_raw))
        if QUOTE_COLUMNS.issubset(cols):
            frame = pd.DataFrame(
                {
                    "ts": ts,
                    "level": np.zeros(len(raw), dtype="int64"),
                    "bid_price": self._float(raw, "bid", path),
                    "bid_qty": self._float(raw, "bid_size", path),
                    "ask_price": self._float(raw, "ask", path),
                    "ask_qty": self._float(raw, "ask_size", path),
                    "update_id": pd.array([None] * len(raw), dtype="Int64"),
                },
                index=raw.index,
            )
            frame, dropped = keep_last_per_ts(frame)
            if dropped:
                notes.append(
                    f"{dropped} quote(s) sharing a timestamp with a later one "
                    "dropped (the last quote of each instant is kept)"
                )
            return validate(Dataset(Kind.BOOK, instrument, frame, source=str(path), notes=notes))
        if TRADE_COLUMNS.issubset(cols):
            maker = boolean(raw["buyer_maker"].astype(object), path, "buyer_maker")
            frame = pd.DataFrame(
                {
                    "ts": ts,
                    "trade_id": raw["trade_id"],
                    "price": self._float(raw, "price", path),
                    "qty": self._float(raw, "quantity", path),
                    "side": np.where(maker, "sell", "buy"),
                    "last_trade_id": pd.array([None] * len(raw), dtype="Int64"),
                },
                index=raw.index,
            )
            return validate(Dataset(Kind.TRADES, instrument, frame, source=str(path), notes=notes))
        raise UnknownFormatError(
            "nautilus parquet of an unknown kind (expected quotes or trades columns)", path=path
        )

    @staticmethod
    def _sibling_symbol(path: Path) -> tuple[str, str] | None:
        """Trades carry no symbol: the quotes file beside them may (symbol, file name)."""
        stem = path.name.split("-")[0]
        for other in path.parent.glob(f"{stem}-*.parquet"):
            if other != path and "symbol" in _parquet_columns(other):
                try:
                    sym = pq.read_table(other, columns=["symbol"]).column(0)[0].as_py()
                except (OSError, ValueError, IndexError):
                    continue
                if isinstance(sym, str):
                    return sym, other.name
        return None

    @staticmethod
    def _timestamps(raw: pd.DataFrame, path: Path) -> pd.Series:
        col = raw["timestamp"]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            out = to_utc(col)
        elif pd.api.types.is_datetime64_dtype(col.dtype):
            out = to_utc(col.dt.tz_localize("UTC"))
        elif pd.api.types.is_integer_dtype(col.dtype):
            out = to_utc(col, unit=epoch_unit(col.to_numpy()))
        else:
            raise DataFormatError(
                f"timestamp column of type {col.dtype} is not a time", path=path, field="timestamp"
            )
        out.index = raw.index
        bad = out.isna().to_numpy()
        if bad.any():
            raise DataFormatError(
                "empty timestamp",
                path=path,
                row=int(raw.index[np.flatnonzero(bad)[0]]),
                field="timestamp",
            )
        return out

    @staticmethod
    def _float(raw: pd.DataFrame, name: str, path: Path) -> pd.Series:
        col = raw[name]
        if not pd.api.types.is_numeric_dtype(col.dtype):
            return pd.Series(
                numeric(col.astype("string").astype(object), path, name, required=False),
                index=raw.index,
            )
        return col.astype("float64")
