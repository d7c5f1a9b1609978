"""A Dataset is one canonical frame of one kind for one instrument: the unit that
sources produce, validation checks and stores write.

Validation is strict because a store must never hold a row that a later stage would
trip on: a bad row refuses the whole file, with the file, row and field named.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from perptrader.core.errors import DataFormatError
from perptrader.core.instruments import Instrument
from perptrader.core.timeframes import timeframe_ms
from perptrader.marketdata.kinds import BAR_KINDS, TABLES, Column, Kind, frame_columns

TS_DTYPE = "datetime64[us, UTC]"


_GENESIS = pd.Timestamp("2009-01-03", tz="UTC")
_TWO_DAYS = pd.Timedelta(days=2)


@dataclass(frozen=True)
class Plausibility:
    """Bounds outside which a value is a parsing or unit mistake, not market data.

    Defaults suit crypto perpetuals and spot; ``data import`` options override each
    (``--earliest``, ``--min-price``, ``--max-price``, ``--max-jump``).
    """

    #: no crypto market data exists before the Bitcoin genesis block (2009-01-03)
    earliest: pd.Timestamp = _GENESIS
    #: times later than now + this are refused (clock / unit mistakes)
    future_slack: pd.Timedelta = _TWO_DAYS
    min_price: float = 1e-12
    max_price: float = 1e9
    #: sizes (volume, quantities, open interest) above this are refused
    max_size: float = 1e18
    #: a replacement bar value must lie within this factor of the bar's other OHLC
    #: values and of the neighbouring bars (see marketdata.conflicts)
    max_jump: float = 3.0


DEFAULT_PLAUSIBILITY = Plausibility()

#: which columns hold prices / sizes, per kind (for the plausibility bounds)
_PRICE_COLUMNS = {
    **{k: ("open", "high", "low", "close") for k in BAR_KINDS},
    Kind.TRADES: ("price",), Kind.LIQUIDATIONS: ("price",),
    Kind.BOOK: ("bid_price", "ask_price"), Kind.FUNDING: ("mark_price",),
}
_SIZE_COLUMNS = {
    **{k: ("volume", "quote_volume", "taker_buy_base", "taker_buy_quote") for k in BAR_KINDS},
    Kind.TRADES: ("qty",), Kind.LIQUIDATIONS: ("qty",), Kind.BOOK: ("bid_qty", "ask_qty"),
    Kind.OPEN_INTEREST: ("oi_contracts", "oi_value"),
    Kind.TAKER_RATIO: ("buy_volume", "sell_volume"),
}


@dataclass
class Dataset:
    kind: Kind
    instrument: Instrument
    frame: pd.DataFrame
    timeframe: str | None = None
    #: where it came from, for messages (a file path, or e.g. 'binance REST')
    source: str = ""
    #: notes worth telling the user (rows dropped as exact duplicates, repairs, ...)
    notes: list[str] = field(default_factory=list)
    #: None: the kind's merge rule (kinds.TableSpec.merge); 'overwrite': these rows
    #: replace the stored ones (``data import --on-conflict replace``)
    merge: str | None = None

    @property
    def rows(self) -> int:
        return len(self.frame)


def to_utc(values: pd.Series | np.ndarray, unit: str | None = None) -> pd.Series:
    """Epoch numbers (with ``unit``) or datetimes/strings -> UTC timestamps at µs."""
    if unit is not None:
        out = pd.to_datetime(pd.Series(values).astype("int64"), unit=unit, utc=True)
    else:
        out = pd.to_datetime(pd.Series(values), utc=True)
    return out.astype(TS_DTYPE)


def epoch_us(ts: pd.Series) -> np.ndarray:
    """UTC timestamps -> int64 microseconds since the epoch (no timezone warnings)."""
    return ts.astype(TS_DTYPE).astype("int64").to_numpy()


def epoch_unit(values: np.ndarray) -> str:
    """Guess s / ms / us / ns from the magnitude of epoch numbers (years 2001..2286)."""
    top = float(np.nanmax(np.abs(values))) if len(values) else 0.0
    if top < 1e10:
        return "s"
    if top < 1e13:
        return "ms"
    if top < 1e16:
        return "us"
    return "ns"


def validate(dataset: Dataset, bounds: Plausibility | None = None) -> Dataset:
    """Check and normalise a dataset; raise DataFormatError naming the first bad row.

    The frame's index is taken as the source row number used in messages. Returns a new
    Dataset whose frame has exactly the canonical columns, typed, sorted by key, with
    exact duplicate rows removed (conflicting duplicates are an error). ``bounds``: the
    plausibility bounds (times, prices, sizes) checked too; ``data import`` passes them.
    """
    kind, frame, src = dataset.kind, dataset.frame, dataset.source or None
    spec = TABLES[kind]
    wanted = frame_columns(kind)
    if kind in BAR_KINDS:
        if not dataset.timeframe:
            raise DataFormatError("bars need a timeframe", path=src)
        try:
            timeframe_ms(dataset.timeframe)
        except ValueError as exc:
            raise DataFormatError(str(exc), path=src, field="timeframe") from None
    missing = [c for c in wanted if c not in frame.columns and _column(spec.columns, c).required]
    if missing:
        raise DataFormatError(f"missing column(s) {missing}", path=src, field=missing[0])
    fast = _validate_canonical(dataset, bounds)
    if fast is not None:
        return fast
    out = pd.DataFrame(index=frame.index)
    for name in wanted:
        col = _column(spec.columns, name)
        out[name] = _coerce(frame[name] if name in frame.columns else None, col, len(frame), src)
    for col in (_column(spec.columns, c) for c in wanted):
        if col.required:
            bad = out[col.name].isna().to_numpy()
            if bad.any():
                raise DataFormatError("empty or unparseable value", path=src,
                                      row=_row(out, bad), field=col.name)
    _check_values(kind, out, src)
    if bounds is not None:  # files (data import); exchange data is trusted for these
        _check_plausible(kind, out, src, bounds)
    key = [c for c in spec.key_names if c in out.columns]
    out = out.sort_values(key, kind="stable")
    if kind in BAR_KINDS:
        _check_bar_spacing(out, dataset.timeframe, src)
    dup_all = out.duplicated(keep="first")
    notes = list(dataset.notes)
    if dup_all.any():
        notes.append(f"{int(dup_all.sum())} exact duplicate row(s) dropped")
        out = out[~dup_all.to_numpy()]
    dup_key = out.duplicated(subset=key, keep=False).to_numpy()
    if dup_key.any():
        rows = out.index[dup_key][:2].tolist()
        raise DataFormatError(
            f"two rows share the key {dict(out.loc[rows[0], key])} with different values "
            f"(rows {rows[0]} and {rows[-1]})",
            path=src, row=int(rows[0]), field=key[-1])
    return replace(dataset, frame=out, notes=notes)


def _validate_canonical(dataset: Dataset, bounds: Plausibility | None) -> Dataset | None:
    """:func:`validate` for a frame that is already canonical (the collector's book
    snapshots, bars built by a source): every column present with its canonical dtype
    (int64 may be numpy int64), numeric keys already strictly increasing. Then coercion,
    sorting and duplicate removal are no-ops and the checks run on numpy arrays only.

    Returns the same Dataset the general path returns, or None whenever anything is off
    (another dtype, a string column, an unsorted or repeated key, any failed check): the
    general path then refuses or repairs the frame with its usual messages, so this
    shortcut can neither accept a row the general path refuses nor word an error
    differently."""
    kind, frame, src = dataset.kind, dataset.frame, dataset.source or None
    spec = TABLES[kind]
    n = len(frame)
    columns: dict[str, object] = {}
    keys: list[np.ndarray] = []
    key_names = set(spec.key_names)
    for col in (_column(spec.columns, c) for c in frame_columns(kind)):
        if col.name not in frame.columns:
            return None
        values = frame[col.name]
        if not isinstance(values, pd.Series):  # repeated column name
            return None
        dtype = values.dtype
        if col.dtype == "timestamp":
            if dtype != TS_DTYPE:
                return None
            arr = values.array
            if col.required and arr.isna().any():
                return None
            if col.name in key_names:
                keys.append(arr.asi8)
            columns[col.name] = arr
        elif col.dtype == "float64":
            if dtype != np.float64:
                return None
            arr = values.to_numpy()
            # NaN is an empty value (allowed unless required); infinities are refused
            if not np.isfinite(arr).all() and (col.required or np.isinf(arr).any()):
                return None
            if col.name in key_names:
                keys.append(arr)
            columns[col.name] = arr
        elif col.dtype == "int64":
            if dtype == np.int64:
                data = values.to_numpy()
                arr = pd.arrays.IntegerArray(data, np.zeros(n, dtype=bool))
            elif dtype == "Int64":
                arr = values.array
                data = arr.to_numpy(dtype="int64", na_value=0)
                if col.required and arr.isna().any():
                    return None
            else:
                return None
            if col.name in key_names:
                keys.append(data)
            columns[col.name] = arr
        else:  # strings, booleans: the general path's coercion
            return None
    if n > 1:
        # strictly increasing by key: sorted and no two rows share a key (so no
        # duplicates of any kind; sorting would keep the order)
        ahead = np.zeros(n - 1, dtype=bool)
        tied = np.ones(n - 1, dtype=bool)
        for k in keys:
            prev, nxt = k[:-1], k[1:]
            ahead |= tied & (nxt > prev)
            tied &= nxt == prev
        if not ahead.all():
            return None
    out = pd.DataFrame(columns, index=frame.index)
    try:
        _check_values(kind, out, src)
        if bounds is not None:
            _check_plausible(kind, out, src, bounds)
        if kind in BAR_KINDS:
            _check_bar_spacing(out, dataset.timeframe, src)
    except DataFormatError:
        return None  # the general path raises it, in its own order of checks
    return replace(dataset, frame=out, notes=list(dataset.notes))


_DAY_US = 86_400_000_000
_WEEK_US = 7 * _DAY_US
_MONDAY_US = 4 * _DAY_US  # 1970-01-05, the first Monday after the epoch


def grid_offset_us(us: np.ndarray, timeframe: str) -> np.ndarray:
    """How far each bar open time lies past its timeframe's grid (0 = on the grid).

    Intraday timeframes that divide a day are aligned to midnight UTC (a 1h bar opens
    on the hour, 4h at 00/04/08...); weeks open on Monday 00:00 UTC; other multi-day
    timeframes on a midnight. Timeframes that do not divide a day are not checked."""
    step_us = timeframe_ms(timeframe) * 1000
    if step_us <= _DAY_US and _DAY_US % step_us == 0:
        return us % step_us
    if step_us % _WEEK_US == 0:
        return (us - _MONDAY_US) % _WEEK_US
    if step_us % _DAY_US == 0:
        return us % _DAY_US
    return np.zeros_like(us)


def _check_bar_spacing(frame: pd.DataFrame, timeframe: str | None, src: str | None) -> None:
    """Bars must sit on their timeframe's grid: a '8m' file holding 1m bars is mislabelled,
    and a 1h bar opening at 00:30 is not a 1h bar of the exchange."""
    step_us = timeframe_ms(timeframe or "") * 1000
    us = epoch_us(frame["ts"])
    diffs = np.diff(us)
    bad = (diffs % step_us != 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0]) + 1
        raise DataFormatError(
            f"bars {pd.Timedelta(microseconds=int(diffs[i - 1]))} apart do not fit the "
            f"timeframe {timeframe}: wrong timeframe in the name? (pass --timeframe)",
            path=src, row=int(frame.index[i]), field="ts")
    off = grid_offset_us(us, timeframe or "")
    if (off != 0).any():
        i = int(np.flatnonzero(off != 0)[0])
        raise DataFormatError(
            f"bar at {frame['ts'].iloc[i]} is off the {timeframe} grid (by "
            f"{pd.Timedelta(microseconds=int(off[i]))}): shifted times or a wrong timeframe",
            path=src, row=int(frame.index[i]), field="ts")


def _check_plausible(kind: Kind, out: pd.DataFrame, src: str | None,
                     bounds: Plausibility) -> None:
    """Times before ``bounds.earliest`` or in the future, prices and sizes beyond the
    bounds: unit or parsing mistakes (an epoch in the wrong unit lands in 1970)."""
    latest = pd.Timestamp.now(tz="UTC") + bounds.future_slack
    for name in ("ts", "exchange_ts"):
        if name not in out.columns:
            continue
        ts = out[name]
        early = (ts < bounds.earliest).fillna(False).to_numpy(dtype=bool)
        _fail_if(early, out, src, name,
                 f"time {ts[early].iloc[0] if early.any() else ''} is before "
                 f"{bounds.earliest.date()}: wrong epoch unit or not a time?")
        late = (ts > latest).fillna(False).to_numpy(dtype=bool)
        _fail_if(late, out, src, name,
                 f"time {ts[late].iloc[0] if late.any() else ''} is in the future: "
                 "wrong epoch unit?")
    for name in _PRICE_COLUMNS.get(kind, ()):
        arr = out[name].to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            bad = (arr < bounds.min_price) | (arr > bounds.max_price)
        if bad.any():
            _fail_if(bad, out, src, name,
                     f"implausible price {arr[bad][0]:g} (bounds {bounds.min_price:g}.."
                     f"{bounds.max_price:g}; see --min-price/--max-price)")
    for name in _SIZE_COLUMNS.get(kind, ()):
        arr = out[name].to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            bad = arr > bounds.max_size
        _fail_if(bad, out, src, name, f"implausible size (above {bounds.max_size:g})")


def _column(columns: tuple[Column, ...], name: str) -> Column:
    for c in columns:
        if c.name == name:
            return c
    raise KeyError(name)


def _row(frame: pd.DataFrame, mask: np.ndarray) -> int:
    return int(frame.index[np.flatnonzero(mask)[0]])


def _coerce(values: pd.Series | None, col: Column, n: int, src: str | None) -> pd.Series:
    if values is None:
        if col.dtype == "timestamp":
            return pd.Series(pd.NaT, index=range(n), dtype=TS_DTYPE)
        dtype = {"float64": "float64", "int64": "Int64", "string": "string", "bool": "boolean"}
        return pd.Series(pd.NA if col.dtype != "float64" else np.nan, index=range(n),
                         dtype=dtype[col.dtype])
    try:
        if col.dtype == "timestamp":
            if not isinstance(values.dtype, pd.DatetimeTZDtype):
                raise TypeError("timestamps must be timezone-aware UTC datetimes")
            return values.astype(TS_DTYPE)
        if col.dtype == "float64":
            numeric = pd.to_numeric(values, errors="coerce").astype("float64")
            bad = numeric.isna().to_numpy() & values.notna().to_numpy()
            if bad.any():
                raise DataFormatError(f"not a number: {values[bad].iloc[0]!r}", path=src,
                                      row=int(values.index[np.flatnonzero(bad)[0]]),
                                      field=col.name)
            if np.isinf(numeric.to_numpy()).any():
                bad = np.isinf(numeric.to_numpy())
                raise DataFormatError("infinite value", path=src,
                                      row=int(values.index[np.flatnonzero(bad)[0]]),
                                      field=col.name)
            return numeric
        if col.dtype == "int64":
            numeric = pd.to_numeric(values, errors="coerce")
            bad = numeric.notna().to_numpy() & (numeric.to_numpy(dtype="float64", na_value=0)
                                                % 1 != 0)
            bad |= numeric.isna().to_numpy() & values.notna().to_numpy()
            if bad.any():
                raise DataFormatError(f"not an integer: {values[bad].iloc[0]!r}", path=src,
                                      row=int(values.index[np.flatnonzero(bad)[0]]),
                                      field=col.name)
            return numeric.astype("Int64")
        if col.dtype == "string":
            return values.astype("string")
        if col.dtype == "bool":
            return values.astype("boolean")
    except DataFormatError:
        raise
    except (TypeError, ValueError) as exc:
        raise DataFormatError(str(exc), path=src, field=col.name) from None
    raise AssertionError(col.dtype)


def _fail_if(mask: np.ndarray, frame: pd.DataFrame, src: str | None, field_: str, msg: str) -> None:
    if mask.any():
        raise DataFormatError(msg, path=src, row=_row(frame, mask), field=field_)


def _check_values(kind: Kind, out: pd.DataFrame, src: str | None) -> None:
    """Rows no store should hold: non-positive prices, negative sizes, broken OHLC."""
    if kind in BAR_KINDS:
        o, h, low, c = (out[k].to_numpy() for k in ("open", "high", "low", "close"))
        for name, arr in (("open", o), ("high", h), ("low", low), ("close", c)):
            _fail_if(arr <= 0, out, src, name, "price must be positive")
        _fail_if(h < np.maximum(o, c), out, src, "high", "high is below open or close")
        _fail_if(low > np.minimum(o, c), out, src, "low", "low is above open or close")
        for name in ("volume", "quote_volume", "taker_buy_base", "taker_buy_quote"):
            arr = out[name].to_numpy(dtype="float64", na_value=np.nan)
            _fail_if(arr < 0, out, src, name, "must not be negative")
        tb, v = out["taker_buy_base"].to_numpy(), out["volume"].to_numpy()
        _fail_if(tb > v * (1 + 1e-9) + 1e-12, out, src, "taker_buy_base",
                 "taker-buy volume exceeds the bar's volume")
    elif kind in (Kind.TRADES, Kind.LIQUIDATIONS):
        _fail_if(out["price"].to_numpy() <= 0, out, src, "price", "price must be positive")
        _fail_if(out["qty"].to_numpy() <= 0, out, src, "qty", "quantity must be positive")
        side = out["side"].dropna()
        bad = ~side.isin(["buy", "sell"]).to_numpy()
        if bad.any():
            raise DataFormatError(f"side must be buy or sell, got {side[bad].iloc[0]!r}",
                                  path=src, row=int(side.index[np.flatnonzero(bad)[0]]),
                                  field="side")
    elif kind is Kind.BOOK:
        for name in ("bid_price", "ask_price"):
            arr = out[name].to_numpy(dtype="float64", na_value=np.nan)
            _fail_if(arr <= 0, out, src, name, "price must be positive")
        for name in ("bid_qty", "ask_qty"):
            arr = out[name].to_numpy(dtype="float64", na_value=np.nan)
            _fail_if(arr < 0, out, src, name, "quantity must not be negative")
        _fail_if(out["level"].to_numpy(dtype="int64") < 0, out, src, "level",
                 "level must be >= 0")
    elif kind is Kind.OPEN_INTEREST:
        for name in ("oi_contracts", "oi_value"):
            arr = out[name].to_numpy(dtype="float64", na_value=np.nan)
            _fail_if(arr < 0, out, src, name, "open interest must not be negative")
    elif kind in (Kind.LONG_SHORT, Kind.TAKER_RATIO):
        for name in out.columns:
            if name == "ts":
                continue
            arr = out[name].to_numpy(dtype="float64", na_value=np.nan)
            _fail_if(arr < 0, out, src, name, "ratio must not be negative")
    elif kind is Kind.FUNDING:
        rate = out["rate"].to_numpy()
        _fail_if(np.abs(rate) > 0.1, out, src, "rate",
                 "funding rate beyond ±10% per interval: not a rate (percent given?)")
        iv = out["interval_hours"].to_numpy(dtype="float64", na_value=np.nan)
        _fail_if(iv <= 0, out, src, "interval_hours", "funding interval must be positive")
