"""The trading state of paper and live runs, and a hash-chained audit log.

One relational database (a SQLite file by default, PostgreSQL by URL) holds runs,
orders and their events, fills, positions, the equity curve, policy decisions, named
run state (kill switch, checkpoints) and the append-only audit log. The trading engine
imports this package, not the other way round: only plain values and dicts go in.

    db = open_trading_db(settings.trading.db_url, settings.data_dir)
    with db.transaction() as tx:              # all or nothing
        tx.insert_order({...})                # the intent, before the order is sent
        tx.audit("order.intent", {...}, run_id=run_id, ts=bar_ts)
    report = db.verify_audit()
"""

from perptrader.persistence.audit import AuditReport, verify_audit
from perptrader.persistence.codec import now_ms, to_ms
from perptrader.persistence.db import TradingDB, open_trading_db
from perptrader.persistence.errors import DuplicateError, TradingStateError
from perptrader.persistence.models import GENESIS_HASH, TERMINAL_ORDER_STATUSES
from perptrader.persistence.readers import StateEntry
from perptrader.persistence.tx import RUN_MODES, Tx

__all__ = [
    "GENESIS_HASH",
    "RUN_MODES",
    "TERMINAL_ORDER_STATUSES",
    "AuditReport",
    "DuplicateError",
    "StateEntry",
    "TradingDB",
    "TradingStateError",
    "Tx",
    "now_ms",
    "open_trading_db",
    "to_ms",
    "verify_audit",
]
