"""Raw websocket depth captures as recorded by hftbacktest's collector.

A capture is gzip text, one message per line: ``<local receive timestamp> <raw JSON>``.
Binance captures hold combined-stream messages ``{"stream": ..., "data": {...}}``
(depth diffs, bookTicker, trade/aggTrade, markPrice) plus, somewhere, one line that is
the REST depth snapshot (``lastUpdateId``, ``bids``, ``asks``) that seeds the book.
Local timestamps are µs in older files and ns in newer ones, so they are not used:
``ts`` always comes from the exchange times (``T`` when given, else ``E``; ms).

The book is rebuilt with :class:`~perptrader.marketdata.orderbook.L2Book` and sampled
with :class:`~perptrader.marketdata.orderbook.BookSampler` (top 20, at most one state per
second by default). The market is told from the content: USD-M diffs carry ``pu``,
spot diffs do not (folder names are only a fallback). A day file that starts without a
snapshot is usually the continuation of the previous day's file, so when a file with
the previous date sits beside it, that file is replayed first to seed the book; the
``pu`` chain then proves (or refutes) that the two files join up.

Hyperliquid captures (``{"channel": "l2Book" | "trades", "data": ...}``) hold complete
top-20 book snapshots and trades, so they are read directly.

Rows in messages are 1-based line numbers of the decompressed file.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from perptrader.core.errors import DataFormatError, UnknownFormatError
from perptrader.core.instruments import PERP, SPOT, Instrument, normalize_symbol
from perptrader.marketdata.dataset import Dataset, to_utc, validate
from perptrader.marketdata.kinds import Kind
from perptrader.marketdata.orderbook import BookSampler, L2Book
from perptrader.marketdata.sources.base import ImportHints

_HEAD = re.compile(rb"^\s*\d{1,20} \{")
_NAME = re.compile(r"^(?P<symbol>[A-Za-z0-9]+)_(?P<date>\d{8})(?P<rest>\..+)?$")


def read_capture_bytes(path: Path) -> bytes:
    """The decompressed text of a capture (plain text is accepted too)."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    try:
        if magic == b"\x1f\x8b":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return Path(path).read_bytes()
    except (OSError, EOFError) as exc:
        raise DataFormatError(f"cannot read capture: {exc}", path=path) from None


def symbol_from_name(path: Path) -> str | None:
    """``btcusdt_20240718.gz`` -> ``BTCUSDT``."""
    m = _NAME.match(Path(path).name)
    return normalize_symbol(m.group("symbol")) if m else None


def previous_captures(path: Path, max_files: int = 3) -> list[Path]:
    """Captures of the same symbol for the days before this one that lie beside it,
    oldest first, stopping at the first missing day (at most ``max_files``)."""
    m = _NAME.match(Path(path).name)
    if not m:
        return []
    day = date(int(m.group("date")[:4]), int(m.group("date")[4:6]), int(m.group("date")[6:]))
    out: list[Path] = []
    for _ in range(max_files):
        day -= timedelta(days=1)
        stem = f"{m.group('symbol')}_{day:%Y%m%d}"
        found = sorted(
            p
            for p in Path(path).parent.glob(f"{stem}.*")
            if _NAME.match(p.name) and p != Path(path)
        )
        if not found:
            break
        out.append(found[0])
    return out[::-1]


def detect_market(data: bytes, path: Path) -> str:
    """perp when depth diffs carry ``pu`` (USD-M); spot when they do not; without depth
    diffs, other USD-M/spot fingerprints, then the folder name."""
    if b'"depthUpdate"' in data:
        return PERP if b'"pu":' in data else SPOT
    if re.search(rb'"X":\s*"', data) or b'"markPriceUpdate"' in data:
        return PERP  # USD-M trade messages carry X (MARKET/INSURANCE_FUND/...)
    if re.search(rb'"M":\s*(true|false)', data):
        return SPOT  # spot trade messages carry M ("ignore")
    parts = {p.lower() for p in Path(path).parts}
    if parts & {"spot"}:
        return SPOT
    return PERP


class CaptureListener:
    """Hooks called while a Binance capture is replayed; the default does nothing."""

    wants_trades = False
    wants_tickers = False

    def before_change(self, book: L2Book, ts: int | None) -> None:
        """Called before a diff (with its exchange time) or a snapshot (with None) is
        given to the book."""

    def after_snapshot(self, book: L2Book, row: int) -> None: ...

    def after_diff(self, book: L2Book, applied: bool, was_in_sync: bool, row: int) -> None: ...

    def on_trade(self, data: dict[str, Any], row: int) -> None: ...

    def on_ticker(self, data: dict[str, Any], row: int) -> None: ...


@dataclass
class ReplayInfo:
    """What a replay saw."""

    symbol: str | None = None
    diffs: int = 0
    snapshots_seen: int = 0
    tickers: int = 0
    trades: int = 0
    other: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    seeded_from: list[str] = field(default_factory=list)


def _bad_level(
    path: Path, row: int, data: dict[str, Any], keys: tuple[str, ...]
) -> DataFormatError | None:
    """The error for the first malformed price level under ``keys``, if any."""
    for key in keys:
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            return DataFormatError(
                f"expected a list of levels, got {value!r}", path=path, row=row, field=key
            )
        for level in value:
            try:
                if len(level) != 2:
                    raise ValueError
                p, q = float(level[0]), float(level[1])
                if not (0 < p < np.inf and 0 <= q < np.inf):
                    raise ValueError
            except (TypeError, ValueError):
                return DataFormatError(f"bad price level {level!r}", path=path, row=row, field=key)
    return None


def _field_error(
    path: Path, row: int, data: dict[str, Any], keys: tuple[str, ...], exc: Exception
) -> DataFormatError:
    """Turn a KeyError/ValueError/TypeError from one message into a named error."""
    if isinstance(exc, KeyError):
        return DataFormatError(
            f"missing field {exc.args[0]!r}", path=path, row=row, field=str(exc.args[0])
        )
    return _bad_level(path, row, data, keys) or DataFormatError(str(exc), path=path, row=row)


def _int(data: dict[str, Any], key: str, path: Path, row: int) -> int:
    value = data[key]
    if type(value) is not int:
        raise DataFormatError(f"not an integer: {value!r}", path=path, row=row, field=key)
    return value


def replay_binance_capture(
    path: Path,
    book: L2Book,
    listener: CaptureListener,
    data: bytes | None = None,
    info: ReplayInfo | None = None,
) -> ReplayInfo:
    """Feed one Binance capture into ``book`` in file order, calling ``listener``.

    Lines are classified from the stream name before the JSON is parsed, so streams the
    listener does not want (bookTicker is most of a capture) cost almost nothing.
    Raises DataFormatError naming the line and field of a malformed message, and when the
    capture mixes symbols.
    """
    path = Path(path)
    if data is None:
        data = read_capture_bytes(path)
    info = info or ReplayInfo()
    loads = orjson.loads
    want_trades, want_tickers = listener.wants_trades, listener.wants_tickers
    for row, line in enumerate(data.split(b"\n"), start=1):
        if not line or line.isspace():
            continue
        sp = line.find(b" ")
        if sp <= 0:
            raise DataFormatError("expected '<local timestamp> <JSON>'", path=path, row=row)
        head = line[sp + 1 : sp + 48]
        if b"@bookTicker" in head:
            if not want_tickers:
                info.tickers += 1
                continue
        elif b"@markPrice" in head or (
            not want_trades and (b"@trade" in head or b"@aggTrade" in head)
        ):
            info.other += 1
            continue
        try:
            msg = loads(line[sp + 1 :])
        except orjson.JSONDecodeError as exc:
            raise DataFormatError(f"not JSON: {exc}", path=path, row=row) from None
        if not isinstance(msg, dict):
            raise DataFormatError("message is not a JSON object", path=path, row=row)
        stream = msg.get("stream")
        d = msg.get("data", msg) if stream is not None else msg
        if not isinstance(d, dict):
            raise DataFormatError(
                "message data is not a JSON object", path=path, row=row, field="data"
            )
        event = d.get("e")
        if "lastUpdateId" in d:
            _snapshot(path, row, d, book, listener, info)
        elif event == "depthUpdate":
            _diff(path, row, d, book, listener, info)
        elif event in ("trade", "aggTrade"):
            info.trades += 1
            _check_symbol(path, row, d, info)
            listener.on_trade(d, row)
        elif event == "bookTicker" or (stream or "").endswith("@bookTicker"):
            info.tickers += 1
            listener.on_ticker(d, row)
        else:
            info.other += 1
    return info


def _check_symbol(path: Path, row: int, d: dict[str, Any], info: ReplayInfo) -> None:
    s = d.get("s")
    if s is None:
        return
    if info.symbol is None:
        info.symbol = s
    elif s != info.symbol:
        raise DataFormatError(
            f"capture mixes symbols ({info.symbol} and {s}): split it per symbol first",
            path=path,
            row=row,
            field="s",
        )


def _snapshot(
    path: Path,
    row: int,
    d: dict[str, Any],
    book: L2Book,
    listener: CaptureListener,
    info: ReplayInfo,
) -> None:
    ts = d.get("T", d.get("E"))
    if ts is not None and type(ts) is not int:
        raise DataFormatError(f"not an integer: {ts!r}", path=path, row=row, field="T")
    last_id = _int(d, "lastUpdateId", path, row)
    # None: whatever the time, the state before a (re)seed is final
    listener.before_change(book, None)
    try:
        book.apply_snapshot(last_id, d["bids"], d["asks"], ts)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise _field_error(path, row, d, ("bids", "asks"), exc) from None
    info.snapshots_seen += 1
    listener.after_snapshot(book, row)


def _diff(
    path: Path,
    row: int,
    d: dict[str, Any],
    book: L2Book,
    listener: CaptureListener,
    info: ReplayInfo,
) -> None:
    info.diffs += 1
    _check_symbol(path, row, d, info)
    ts = d.get("T", d.get("E"))
    if type(ts) is not int:
        raise DataFormatError(
            f"not an integer: {ts!r}", path=path, row=row, field="T" if "T" in d else "E"
        )
    if info.first_ts is None:
        info.first_ts = ts
    info.last_ts = ts
    first_id = _int(d, "U", path, row)
    last_id = _int(d, "u", path, row)
    pu = d.get("pu")
    if pu is not None and type(pu) is not int:
        raise DataFormatError(f"not an integer: {pu!r}", path=path, row=row, field="pu")
    if not book.in_sync:
        # held for a later snapshot, which would meet a bad level far from this line
        bad = _bad_level(path, row, d, ("b", "a"))
        if bad is not None:
            raise bad
    listener.before_change(book, ts)
    was = book.in_sync
    try:
        applied = book.apply_diff(first_id, last_id, pu, d["b"], d["a"], ts)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise _field_error(path, row, d, ("b", "a"), exc) from None
    listener.after_diff(book, applied, was, row)


def seed_from_previous(path: Path, book: L2Book, max_files: int = 3) -> list[str]:
    """Replay the captures of the preceding days (beside ``path``) into ``book``: book
    messages only. Returns the names of the files replayed."""
    used = []
    for prev in previous_captures(path, max_files):
        try:
            replay_binance_capture(prev, book, CaptureListener())
        except DataFormatError as exc:
            raise exc.with_path(prev) from None
        used.append(prev.name)
    return used


class _ReaderListener(CaptureListener):
    """Samples the book and collects trades (as lists, turned into arrays at the end)."""

    wants_trades = True

    def __init__(self, sampler: BookSampler) -> None:
        self.sampler = sampler
        self.rows: list[int] = []
        self.ts: list[int] = []
        self.ids: list[int] = []
        self.last_ids: list[int | None] = []
        self.price: list[Any] = []
        self.qty: list[Any] = []
        self.maker: list[Any] = []

    def before_change(self, book: L2Book, ts: int | None) -> None:
        self.sampler.before(ts)

    def after_snapshot(self, book: L2Book, row: int) -> None:
        if book.in_sync:
            self.sampler.mark(row)

    def after_diff(self, book: L2Book, applied: bool, was_in_sync: bool, row: int) -> None:
        if applied:
            self.sampler.mark(row)
        elif was_in_sync and not book.in_sync:
            self.sampler.flush()  # the state before the gap is still right for its time

    def on_trade(self, d: dict[str, Any], row: int) -> None:
        # errors get the file's path from read()
        try:
            agg = d["e"] == "aggTrade"
            ts = d["T"] if "T" in d else d["E"]
            # aggregates: the first raw trade id, like the data.binance.vision aggTrades
            # reader, so that [trade_id, last_trade_id] is the range of raw trade ids and
            # both sources key the same trades alike (the aggregate id ``a`` if no ``f``)
            tid = d.get("f", d["a"]) if agg else d["t"]
            last = d.get("l") if agg else None
            price, qty, maker = d["p"], d["q"], d["m"]
        except KeyError as exc:
            raise DataFormatError(
                f"missing field {exc.args[0]!r}", row=row, field=str(exc.args[0])
            ) from None
        for key, value in (("T", ts), (("f" if "f" in d else "a") if agg else "t", tid)):
            if type(value) is not int:
                raise DataFormatError(f"not an integer: {value!r}", row=row, field=key)
        if last is not None and type(last) is not int:
            raise DataFormatError(f"not an integer: {last!r}", row=row, field="l")
        if type(maker) is not bool:
            raise DataFormatError(f"not true/false: {maker!r}", row=row, field="m")
        self.rows.append(row)
        self.ts.append(ts)  # type: ignore[arg-type]
        self.ids.append(tid)
        self.last_ids.append(last)
        self.price.append(price)
        self.qty.append(qty)
        self.maker.append(maker)

    def trades_frame(self) -> pd.DataFrame:
        n = len(self.rows)
        last = np.array([0 if v is None else v for v in self.last_ids], dtype="int64")
        last_missing = np.array([v is None for v in self.last_ids], dtype=bool)
        return pd.DataFrame(
            {
                "ts": to_utc(np.asarray(self.ts, dtype="int64"), unit="ms").array,
                "trade_id": np.asarray(self.ids, dtype="int64"),
                # strings: validate() parses them and names the row of a bad one
                "price": pd.array(self.price, dtype=object) if n else np.array([], "float64"),
                "qty": pd.array(self.qty, dtype=object) if n else np.array([], "float64"),
                "side": np.where(np.asarray(self.maker, dtype=bool), "sell", "buy"),
                "last_trade_id": pd.arrays.IntegerArray(last, last_missing),
            },
            index=pd.Index(np.asarray(self.rows, dtype="int64")),
        )


class DepthCaptureReader:
    """FileReader for hftbacktest raw websocket captures (Binance USD-M/spot, Hyperliquid).

    Yields a BOOK dataset (top ``depth`` levels, at most one state per ``sample_ms`` of
    exchange time; ``sample_ms=0`` keeps every state) and a TRADES dataset.
    ``chain_previous`` replays the previous days' captures beside a file that has no
    snapshot of its own, so that a day file continuing yesterday's stream gets a book.
    """

    name = "hftbacktest-capture"

    def __init__(
        self,
        depth: int = 20,
        sample_ms: int = 1000,
        chain_previous: bool = True,
        max_chain: int = 3,
    ) -> None:
        self.depth = depth
        self.sample_ms = sample_ms
        self.chain_previous = chain_previous
        self.max_chain = max_chain

    def can_read(self, path: Path, head: bytes) -> bool:
        if not _HEAD.match(head):
            return False
        rest = head[head.find(b"{") :]
        return any(
            key in rest
            for key in (b'"stream"', b'"lastUpdateId"', b'"channel"', b'"e":"depthUpdate"')
        )

    def read(self, path: Path, hints: ImportHints) -> Iterator[Dataset]:
        """BOOK and TRADES datasets; ``hints.kind`` keeps only that kind."""
        if hints.kind is not None and hints.kind not in (Kind.BOOK, Kind.TRADES):
            raise UnknownFormatError(
                f"a depth capture holds book and trades data, not {hints.kind.value}", path=path
            )
        for ds in self._read(Path(path), hints):
            if hints.kind is None or ds.kind == hints.kind:
                yield ds

    def _read(self, path: Path, hints: ImportHints) -> Iterator[Dataset]:
        data = read_capture_bytes(path)
        first = data.lstrip()[:256]
        if b'"channel"' in first:
            yield from self._read_hyperliquid(path, data, hints)
            return
        if b'"stream"' not in first and b'"lastUpdateId"' not in first and b'"e":' not in first:
            raise UnknownFormatError(
                "not a Binance or Hyperliquid websocket capture "
                "(expected combined-stream messages)",
                path=path,
            )
        market = detect_market(data, path)
        book = L2Book(spot=market == SPOT)
        notes: list[str] = []
        info = ReplayInfo()
        if self.chain_previous and b'"lastUpdateId"' not in data:
            try:
                info.seeded_from = seed_from_previous(path, book, self.max_chain)
            except DataFormatError as exc:
                notes.append(f"previous capture could not seed the book: {exc}")
                book = L2Book(spot=market == SPOT)
            if info.seeded_from:
                notes.append(
                    "book seeded by replaying "
                    + ", ".join(info.seeded_from)
                    + ("" if book.in_sync else " (which left it out of sync)")
                )
        sampler = BookSampler(book, self.depth, self.sample_ms)
        listener = _ReaderListener(sampler)
        try:
            replay_binance_capture(path, book, listener, data, info)
        except DataFormatError as exc:
            raise exc.with_path(path) from None
        if book.in_sync:
            sampler.flush()
        instrument = self._instrument(path, hints, market, content=info.symbol, notes=notes)
        src = str(path)
        if book.gaps:
            g = book.gaps[0]
            notes.append(
                f"{len(book.gaps)} gap(s) in the depth stream (first: diff "
                f"U={g.first_id} u={g.last_id} pu={g.prev_last_id} did not follow "
                f"{g.expected}); book rows resume only after a new snapshot"
            )
        if len(sampler):
            sampling = f"top {self.depth} levels, at most one state per {self.sample_ms} ms"
            yield validate(
                Dataset(
                    Kind.BOOK, instrument, sampler.frame(), source=src, notes=[*notes, sampling]
                )
            )
        elif info.diffs:
            notes.append(
                "no order book: the capture has no depth snapshot"
                + ("" if self.chain_previous else " (chaining turned off)")
                + " and no previous day's capture beside it joins up"
            )
        if listener.rows:
            yield validate(
                Dataset(Kind.TRADES, instrument, listener.trades_frame(), source=src, notes=notes)
            )
        elif not len(sampler):
            raise DataFormatError(
                "capture holds neither a usable book nor trades"
                + (f" ({notes[-1]})" if notes else ""),
                path=path,
            )

    def _instrument(
        self,
        path: Path,
        hints: ImportHints,
        market: str,
        *,
        content: str | None = None,
        fallback: str | None = None,
        exchange: str = "binance",
        notes: list[str] | None = None,
    ) -> Instrument:
        """hints > the messages' own symbol > the file name > ``fallback``."""
        named = symbol_from_name(path)
        symbol = hints.symbol or content or named or fallback
        if (
            not hints.symbol
            and content
            and named
            and notes is not None
            and normalize_symbol(content) != named
        ):
            notes.append(
                f"the file name says {named} but the messages say {content}: {content} is used"
            )
        if not symbol:
            raise UnknownFormatError(
                "cannot tell the symbol: name the file <symbol>_<yyyymmdd>.gz or pass --symbol",
                path=path,
            )
        try:
            return Instrument(
                exchange=(hints.exchange or exchange).lower(),
                market=hints.market or market,
                symbol=normalize_symbol(symbol),
            )
        except ValueError as exc:
            raise UnknownFormatError(str(exc), path=path) from None

    # -- Hyperliquid --------------------------------------------------------------------

    def _read_hyperliquid(self, path: Path, data: bytes, hints: ImportHints) -> Iterator[Dataset]:
        book = L2Book()
        sampler = BookSampler(book, self.depth, self.sample_ms)
        trades: list[tuple[int, int, int, Any, Any, Any]] = []
        coin = None
        for row, line in enumerate(data.split(b"\n"), start=1):
            if not line or line.isspace():
                continue
            sp = line.find(b" ")
            try:
                msg = orjson.loads(line[sp + 1 :])
                channel, d = msg["channel"], msg["data"]
            except orjson.JSONDecodeError as exc:
                raise DataFormatError(f"not JSON: {exc}", path=path, row=row) from None
            except (KeyError, TypeError):
                raise DataFormatError(
                    "expected {'channel': ..., 'data': ...}", path=path, row=row, field="channel"
                ) from None
            if channel == "l2Book":
                coin = _hl_book(path, row, d, book, sampler, coin)
            elif channel == "trades":
                coin = _hl_trades(path, row, d, trades, coin)
            elif channel in ("subscriptionResponse", "pong"):
                continue
            else:
                raise UnknownFormatError(
                    f"Hyperliquid channel {channel!r} is not supported (l2Book and trades are)",
                    path=path,
                    row=row,
                    field="channel",
                )
        sampler.flush()
        # Hyperliquid's coin ("BTC") is quoted in USD: the file name (btcusd_...) says so
        instrument = self._instrument(
            path, hints, PERP, exchange="hyperliquid", fallback=f"{coin}USD" if coin else None
        )
        src = str(path)
        if len(sampler):
            frame = sampler.frame()
            frame["update_id"] = pd.array([None] * len(frame), dtype="Int64")
            yield validate(
                Dataset(
                    Kind.BOOK,
                    instrument,
                    frame,
                    source=src,
                    notes=["Hyperliquid l2Book snapshots (no update ids)"],
                )
            )
        if trades:
            arr = pd.DataFrame(trades, columns=["row", "ts", "trade_id", "price", "qty", "side"])
            # the first trades message replays recent trades: drop repeats of a trade
            dup = arr.duplicated(subset=["ts", "trade_id"], keep="first")
            notes = [f"{int(dup.sum())} repeated trade(s) dropped"] if dup.any() else []
            arr = arr[~dup.to_numpy()]
            frame = pd.DataFrame(
                {
                    "ts": to_utc(arr["ts"].to_numpy(dtype="int64"), unit="ms").array,
                    "trade_id": arr["trade_id"].to_numpy(dtype="int64"),
                    "price": arr["price"].to_numpy(dtype=object),
                    "qty": arr["qty"].to_numpy(dtype=object),
                    "side": arr["side"].map({"B": "buy", "A": "sell"}).to_numpy(dtype=object),
                    "last_trade_id": pd.array([None] * len(arr), dtype="Int64"),
                },
                index=pd.Index(arr["row"].to_numpy(dtype="int64")),
            )
            bad = frame["side"].isna().to_numpy()
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise DataFormatError(
                    f"side must be A or B, got {arr['side'].iloc[i]!r}",
                    path=path,
                    row=int(frame.index[i]),
                    field="side",
                )
            yield validate(Dataset(Kind.TRADES, instrument, frame, source=src, notes=notes))


def _hl_coin(path: Path, row: int, coin: str | None, new: Any) -> str:
    if coin is not None and new != coin:
        raise DataFormatError(
            f"capture mixes coins ({coin} and {new})", path=path, row=row, field="coin"
        )
    if not isinstance(new, str):
        raise DataFormatError(f"bad coin {new!r}", path=path, row=row, field="coin")
    return new


def _hl_book(
    path: Path, row: int, d: Any, book: L2Book, sampler: BookSampler, coin: str | None
) -> str:
    try:
        coin = _hl_coin(path, row, coin, d["coin"])
        ts = d["time"]
        bids, asks = d["levels"]
        if type(ts) is not int:
            raise DataFormatError(f"not an integer: {ts!r}", path=path, row=row, field="time")
        rows_b = [(lv["px"], lv["sz"]) for lv in bids]
        rows_a = [(lv["px"], lv["sz"]) for lv in asks]
        sampler.before(ts)
        book.replace(rows_b, rows_a, ts)
    except DataFormatError:
        raise
    except KeyError as exc:
        raise DataFormatError(
            f"missing field {exc.args[0]!r}", path=path, row=row, field=str(exc.args[0])
        ) from None
    except (TypeError, ValueError) as exc:
        raise DataFormatError(
            f"bad book levels: {exc}", path=path, row=row, field="levels"
        ) from None
    sampler.mark(row)
    return coin


def _hl_trades(
    path: Path, row: int, d: Any, out: list[tuple[int, int, int, Any, Any, Any]], coin: str | None
) -> str | None:
    if not isinstance(d, list):
        raise DataFormatError("trades data must be a list", path=path, row=row, field="data")
    for t in d:
        try:
            coin = _hl_coin(path, row, coin, t["coin"])
            ts, tid = t["time"], t["tid"]
            for key, value in (("time", ts), ("tid", tid)):
                if type(value) is not int:
                    raise DataFormatError(
                        f"not an integer: {value!r}", path=path, row=row, field=key
                    )
            out.append((row, ts, tid, t["px"], t["sz"], t["side"]))
        except KeyError as exc:
            raise DataFormatError(
                f"missing field {exc.args[0]!r}", path=path, row=row, field=str(exc.args[0])
            ) from None
        except TypeError:
            raise DataFormatError(
                "trade is not an object", path=path, row=row, field="data"
            ) from None
    return coin
