"""One symbol's position rebuilt from its fills (average-cost ledger, as the venues do).

Binance and Bybit keep one net position per symbol (one-way mode) at an average entry
price; a fill against the position realises PnL on the closed part only, and a fill
larger than the position flips it, the remainder opening at the fill price. Rebuilding
the same numbers from our own fills lets the engines check the venue's figures and lets
the paper engine report them without a venue at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from perptrader.trading.orders import OrderSide

#: relative size below which what is left of a position is rounding, i.e. flat
FLAT_RTOL = 1e-9


@dataclass
class Position:
    """Signed ``qty`` (+ long, - short) at ``avg_entry_price`` (0.0 while flat).

    ``realized_pnl`` is gross (price PnL of the closed parts only); ``fees`` are paid
    (+) or rebated (-); ``funding`` is received (+) or paid (-), the sign convention of
    ``sim.StepReport``. ``net_pnl`` = realized - fees + funding.
    """

    symbol: str
    qty: float = 0.0
    avg_entry_price: float = 0.0
    realized_pnl: float = 0.0
    fees: float = 0.0
    funding: float = 0.0

    @property
    def is_flat(self) -> bool:
        return self.qty == 0.0

    @property
    def side(self) -> int:
        """+1 long, -1 short, 0 flat."""
        return (self.qty > 0) - (self.qty < 0)

    @property
    def net_pnl(self) -> float:
        return self.realized_pnl - self.fees + self.funding

    def unrealized_pnl(self, mark: float) -> float:
        return self.qty * (mark - self.avg_entry_price) if self.qty else 0.0

    def notional(self, mark: float) -> float:
        """Signed notional at ``mark`` (negative for a short), as ``sim`` reports it."""
        return self.qty * mark

    def apply_fill(self, side: OrderSide | str, qty: float, price: float,
                   fee: float = 0.0) -> float:
        """Book one fill; returns the gross PnL it realised (0 when it only adds)."""
        side = OrderSide(side)
        if not (math.isfinite(qty) and qty > 0):
            raise ValueError(f"{self.symbol}: fill qty must be > 0 and finite, got {qty!r}")
        if not (math.isfinite(price) and price > 0):
            raise ValueError(f"{self.symbol}: fill price must be > 0 and finite, "
                             f"got {price!r}")
        if not math.isfinite(fee):
            raise ValueError(f"{self.symbol}: fee must be finite, got {fee!r}")
        self.fees += fee
        delta = side.sign * qty
        old = self.qty
        if old == 0.0 or (old > 0) == (delta > 0):  # open or add
            new = old + delta
            self.avg_entry_price = (abs(old) * self.avg_entry_price + qty * price) / abs(new)
            self.qty = new
            return 0.0
        closed = min(qty, abs(old))
        realized = closed * (price - self.avg_entry_price) * (1 if old > 0 else -1)
        self.realized_pnl += realized
        new = old + delta
        if abs(new) <= FLAT_RTOL * max(abs(old), qty):  # closed exactly
            self.qty, self.avg_entry_price = 0.0, 0.0
        elif (new > 0) == (old > 0):  # reduced
            self.qty = new
        else:  # flipped: the remainder opens at this fill's price
            self.qty, self.avg_entry_price = new, price
        return realized

    def apply_funding(self, amount: float) -> None:
        """Book a funding payment: + received, - paid."""
        if not math.isfinite(amount):
            raise ValueError(f"{self.symbol}: funding must be finite, got {amount!r}")
        self.funding += amount

    def funding_due(self, rate: float, mark: float) -> float:
        """What this position receives (+) or pays (-) at a funding ``rate`` and ``mark``:
        longs pay a positive rate, shorts receive it."""
        return -self.qty * mark * rate

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Position:
        return cls(**data)
