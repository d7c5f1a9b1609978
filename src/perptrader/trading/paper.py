"""The paper broker: orders fill through ``sim``'s accounting core.

One ``sim.Account`` per symbol (the backtester's kernel: fees, slippage, funding at
settlements, mark price, margin tiers, liquidation). A market order for a target
exposure is queued at a bar's close and fills at the next open, sized on the equity at
that open, exactly as a backtest target fills; so a paper run and a backtest of the
same decisions produce the same fills to the float.

Several symbols: each trades a sub-account holding its share of the cash (isolated
margin). ``backtest run`` with several symbols shares one cross-margin wallet instead;
the per-symbol paper figures equal single-symbol backtests at that share of the cash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from perptrader.sim import Account, SimConfig, StepReport
from perptrader.sim.market import BarInput
from perptrader.strategies import AccountView


@dataclass
class SymbolBook:
    """What the engine tracks per symbol besides the account itself."""

    bars_done: int = 0
    entry_bar: int = -1
    peak_equity: float = math.nan

    def as_dict(self) -> dict[str, float]:
        return {"bars_done": self.bars_done, "entry_bar": self.entry_bar,
                "peak_equity": self.peak_equity}

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> SymbolBook:
        return cls(bars_done=int(data["bars_done"]), entry_bar=int(data["entry_bar"]),
                   peak_equity=float(data["peak_equity"]))


class PaperBroker:
    """Accounts per symbol, advanced by closed bars, taking target orders at closes."""

    venue = "paper"

    def __init__(self, configs: dict[str, SimConfig], timeframe: str,
                 accounts: dict[str, Account] | None = None,
                 books: dict[str, SymbolBook] | None = None) -> None:
        self.configs = configs
        self.timeframe = timeframe
        self.accounts = accounts or {s: Account(c, s, timeframe=timeframe)
                                     for s, c in configs.items()}
        self.books = books or {s: SymbolBook(peak_equity=c.initial_cash)
                               for s, c in configs.items()}

    # ---- bars ----------------------------------------------------------------------------
    def advance(self, symbol: str, bar: BarInput) -> StepReport:
        """The bar has closed: fill what is due at its open, run stops, funding and
        liquidation, mark at the close."""
        acc = self.accounts[symbol]
        book = self.books[symbol]
        before = acc.position
        report = acc.advance(bar)
        if before == 0.0 and acc.position != 0.0:
            book.entry_bar = book.bars_done
        elif acc.position == 0.0:
            book.entry_bar = -1
        book.peak_equity = max(book.peak_equity, acc.equity)
        book.bars_done += 1
        return report

    # ---- orders --------------------------------------------------------------------------
    def submit_target(self, symbol: str, target: float) -> bool:
        """Queue a market order for ``target`` exposure at the next open; False when the
        account already holds that decision (nothing to send)."""
        return not math.isnan(self.accounts[symbol].queue(target))

    def no_order(self, symbol: str) -> None:
        """Close the bar without an order."""
        self.accounts[symbol].queue(math.nan)

    def cancel(self, symbol: str) -> bool:
        return self.accounts[symbol].cancel_queued()

    # ---- what a policy sees --------------------------------------------------------------
    def view(self, symbol: str, ts: pd.Timestamp) -> AccountView:
        acc = self.accounts[symbol]
        book = self.books[symbol]
        bar_no = book.bars_done - 1
        return AccountView(
            ts=ts, equity=acc.equity, initial_equity=acc.config.initial_cash,
            wallet_balance=acc.wallet_balance, position_qty=acc.position,
            entry_price=acc.entry_price, mark_price=acc.mark_price,
            close_price=acc.close_price, unrealized_pnl=acc.unrealized_pnl,
            position_margin=acc.position_margin,
            maintenance_margin=acc.maintenance_margin(),
            peak_equity=book.peak_equity,
            bars_in_position=bar_no - book.entry_bar if book.entry_bar >= 0 else -1,
            target=acc.last_decision, leverage=acc.config.leverage)

    @property
    def equity(self) -> float:
        return sum(a.equity for a in self.accounts.values())

    # ---- checkpoint ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, bytes]:
        return {s: a.snapshot() for s, a in self.accounts.items()}

    @classmethod
    def restore(cls, configs: dict[str, SimConfig], timeframe: str,
                blobs: dict[str, bytes], books: dict[str, dict[str, float]]) -> PaperBroker:
        accounts = {s: Account.restore(blobs[s], c, s, timeframe=timeframe)
                    for s, c in configs.items()}
        return cls(configs, timeframe, accounts,
                   {s: SymbolBook.from_dict(books[s]) for s in configs})
