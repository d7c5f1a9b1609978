"""Helpers both stores use to turn Datasets into staged rows and query rows back into
canonical frames and SeriesInfo."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa

from perptrader.core.instruments import Instrument
from perptrader.core.timeframes import ms_to_timeframe, timeframe_ms
from perptrader.marketdata.dataset import TS_DTYPE, Dataset
from perptrader.marketdata.kinds import (
    INSTRUMENT_COLUMNS,
    KIND_OF_PRICE_TYPE,
    PRICE_TYPE,
    TABLES,
    Kind,
    TableSpec,
    frame_columns,
)
from perptrader.marketdata.store.base import SeriesInfo
from perptrader.marketdata.store.sql import all_columns


def write_spec(ds: Dataset) -> TableSpec:
    """The table spec a write of ``ds`` merges by: the kind's own rule, or 'overwrite'
    for rows the user chose to replace (``data import --on-conflict replace``)."""
    spec = TABLES[ds.kind]
    return dataclasses.replace(spec, merge=ds.merge) if ds.merge else spec


def staged_frame(ds: Dataset) -> pd.DataFrame:
    """The dataset's rows with instrument (and bar discriminator) columns added, in table
    column order; timestamps as naive UTC (both stores take them as UTC)."""
    spec = TABLES[ds.kind]
    out = ds.frame.reset_index(drop=True).copy()
    out["exchange"] = ds.instrument.exchange
    out["market"] = ds.instrument.market
    out["symbol"] = ds.instrument.symbol
    if ds.kind in PRICE_TYPE:
        out["timeframe"] = ds.timeframe
        out["price_type"] = PRICE_TYPE[ds.kind]
    for col in spec.columns:
        if col.dtype == "timestamp":
            out[col.name] = out[col.name].dt.tz_convert("UTC").dt.tz_localize(None)
    return out[all_columns(spec)]


_ARROW_TYPES = {"float64": pa.float64(), "int64": pa.int64(), "string": pa.string(),
                "bool": pa.bool_()}


def staged_table(ds: Dataset) -> pa.Table:
    """``staged_frame`` as an Arrow table, built column by column without copying the
    frame: the same rows, columns and values (NaN and NA as NULL, timestamps as naive
    UTC), and no Python object per row (the instrument columns are one value repeated),
    so DuckDB scans it without sampling object columns for their type."""
    spec = TABLES[ds.kind]
    frame = ds.frame
    n = len(frame)
    fixed = {"exchange": ds.instrument.exchange, "market": ds.instrument.market,
             "symbol": ds.instrument.symbol}
    if ds.kind in PRICE_TYPE:
        fixed["timeframe"] = ds.timeframe
        fixed["price_type"] = PRICE_TYPE[ds.kind]
    zeros = pa.array(np.zeros(n, dtype=np.int32))
    types = {c.name: c.dtype for c in spec.columns}
    arrays = []
    for name in all_columns(spec):
        if name in fixed:
            arrays.append(pa.array([fixed[name]], type=pa.string()).take(zeros))
            continue
        arrays.append(_arrow_column(frame[name], types[name]))
    return pa.Table.from_arrays(arrays, names=all_columns(spec))


def _arrow_column(values: pd.Series, dtype: str) -> pa.Array:
    """One column as Arrow: canonical dtypes straight from their numpy buffers, others
    through pandas' conversion (NaN, NaT and NA become NULL either way)."""
    if dtype == "timestamp":
        if values.dtype == TS_DTYPE:  # µs since the epoch, UTC
            arr = values.array
            return pa.array(arr.asi8, type=pa.timestamp("us"), mask=arr.isna())
        naive = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return pa.array(naive, from_pandas=True)
    if dtype == "float64" and values.dtype == np.float64:
        data = values.to_numpy()
        return pa.array(data, type=pa.float64(), mask=np.isnan(data))
    if dtype == "int64" and values.dtype == "Int64":
        arr = values.array
        return pa.array(arr.to_numpy("int64", na_value=0), type=pa.int64(), mask=arr.isna())
    return pa.array(values, type=_ARROW_TYPES[dtype], from_pandas=True)


def canonical_frame(kind: Kind, raw: pd.DataFrame) -> pd.DataFrame:
    """Rows read back from a store -> the canonical frame (UTC timestamps, nullable ints)."""
    spec = TABLES[kind]
    out = raw.copy()
    for col in spec.columns:
        if col.name not in out.columns:
            continue
        if col.dtype == "timestamp":
            ts = pd.to_datetime(out[col.name])
            out[col.name] = (ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts).astype(TS_DTYPE)
        elif col.dtype == "int64":
            out[col.name] = out[col.name].astype("Int64")
        elif col.dtype == "string":
            out[col.name] = out[col.name].astype("string")
        elif col.dtype == "float64":
            out[col.name] = out[col.name].astype("float64")
    return out[frame_columns(kind)].reset_index(drop=True)


def series_info(kind_table: str, row: dict) -> SeriesInfo:
    """One inventory row -> SeriesInfo (see sql.inventory for the columns)."""
    instrument = Instrument(row["exchange"], row["market"], row["symbol"])
    if kind_table == "bars":
        kind = KIND_OF_PRICE_TYPE[row["price_type"]]
        timeframe = row["timeframe"]
    else:
        kind = next(k for k, spec in TABLES.items() if spec.table == kind_table)
        step = row.get("step_ms")
        periodic = kind not in (Kind.BOOK, Kind.TRADES, Kind.LIQUIDATIONS)
        timeframe = ms_to_timeframe(int(step)) if periodic and step else None
    first = pd.Timestamp(row["first"])
    last = pd.Timestamp(row["last"])
    gaps = row.get("gaps")
    return SeriesInfo(
        instrument=instrument,
        kind=kind,
        timeframe=timeframe,
        first=(first.tz_localize("UTC") if first.tzinfo is None else first).to_pydatetime(),
        last=(last.tz_localize("UTC") if last.tzinfo is None else last).to_pydatetime(),
        rows=int(row["rows"]),
        gaps=None if gaps is None or pd.isna(gaps) else int(gaps),
    )


def timeframe_lengths(timeframes: list[str]) -> dict[str, int]:
    return {tf: timeframe_ms(tf) for tf in timeframes}


def read_params(instrument: Instrument, kind: Kind, timeframe: str | None,
                start: object, end: object) -> list[object]:
    params: list[object] = [instrument.exchange, instrument.market, instrument.symbol]
    if kind in PRICE_TYPE:
        if not timeframe:
            raise ValueError(f"reading {kind.value} bars needs a timeframe")
        params += [timeframe, PRICE_TYPE[kind]]
    for bound in (start, end):
        if bound is not None:
            ts = pd.Timestamp(bound)
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
            params.append(ts)
    return params


__all__ = ["INSTRUMENT_COLUMNS", "canonical_frame", "read_params", "series_info",
           "staged_frame", "staged_table", "timeframe_lengths", "write_spec"]
