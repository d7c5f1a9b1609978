"""THE policy interface: one object decides in backtests, RL evaluation, paper and live.

A policy turns bars into one TARGET EXPOSURE per bar (signed notional / equity, before
leverage): +1 = fully long, -1 = fully short, 0 = flat, NaN = keep whatever is held.
The target of bar t is decided at the CLOSE of bar t from rows <= t only; the account
fills it at a later bar's open.

It answers in two ways, and they must agree to the float:

* ``targets(frame)``: the batch form, every bar of a frame at once (backtests);
* ``decide(bars, account)``: the per-bar form (paper and live trading). ``bars`` holds
  every bar the caller has, from the start of its history up to the bar that has just
  closed; ``account`` is a read-only view of the account the policy trades.

The contract: ``decide(frame[: t + 1], view) == targets(frame)[t]`` for every t, when the
view is the account the batch form assumes (only ``rl:`` policies read it). Two
properties make that hold: the batch form has no look-ahead (``targets(frame[: t + 1])``
equals ``targets(frame)[: t + 1]``; ``strategies lookahead-check`` proves it), and
``decide`` computes what ``targets(bars)[-1]`` would (``PolicyBase`` does exactly that;
a policy may keep state between calls to do it faster, as long as it gives the same
number). ``tests/strategies/test_one_policy.py`` checks every registered policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class AccountView:
    """What a policy may know of the account it trades, as of the close of ``ts``.

    Values come from the accounting core (``sim.Account`` for paper, the venue for live).
    ``target`` is the last target this policy's caller sent (NaN before the first);
    ``bars_in_position`` counts bars since the position was opened from flat (-1 when
    flat); ``peak_equity`` is the high-water mark since the run began.
    """

    ts: pd.Timestamp
    equity: float
    initial_equity: float
    wallet_balance: float
    position_qty: float
    entry_price: float
    mark_price: float
    close_price: float
    unrealized_pnl: float
    position_margin: float
    maintenance_margin: float
    peak_equity: float
    bars_in_position: int
    target: float = math.nan
    leverage: float = 1.0

    @property
    def exposure(self) -> float:
        """Signed position notional at the mark over equity."""
        return self.position_qty * self.mark_price / self.equity if self.equity > 0 else 0.0

    @property
    def margin_ratio(self) -> float:
        """Maintenance margin over the position's margin balance (1 = liquidation)."""
        if self.position_qty == 0.0:
            return 0.0
        balance = self.position_margin + self.unrealized_pnl
        return self.maintenance_margin / balance if balance > 0 else math.inf

    @property
    def drawdown(self) -> float:
        return 1.0 - self.equity / self.peak_equity if self.peak_equity > 0 else 0.0

    @classmethod
    def flat(cls, ts: pd.Timestamp, equity: float, close: float = math.nan,
             leverage: float = 1.0) -> AccountView:
        """A flat account holding ``equity`` (before any trade)."""
        return cls(ts=ts, equity=equity, initial_equity=equity, wallet_balance=equity,
                   position_qty=0.0, entry_price=0.0, mark_price=close, close_price=close,
                   unrealized_pnl=0.0, position_margin=0.0, maintenance_margin=0.0,
                   peak_equity=equity, bars_in_position=-1, leverage=leverage)


@runtime_checkable
class Policy(Protocol):
    """What every strategy, model policy and RL agent provides (see the module doc)."""

    #: registry name, e.g. ``sma_cross`` or ``model:gbdt-1h``
    name: str

    @property
    def params(self) -> dict[str, Any]:
        """The parameters that fully determine the targets (written to result.json)."""
        ...

    @property
    def warmup_bars(self) -> int:
        """Bars of history before the first bar whose target means anything; the paper
        engine loads at least this many bars before its first decision."""
        ...

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        """float64 target exposure per row of ``frame``."""
        ...

    def decide(self, bars: pd.DataFrame, account: AccountView) -> float:
        """The target of the last row of ``bars`` (the bar that has just closed)."""
        ...


class PolicyBase:
    """Defaults for a policy: no warm-up and ``decide`` = the batch target of the last
    bar. Correct for every causal policy; subclasses override ``decide`` with a faster
    path that gives the same number."""

    name: str = "policy"

    @property
    def params(self) -> dict[str, Any]:
        return {}

    @property
    def warmup_bars(self) -> int:
        return 0

    def targets(self, frame: pd.DataFrame) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def decide(self, bars: pd.DataFrame, account: AccountView) -> float:
        if len(bars) == 0:
            raise ValueError(f"{self.name}: decide needs at least one bar")
        return float(np.asarray(self.targets(bars), dtype=np.float64)[-1])


def close_prices(frame: pd.DataFrame) -> np.ndarray:
    """The close column as float64, refusing a frame without one."""
    if "close" not in frame.columns:
        raise ValueError("the frame has no 'close' column")
    return frame["close"].to_numpy(dtype=np.float64, na_value=np.nan)


def parse_bool(value: object) -> bool:
    """``true/false/1/0/yes/no`` from the CLI's ``--param key=value`` strings."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def unknown_params(given: Mapping[str, object], known: set[str], name: str) -> None:
    extra = sorted(set(given) - known)
    if extra:
        raise ValueError(f"strategy {name!r} has no parameter(s) {extra}; "
                         f"it takes {sorted(known)}")
