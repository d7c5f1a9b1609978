"""The position ledger against hand-computed numbers."""

from __future__ import annotations

import pytest

from perptrader.trading.orders import OrderSide
from perptrader.trading.positions import Position


def test_open_add_reduce_close_long() -> None:
    p = Position("BTCUSDT")
    assert p.apply_fill("buy", 1.0, 100.0, fee=0.05) == 0.0
    assert (p.qty, p.avg_entry_price) == (1.0, 100.0)
    p.apply_fill(OrderSide.BUY, 3.0, 120.0, fee=0.1)
    assert p.qty == 4.0 and p.avg_entry_price == pytest.approx(115.0)  # (100 + 360) / 4
    assert p.unrealized_pnl(125.0) == pytest.approx(40.0)
    assert p.notional(125.0) == pytest.approx(500.0)
    realized = p.apply_fill("sell", 1.5, 135.0)
    assert realized == pytest.approx(30.0)  # 1.5 * (135 - 115)
    assert p.qty == 2.5 and p.avg_entry_price == pytest.approx(115.0)  # unchanged on reduce
    realized = p.apply_fill("sell", 2.5, 105.0, fee=0.02)
    assert realized == pytest.approx(-25.0)
    assert p.is_flat and p.avg_entry_price == 0.0 and p.side == 0
    assert p.realized_pnl == pytest.approx(5.0)
    assert p.fees == pytest.approx(0.17)
    assert p.net_pnl == pytest.approx(5.0 - 0.17)
    assert p.unrealized_pnl(1e6) == 0.0


def test_short_and_flip() -> None:
    p = Position("ETHUSDT")
    p.apply_fill("sell", 2.0, 50.0)
    assert p.qty == -2.0 and p.side == -1
    assert p.unrealized_pnl(45.0) == pytest.approx(10.0)
    assert p.notional(45.0) == pytest.approx(-90.0)
    p.apply_fill("sell", 2.0, 60.0)
    assert p.avg_entry_price == pytest.approx(55.0)
    # flip: buy 6 at 40 closes the 4 short (+60) and opens 2 long at 40
    assert p.apply_fill("buy", 6.0, 40.0) == pytest.approx(60.0)
    assert p.qty == pytest.approx(2.0) and p.avg_entry_price == 40.0 and p.side == 1
    # flip back: sell 3 at 30 closes 2 long (-20) and opens 1 short at 30
    assert p.apply_fill("sell", 3.0, 30.0) == pytest.approx(-20.0)
    assert p.qty == pytest.approx(-1.0) and p.avg_entry_price == 30.0
    assert p.realized_pnl == pytest.approx(40.0)


def test_close_with_float_dust_is_flat() -> None:
    p = Position("X")
    for _ in range(10):
        p.apply_fill("buy", 0.1, 10.0)
    p.apply_fill("sell", 1.0, 11.0)
    assert p.qty == 0.0 and p.avg_entry_price == 0.0
    assert p.realized_pnl == pytest.approx(1.0)


def test_funding() -> None:
    p = Position("X")
    p.apply_fill("buy", 2.0, 100.0)
    due = p.funding_due(rate=0.0001, mark=110.0)
    assert due == pytest.approx(-0.022)  # a long pays a positive rate
    p.apply_funding(due)
    short = Position("Y", qty=-2.0, avg_entry_price=100.0)
    assert short.funding_due(0.0001, 110.0) == pytest.approx(0.022)
    p.apply_funding(0.5)
    assert p.funding == pytest.approx(0.478)
    assert p.net_pnl == pytest.approx(0.478)


def test_round_trip_and_validation() -> None:
    p = Position("X")
    p.apply_fill("sell", 1.0, 10.0, fee=0.01)
    assert Position.from_dict(p.to_dict()) == p
    for args in [("buy", 0.0, 1.0), ("buy", 1.0, 0.0), ("buy", float("nan"), 1.0),
                 ("buy", 1.0, float("inf"))]:
        with pytest.raises(ValueError):
            p.apply_fill(*args)
    with pytest.raises(ValueError):
        p.apply_fill("hold", 1.0, 1.0)
    with pytest.raises(ValueError):
        p.apply_funding(float("nan"))
