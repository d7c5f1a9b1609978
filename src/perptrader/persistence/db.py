"""Open the trading database and hand out transactions and readers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import sqlalchemy as sa

from perptrader.persistence.audit import AuditReport, verify_audit
from perptrader.persistence.engine import (
    BEGIN_OPTION,
    BUSY_TIMEOUT_MS,
    Synchronous,
    Target,
    create_engine,
    parse_target,
)
from perptrader.persistence.errors import TradingStateError, db_reason
from perptrader.persistence.filecheck import check_sqlite_file
from perptrader.persistence.migrate import (
    VERSION_TABLE,
    current_revision,
    known_revisions,
    upgrade_to_head,
)
from perptrader.persistence.models import TABLES
from perptrader.persistence.readers import Reader
from perptrader.persistence.tx import Tx

#: what to tell a user whose configured database cannot be used
_MOVE_HINT = "move it away or point PERPTRADER__TRADING__DB_URL elsewhere"


def open_trading_db(url: str | None = None, data_dir: Path | str = Path("user_data"), *,
                    create: bool = True, synchronous: Synchronous = "FULL") -> TradingDB:
    """Open (and migrate to head) the trading database at ``url``: None for
    ``<data_dir>/trading.sqlite``, ``sqlite:///path`` (or a plain path), or
    ``postgresql://user@host/db[?schema=name]``.

    ``create=False`` opens only an existing trading database (``perptrader audit verify``
    must not leave an empty one behind). ``synchronous``: SQLite's fsync policy (see
    ``persistence.engine``). Raises ``TradingStateError`` with one line for anything
    that is not a usable trading database; a bad file is left untouched."""
    target = parse_target(url, data_dir)
    if target.path is not None:
        _prepare_sqlite_file(target, create)
    engine = create_engine(target, synchronous=synchronous)
    try:
        if target.backend == "postgresql" and create and target.schema:
            _create_schema(engine, target)
        _migrate(engine, target, create)
    except BaseException:
        engine.dispose()
        raise
    return TradingDB(engine, target)


def _prepare_sqlite_file(target: Target, create: bool) -> None:
    assert target.path is not None
    problem = check_sqlite_file(target.path)
    if problem:
        raise TradingStateError(
            f"{target.display} is not a valid trading database ({problem}); {_MOVE_HINT}")
    if not target.path.exists():
        if not create:
            raise TradingStateError(f"no trading database at {target.display}")
        try:
            target.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TradingStateError(f"cannot create the folder of {target.display}: "
                                    f"{exc.strerror or exc}") from exc


def _create_schema(engine: sa.Engine, target: Target) -> None:
    try:
        with engine.connect() as conn:
            exists = conn.execute(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :s"),
                                  {"s": target.schema}).first()
            if not exists:
                conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{target.schema}"')
                conn.commit()
    except sa.exc.IntegrityError:
        pass  # created at the same moment by another process
    except sa.exc.SQLAlchemyError as exc:
        raise _open_error(target, exc) from exc


def _migrate(engine: sa.Engine, target: Target, create: bool) -> None:
    """Migrate to head in one transaction that holds the writers' lock (SQLite: BEGIN
    IMMEDIATE; PostgreSQL: an advisory lock), so that processes opening the same
    database at once migrate it once; refuse a schema that is not ours."""
    try:
        with engine.connect() as conn:
            conn.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                if target.backend == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                                 {"key": f"perptrader.trading.migrate.{target.schema or ''}"})
                _check_schema(conn, target, create)
                upgrade_to_head(conn)
    except TradingStateError:
        raise
    except sa.exc.SQLAlchemyError as exc:
        raise _open_error(target, exc) from exc


def _check_schema(conn: sa.Connection, target: Target, create: bool) -> None:
    names = set(sa.inspect(conn).get_table_names())
    if VERSION_TABLE not in names:
        ours = sorted(names & set(TABLES))
        if ours:
            raise TradingStateError(
                f"{target.display} is not a valid trading database (it holds tables not "
                f"created by perptrader's migrations: {', '.join(ours[:5])}); {_MOVE_HINT}")
        if not create:
            raise TradingStateError(f"no trading database at {target.display} "
                                    "(its tables were never created)")
        return
    revision = current_revision(conn)
    if revision is not None and revision not in known_revisions():
        raise TradingStateError(
            f"{target.display} has trading schema revision {revision}, unknown to this "
            "perptrader (written by a newer version?); upgrade perptrader")


def _open_error(target: Target, exc: sa.exc.SQLAlchemyError) -> TradingStateError:
    reason = db_reason(exc)
    if target.backend == "postgresql":
        return TradingStateError(f"cannot open the trading database {target.display}: {reason}")
    return TradingStateError(f"{target.display} is not a valid trading database ({reason}); "
                             f"{_MOVE_HINT}")


class TradingDB(Reader):
    """The trading database: ``transaction()`` for writes, the ``Reader`` methods for
    reads (each in its own short transaction), ``verify_audit()``. Thread-safe (a pool of
    connections); close it, or use it as a context manager."""

    def __init__(self, engine: sa.Engine, target: Target) -> None:
        self._engine: sa.Engine | None = engine
        self.target = target

    @property
    def backend(self) -> str:
        return self.target.backend

    @property
    def url(self) -> str:
        """Where the database is, for messages (the path, or the URL without password)."""
        return self.target.display

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            raise TradingStateError(f"the trading database {self.url} is closed")
        return self._engine

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A write transaction: commits when the block ends, rolls back on an exception.
        On SQLite it holds the write lock from its start (waiting up to
        ``BUSY_TIMEOUT_MS`` for another writer); keep it short: no network I/O inside."""
        with self._errors(), self.engine.connect() as conn:
            conn.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})
            trans = conn.begin()
            tx = Tx(conn, self.url)
            try:
                yield tx
            except BaseException:
                tx._close()
                with contextlib.suppress(sa.exc.SQLAlchemyError):
                    trans.rollback()
                raise
            tx._close()
            if tx.failed:
                trans.rollback()
                raise TradingStateError(f"{self.url}: a statement of this transaction failed "
                                        "(error caught inside the block); nothing was committed")
            trans.commit()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        with self._errors(), self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sa.Connection]:
        """One consistent read snapshot (PostgreSQL: REPEATABLE READ; SQLite: a read
        transaction, a snapshot of the WAL), for checks that read several tables."""
        with self._errors(), self.engine.connect() as conn:
            if self.backend == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Database failures (locked for longer than the busy timeout, connection lost,
        disk full, a corrupted page) become one-line ``TradingStateError``s; other
        exceptions (the caller's own) pass unchanged."""
        try:
            yield
        except sa.exc.SQLAlchemyError as exc:
            reason = db_reason(exc)
            if "locked" in reason:
                reason += f" (another writer held it for over {BUSY_TIMEOUT_MS // 1000} s)"
            raise TradingStateError(f"{self.url}: {reason}") from exc

    def verify_audit(self) -> AuditReport:
        return verify_audit(self)

    def close(self) -> None:
        """Dispose of the pool (idempotent). On SQLite the last connection to close
        checkpoints the WAL into the main file."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> TradingDB:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TradingDB({self.url!r})"

