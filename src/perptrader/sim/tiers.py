"""Maintenance-margin tiers (leverage brackets) as data, per symbol.

Binance sets the maintenance margin of a USDⓈ-M position by notional bracket:
``MM = notional * mmr_k - cum_k`` for the bracket ``k`` holding the notional, and caps
leverage per bracket. The tables live in ``data/binance_usdm_tiers.json`` (source and
date inside the file) so they can be refreshed without touching code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from perptrader.core.errors import PerptraderError

_FILES = {"binance": "binance_usdm_tiers.json"}


@dataclass(frozen=True)
class MarginTiers:
    """One symbol's brackets, sorted by notional floor (arrays of equal length)."""

    symbol: str
    notional_floor: np.ndarray
    notional_cap: np.ndarray
    max_leverage: np.ndarray
    mmr: np.ndarray
    cum: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.notional_floor)
        arrays = (self.notional_cap, self.max_leverage, self.mmr, self.cum)
        if n == 0 or any(len(a) != n for a in arrays):
            raise ValueError(f"tiers of {self.symbol}: empty or ragged bracket arrays")
        if self.notional_floor[0] != 0.0 or np.any(self.notional_cap[:-1]
                                                   != self.notional_floor[1:]):
            raise ValueError(f"tiers of {self.symbol}: brackets must start at 0 and be "
                             f"contiguous (cap_k == floor_k+1)")

    def bracket(self, notional: float) -> int:
        """Index of the bracket holding ``notional`` (floor inclusive, last one open-ended)."""
        k = int(np.searchsorted(self.notional_cap, abs(notional), side="right"))
        return min(k, len(self.notional_cap) - 1)

    def maintenance_margin(self, notional: float) -> float:
        k = self.bracket(notional)
        return abs(notional) * float(self.mmr[k]) - float(self.cum[k])

    def max_notional(self, leverage: float) -> float:
        """Largest notional a position may reach at ``leverage`` (Binance rejects beyond)."""
        ok = np.nonzero(self.max_leverage >= leverage)[0]
        if len(ok) == 0:
            raise PerptraderError(
                f"leverage {leverage} exceeds the maximum {self.max_leverage.max():g}x "
                f"of {self.symbol}")
        return float(self.notional_cap[ok[-1]])

    def as_array(self) -> np.ndarray:
        """(K, 4) float64: floor, cap, mmr, cum, the kernel's layout."""
        return np.column_stack([self.notional_floor, self.notional_cap, self.mmr,
                                self.cum]).astype(np.float64)


@cache
def _table(exchange: str) -> dict:
    name = _FILES.get(exchange.lower())
    if name is None:
        raise PerptraderError(f"no margin tiers for exchange {exchange!r} "
                              f"(known: {', '.join(_FILES)})")
    text = resources.files("perptrader.sim").joinpath("data", name).read_text("utf-8")
    return json.loads(text)


def load_tiers(exchange: str, symbol: str, *, allow_default: bool = False) -> MarginTiers:
    """The published brackets of ``symbol`` (e.g. ``"BTCUSDT"``).

    An unknown symbol is an error unless ``allow_default``: then the file's conservative
    ``DEFAULT`` ladder is returned and its ``source`` says so, so results computed with it
    can never pass for exchange-exact ones.
    """
    table = _table(exchange)
    key = symbol.upper().replace("/", "").replace(":USDT", "")
    rows = table["symbols"].get(key)
    source = f"{exchange}:{key} ({table['_source'][:60]}...)"
    if rows is None:
        if not allow_default:
            known = sorted(k for k in table["symbols"] if k != "DEFAULT")
            raise PerptraderError(
                f"no {exchange} margin tiers for {symbol!r} (known: {', '.join(known)}). "
                f"Pass SimConfig(tiers=...) or load_tiers(..., allow_default=True) for the "
                f"documented conservative default ladder.")
        rows, source = table["symbols"]["DEFAULT"], f"{exchange}:DEFAULT (not published)"
    rows = sorted(rows, key=lambda r: r["notional_floor"])

    def col(name: str) -> np.ndarray:
        return np.array([float(r[name]) for r in rows], dtype=np.float64)

    return MarginTiers(symbol=key, notional_floor=col("notional_floor"),
                       notional_cap=col("notional_cap"), max_leverage=col("max_leverage"),
                       mmr=col("mmr"), cum=col("cum"), source=source)


def liquidation_price(wallet_balance: float, qty: float, entry_price: float, mmr: float,
                      cum: float) -> float:
    """Binance one-way liquidation price: ``(WB + cum - s*q*EP) / (q*MMR - s*q)``.

    ``qty`` is signed (s = its sign, q = |qty|). For isolated margin WB is the position's
    margin; for a lone cross position it is the wallet balance. A result <= 0 means the
    position cannot be liquidated (e.g. a fully collateralised long).
    """
    if qty == 0.0:
        return float("nan")
    side = 1.0 if qty > 0 else -1.0
    q = abs(qty)
    return (wallet_balance + cum - side * q * entry_price) / (q * mmr - side * q)
