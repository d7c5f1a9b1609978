"""SQL shared by the stores: upsert, change counting, reads and the inventory.

Both backends stage incoming rows in a table named ``staged`` (DuckDB registers an
Arrow table, PostgreSQL COPYs into a temporary table) and then run the same statements,
so the merge rules cannot drift apart between the embedded and production stores.
"""

from __future__ import annotations

from perptrader.marketdata.kinds import INSTRUMENT_COLUMNS, TableSpec


def pk(spec: TableSpec) -> list[str]:
    return [*INSTRUMENT_COLUMNS, *spec.key_names]


def all_columns(spec: TableSpec) -> list[str]:
    return [*INSTRUMENT_COLUMNS, *spec.column_names]


def _join(spec: TableSpec, left: str, right: str) -> str:
    return " AND ".join(f"{left}.{c} = {right}.{c}" for c in pk(spec))


def change_condition(spec: TableSpec, new: str, old: str) -> str:
    """True where merging ``new`` into ``old`` would change the stored row."""
    if spec.merge == "overwrite":
        return " OR ".join(f"({new}.{c} IS DISTINCT FROM {old}.{c})" for c in spec.value_names)
    fills = [f"({old}.{c} IS NULL AND {new}.{c} IS NOT NULL)" for c in spec.value_names]
    if spec.merge == "larger_volume":
        fills.insert(0, f"(COALESCE({new}.volume, -1) > COALESCE({old}.volume, -1))")
    return " OR ".join(fills)


def merged_value(spec: TableSpec, column: str, new: str, old: str) -> str:
    if spec.merge == "overwrite":  # data import --on-conflict replace: the file's row wins
        return f"{new}.{column}"
    if spec.merge == "larger_volume":
        return (
            f"CASE WHEN COALESCE({new}.volume, -1) > COALESCE({old}.volume, -1) "
            f"THEN COALESCE({new}.{column}, {old}.{column}) "
            f"ELSE COALESCE({old}.{column}, {new}.{column}) END"
        )
    return f"COALESCE({old}.{column}, {new}.{column})"


def count_new(spec: TableSpec) -> str:
    return (
        f"SELECT count(*) FROM staged s WHERE NOT EXISTS "
        f"(SELECT 1 FROM {spec.table} t WHERE {_join(spec, 's', 't')})"
    )


def count_changed(spec: TableSpec) -> str:
    return (
        f"SELECT count(*) FROM staged s JOIN {spec.table} t ON {_join(spec, 's', 't')} "
        f"WHERE {change_condition(spec, 's', 't')}"
    )


def insert(spec: TableSpec) -> str:
    """Insert every staged row: fails on a key stored already (DuckDB's optimistic path,
    which then falls back to ``insert_new`` + ``upsert``)."""
    cols = ", ".join(all_columns(spec))
    return f"INSERT INTO {spec.table} ({cols}) SELECT {cols} FROM staged"


def insert_new(spec: TableSpec) -> str:
    """Insert the staged rows whose key is not stored yet; the others are left alone
    (``upsert`` then merges them). Its row count is ``count_new``'s."""
    cols = ", ".join(all_columns(spec))
    return (
        f"INSERT INTO {spec.table} ({cols}) SELECT {cols} FROM staged "
        f"ON CONFLICT ({', '.join(pk(spec))}) DO NOTHING"
    )


def upsert(spec: TableSpec) -> str:
    cols = ", ".join(all_columns(spec))
    sets = ", ".join(
        f"{c} = {merged_value(spec, c, 'excluded', spec.table)}" for c in spec.value_names
    )
    return (
        f"INSERT INTO {spec.table} ({cols}) SELECT {cols} FROM staged "
        f"ON CONFLICT ({', '.join(pk(spec))}) DO UPDATE SET {sets} "
        f"WHERE {change_condition(spec, 'excluded', spec.table)}"
    )


def select(spec: TableSpec, columns: list[str], *, bars: bool, start: bool, end: bool,
           placeholder: str = "?") -> str:
    """Time-ordered read of one instrument. Parameters, in order: exchange, market,
    symbol, [timeframe, price_type], [start], [end]."""
    ph = _placeholders(placeholder)
    where = [f"exchange = {next(ph)}", f"market = {next(ph)}", f"symbol = {next(ph)}"]
    if bars:
        where += [f"timeframe = {next(ph)}", f"price_type = {next(ph)}"]
    if start:
        where.append(f"ts >= {next(ph)}")
    if end:
        where.append(f"ts < {next(ph)}")
    order = ", ".join(c for c in spec.key_names if c not in ("timeframe", "price_type"))
    return (
        f"SELECT {', '.join(columns)} FROM {spec.table} WHERE {' AND '.join(where)} "
        f"ORDER BY {order}"
    )


def delete(spec: TableSpec, *, bars: bool, start: bool, end: bool, count_only: bool = False,
           placeholder: str = "?") -> str:
    """Remove (or count) one instrument's rows of a table in [start, end). Parameters as
    for ``select``."""
    ph = _placeholders(placeholder)
    where = [f"exchange = {next(ph)}", f"market = {next(ph)}", f"symbol = {next(ph)}"]
    if bars:
        where += [f"timeframe = {next(ph)}", f"price_type = {next(ph)}"]
    if start:
        where.append(f"ts >= {next(ph)}")
    if end:
        where.append(f"ts < {next(ph)}")
    head = "SELECT count(*) FROM" if count_only else "DELETE FROM"
    return f"{head} {spec.table} WHERE {' AND '.join(where)}"


def _placeholders(style: str):
    n = 0
    while True:
        n += 1
        yield f"${n}" if style == "$" else style


def inventory(spec: TableSpec, epoch_ms: str, timeframes: dict[str, int]) -> str:
    """Per series: first, last, rows, median step and the number of gaps.

    ``epoch_ms`` is the dialect's template for a timestamp's epoch milliseconds with
    ``{}`` where the expression goes; ``timeframes`` maps the bar timeframes present to
    their length in ms. A gap is a step longer than 1.5x the expected step: the
    timeframe for bars, the row's own funding interval for funding, the median step for
    other periodic series. Event streams (book snapshots, trades, liquidations) report
    gaps as NULL. Output: exchange, market, symbol, timeframe, price_type, first, last,
    rows, step_ms, gaps.
    """
    group = list(INSTRUMENT_COLUMNS)
    is_bars = spec.table == "bars"
    if is_bars:
        group += ["timeframe", "price_type"]
    part = ", ".join(group)
    distinct = "DISTINCT " if spec.table == "book_snapshots" else ""
    extra = ", interval_hours" if spec.table == "funding" else ""
    lagged = epoch_ms.format(f"lag(ts) OVER (PARTITION BY {part} ORDER BY ts)")
    if is_bars:
        cases = " ".join(f"WHEN '{tf}' THEN {ms}" for tf, ms in timeframes.items())
        expected = f"(CASE s.timeframe {cases} END)" if cases else "NULL"
    elif spec.table == "funding":
        expected = "3600000 * s.interval_hours"
    else:
        expected = "m.step_ms"
    event = spec.table in ("book_snapshots", "trades", "liquidations")
    gaps = "NULL" if event else f"sum(CASE WHEN s.d > 1.5 * {expected} THEN 1 ELSE 0 END)"
    tf_cols = "s.timeframe, s.price_type" if is_bars else "NULL AS timeframe, NULL AS price_type"
    return f"""
WITH base AS (SELECT {distinct}{part}, ts{extra} FROM {spec.table}),
steps AS (SELECT *, {epoch_ms.format("ts")} - {lagged} AS d FROM base),
med AS (
  SELECT {part}, percentile_disc(0.5) WITHIN GROUP (ORDER BY d) AS step_ms
  FROM steps WHERE d > 0 GROUP BY {part}
)
SELECT s.exchange, s.market, s.symbol, {tf_cols},
       min(s.ts) AS first, max(s.ts) AS last, count(*) AS rows,
       max(m.step_ms) AS step_ms, {gaps} AS gaps
FROM steps s LEFT JOIN med m ON {" AND ".join(f"s.{c} = m.{c}" for c in group)}
GROUP BY {", ".join("s." + c for c in group)}
ORDER BY {", ".join("s." + c for c in group)}
"""
