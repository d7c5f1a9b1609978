"""The kinds of market data and their canonical columns: the schema in one place.

Every source produces frames with exactly these columns, every store creates its
tables from these specs (see ``store/schema.py``), and the loader reads them back.
``ts`` is always a UTC timestamp: the bar's open time for bars, the settlement slot
for funding (raw exchange time kept in ``exchange_ts``), the event time otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    OHLCV = "ohlcv"  # trade-price bars
    MARK = "mark"  # mark-price bars
    INDEX = "index"  # index-price bars
    FUNDING = "funding"
    OPEN_INTEREST = "open_interest"
    LONG_SHORT = "long_short"
    TAKER_RATIO = "taker_ratio"
    LIQUIDATIONS = "liquidations"
    BOOK = "book"  # top-N order-book snapshots
    TRADES = "trades"


BAR_KINDS = (Kind.OHLCV, Kind.MARK, Kind.INDEX)
PRICE_TYPE = {Kind.OHLCV: "trade", Kind.MARK: "mark", Kind.INDEX: "index"}
KIND_OF_PRICE_TYPE = {v: k for k, v in PRICE_TYPE.items()}


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # float64 | int64 | string | timestamp | bool
    required: bool = False  # must be non-null in every row


@dataclass(frozen=True)
class TableSpec:
    """One stored table. ``key`` follows the instrument columns (exchange, market, symbol)."""

    table: str
    key: tuple[Column, ...]
    values: tuple[Column, ...]
    #: how a row that already exists is merged with an incoming one (see store/base.py)
    merge: str = "fill_nulls"

    @property
    def columns(self) -> tuple[Column, ...]:
        return self.key + self.values

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def key_names(self) -> list[str]:
        return [c.name for c in self.key]

    @property
    def value_names(self) -> list[str]:
        return [c.name for c in self.values]


INSTRUMENT_COLUMNS = ("exchange", "market", "symbol")

_TS = Column("ts", "timestamp", required=True)
_PRICE = Column("price", "float64", required=True)

BARS = TableSpec(
    table="bars",
    key=(Column("timeframe", "string", True), Column("price_type", "string", True), _TS),
    values=(
        Column("open", "float64", True),
        Column("high", "float64", True),
        Column("low", "float64", True),
        Column("close", "float64", True),
        Column("volume", "float64"),
        Column("quote_volume", "float64"),
        Column("trade_count", "int64"),
        Column("taker_buy_base", "float64"),
        Column("taker_buy_quote", "float64"),
    ),
    # A candle saved while it was still forming has less volume than the final one:
    # the larger-volume version wins, and missing extras are filled in.
    merge="larger_volume",
)

TABLES: dict[Kind, TableSpec] = {
    Kind.OHLCV: BARS,
    Kind.MARK: BARS,
    Kind.INDEX: BARS,
    Kind.FUNDING: TableSpec(
        table="funding",
        key=(_TS,),
        values=(
            Column("rate", "float64", True),
            Column("interval_hours", "float64"),
            Column("exchange_ts", "timestamp"),
            Column("mark_price", "float64"),
        ),
    ),
    Kind.OPEN_INTEREST: TableSpec(
        table="open_interest",
        key=(_TS,),
        values=(Column("oi_contracts", "float64"), Column("oi_value", "float64")),
    ),
    Kind.LONG_SHORT: TableSpec(
        table="long_short",
        key=(_TS,),
        values=(
            Column("global_account_ratio", "float64"),
            Column("top_account_ratio", "float64"),
            Column("top_position_ratio", "float64"),
        ),
    ),
    Kind.TAKER_RATIO: TableSpec(
        table="taker_ratio",
        key=(_TS,),
        values=(
            Column("buy_sell_ratio", "float64", True),
            Column("buy_volume", "float64"),
            Column("sell_volume", "float64"),
        ),
    ),
    Kind.LIQUIDATIONS: TableSpec(
        table="liquidations",
        key=(_TS, Column("side", "string", True), _PRICE, Column("qty", "float64", True)),
        values=(Column("order_type", "string"),),
    ),
    Kind.BOOK: TableSpec(
        table="book_snapshots",
        key=(_TS, Column("level", "int64", True)),
        values=(
            Column("bid_price", "float64"),
            Column("bid_qty", "float64"),
            Column("ask_price", "float64"),
            Column("ask_qty", "float64"),
            Column("update_id", "int64"),
        ),
    ),
    Kind.TRADES: TableSpec(
        table="trades",
        # ts leads the key so that TimescaleDB can partition on it (a hypertable's unique
        # keys must contain the time column); a trade id always comes with one time.
        key=(_TS, Column("trade_id", "int64", True)),
        values=(
            _PRICE,
            Column("qty", "float64", True),
            Column("side", "string"),  # aggressor side: buy | sell
            Column("last_trade_id", "int64"),
        ),
    ),
}

ALL_TABLES: tuple[TableSpec, ...] = tuple({spec.table: spec for spec in TABLES.values()}.values())


def frame_columns(kind: Kind) -> list[str]:
    """Columns of a canonical frame of this kind (no instrument columns; bars drop the
    discriminators ``timeframe`` and ``price_type``, which travel on the Dataset)."""
    spec = TABLES[kind]
    skip = {"timeframe", "price_type"}
    return [c for c in spec.column_names if c not in skip]
