"""The live crash test: 200 order lifecycles against the fake exchange with ``kill -9``
before the request, after it before the answer is stored, after a fill before it is
stored, during reconciliation and at random moments, each followed by a restart.
The venue must hold 0 duplicate orders, the journal must hold every venue fill, and
positions and wallet must equal the venue's after the final reconciliation."""

from __future__ import annotations

from pathlib import Path

from perptrader.trading.drill import run_drill


def test_two_hundred_lifecycles_survive_kill_9(tmp_path: Path) -> None:
    report = run_drill(200, workdir=tmp_path, seed=11)
    print("\n".join(report.lines()))
    assert report.lifecycles >= 200
    # every kind of kill happened, and restarts followed each
    assert set(report.kills) >= {"before_send", "after_send", "after_fill", "reconcile",
                                 "random"}, report.kills
    assert report.duplicate_client_ids == 0
    assert report.duplicate_decisions == 0
    assert report.orders_unknown_to_journal == 0
    assert report.lost_fills == 0
    assert report.journal_fills == report.venue_trades
    assert report.position_venue == report.position_journal == report.position_table
    assert abs(report.wallet_venue - report.wallet_journal) < 1e-6
    assert report.ok
