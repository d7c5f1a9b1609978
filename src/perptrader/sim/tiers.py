"""Maintenance-margin tiers (leverage brackets) as data, per symbol.

Binance sets the maintenance margin of a USDⓈ-M position by notional bracket:
``MM = notional * mmr_k - cum_k`` for the bracket ``k`` holding the notional, and caps
leverage per bracket. The tables live in ``data/binance_usdm_tiers.json`` (source and
date inside the file) so they can be refreshed without touching code.

Where a symbol's brackets come from, first match wins (``resolve``):

1. tiers given explicitly (``SimConfig(tiers=...)``, ``Account(..., tiers)``);
2. a user's brackets file (``SimConfig(tiers_table=load_tiers_file(path))``, or the
   ambient ``tiers_scope(table)`` that ``backtest run --tiers FILE`` opens);
3. the published table shipped in ``data/``;
4. the file's conservative ``DEFAULT`` ladder, marked ``fallback=True`` so every result
   computed with it carries a warning; ``strict`` (``--strict-tiers``,
   ``SimConfig(strict_tiers=True)``) makes this case an error instead.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

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
    #: True for the generic DEFAULT ladder used because no table names the symbol
    fallback: bool = False

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


def symbol_key(symbol: str) -> str:
    """``BTC/USDT:USDT``, ``btcusdt``, ``BTC/USDT`` -> ``BTCUSDT``; a dated contract
    ``BTC/USDT:USDT-240927`` -> ``BTCUSDT_240927`` (never the perpetual's key)."""
    base, _, settle = symbol.strip().upper().partition(":")
    key = base.replace("/", "")
    if "-" in settle:
        key += "_" + settle.split("-", 1)[1]
    return key


def published_symbols(exchange: str = "binance") -> list[str]:
    return sorted(k for k in _table(exchange)["symbols"] if k != "DEFAULT")


def _from_rows(symbol: str, rows: list[dict], source: str, *,
               fallback: bool = False) -> MarginTiers:
    rows = sorted(rows, key=lambda r: float(r["notional_floor"]))

    def col(name: str) -> np.ndarray:
        return np.array([float(r[name]) for r in rows], dtype=np.float64)

    return MarginTiers(symbol=symbol, notional_floor=col("notional_floor"),
                       notional_cap=col("notional_cap"), max_leverage=col("max_leverage"),
                       mmr=col("mmr"), cum=col("cum"), source=source, fallback=fallback)


def load_tiers(exchange: str, symbol: str, *, allow_default: bool = False) -> MarginTiers:
    """The published brackets of ``symbol`` (e.g. ``"BTCUSDT"``).

    An unknown symbol is an error unless ``allow_default``: then the file's conservative
    ``DEFAULT`` ladder is returned with ``fallback=True`` and a ``source`` that says so, so
    results computed with it can never pass for exchange-exact ones.
    """
    table = _table(exchange)
    key = symbol_key(symbol)
    rows = table["symbols"].get(key)
    if rows is not None:
        return _from_rows(key, rows, f"{exchange}:{key} ({table['_source'][:60]}...)")
    if not allow_default:
        raise PerptraderError(
            f"no {exchange} margin tiers for {symbol!r} (published: "
            f"{', '.join(published_symbols(exchange))}). Pass --tiers FILE (a brackets "
            f"file) or drop --strict-tiers to use the documented conservative default "
            f"ladder.")
    return _from_rows(key, table["symbols"]["DEFAULT"],
                      f"{exchange}:DEFAULT (not published; conservative generic ladder)",
                      fallback=True)


def fallback_warning(tiers: MarginTiers) -> str:
    """The line every result computed on the DEFAULT ladder carries."""
    return (f"{tiers.symbol}: no published margin tiers; the conservative DEFAULT ladder "
            f"(max {tiers.max_leverage.max():g}x, maintenance margin "
            f"{tiers.mmr.min():.1%}..{tiers.mmr.max():.0%}) is used, so liquidation prices "
            f"and the leverage cap are approximate (pass --tiers FILE for the exchange's "
            f"brackets, --strict-tiers to refuse)")


# ---- a user's brackets file -----------------------------------------------------------------

def _num(row: Mapping[str, Any], *names: str) -> float | None:
    for name in names:
        if name in row and row[name] is not None:
            return float(row[name])
    info = row.get("info")
    if isinstance(info, Mapping):
        return _num(info, *names)
    return None


def _normalise_rows(symbol: str, rows: Any, where: str) -> list[dict]:
    """Rows of our file, Binance's ``/fapi/v1/leverageBracket`` or ccxt's
    ``fetch_leverage_tiers`` (freqtrade's snapshot) -> our row dicts (cum derived where
    the row lacks it)."""
    if not isinstance(rows, list) or not rows:
        raise PerptraderError(f"{where}: {symbol}: brackets must be a non-empty list")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise PerptraderError(f"{where}: {symbol}: bracket {i + 1} is not an object")
        vals = {
            "notional_floor": _num(row, "notional_floor", "notionalFloor", "minNotional"),
            "notional_cap": _num(row, "notional_cap", "notionalCap", "maxNotional"),
            "mmr": _num(row, "mmr", "maintMarginRatio", "maintenanceMarginRate"),
            "max_leverage": _num(row, "max_leverage", "initialLeverage", "maxLeverage"),
            "cum": _num(row, "cum"),
        }
        missing = [k for k, v in vals.items() if v is None and k != "cum"]
        if missing:
            raise PerptraderError(f"{where}: {symbol}: bracket {i + 1} lacks "
                                  f"{', '.join(missing)}")
        out.append(vals)
    out.sort(key=lambda r: r["notional_floor"])
    cum = 0.0
    for i, row in enumerate(out):
        if i:
            cum += row["notional_floor"] * (row["mmr"] - out[i - 1]["mmr"])
        if row["cum"] is None:
            row["cum"] = cum
        elif abs(row["cum"] - cum) > 1e-6 * max(1.0, abs(cum)):
            raise PerptraderError(
                f"{where}: {symbol}: bracket {i + 1} cum {row['cum']:g} != {cum:g} derived "
                f"from the floors and rates (cum_k = cum_k-1 + floor_k * (mmr_k - mmr_k-1))")
    return out


@dataclass(frozen=True)
class TiersTable:
    """Brackets per symbol read from a user's file (``--tiers FILE``)."""

    path: str
    tiers: Mapping[str, MarginTiers]

    def get(self, symbol: str) -> MarginTiers | None:
        return self.tiers.get(symbol_key(symbol))


def load_tiers_file(path: str | Path) -> TiersTable:
    """Read a brackets file. Accepted shapes (JSON):

    * this package's own ``{"symbols": {"SOLUSDT": [{notional_floor, notional_cap, mmr,
      max_leverage, cum}, ...]}}`` (or the inner mapping alone);
    * Binance's ``GET /fapi/v1/leverageBracket`` answer: ``[{"symbol": "SOLUSDT",
      "brackets": [{notionalFloor, notionalCap, maintMarginRatio, initialLeverage, cum}]}]``;
    * ccxt's ``fetch_leverage_tiers`` / freqtrade's ``binance_leverage_tiers.json``:
      ``{"SOL/USDT:USDT": [{minNotional, maxNotional, maintenanceMarginRate, maxLeverage}]}``.

    Every ladder is checked (starts at 0, contiguous, cum consistent with the rates).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        raise PerptraderError(f"tiers file {p} does not exist") from None
    except (OSError, ValueError) as exc:
        raise PerptraderError(f"tiers file {p}: not readable JSON ({exc})") from None
    if isinstance(data, Mapping) and "symbols" in data:
        data = data["symbols"]
    if isinstance(data, list):
        try:
            data = {item["symbol"]: item["brackets"] for item in data}
        except (TypeError, KeyError):
            raise PerptraderError(f"tiers file {p}: a list must hold "
                                  f"{{'symbol': ..., 'brackets': [...]}} objects") from None
    if not isinstance(data, Mapping) or not data:
        raise PerptraderError(f"tiers file {p}: no symbols found")
    out: dict[str, MarginTiers] = {}
    for name, rows in data.items():
        if str(name).startswith("_"):
            continue
        key = symbol_key(str(name))
        if key == "DEFAULT" or key in out:  # USDT perp listed first wins over aliases
            continue
        try:
            out[key] = _from_rows(key, _normalise_rows(key, rows, str(p)), f"file:{p}")
        except ValueError as exc:
            raise PerptraderError(f"tiers file {p}: {exc}") from None
    if not out:
        raise PerptraderError(f"tiers file {p}: no symbols found")
    return TiersTable(path=str(p), tiers=out)


# ---- which brackets a run uses ------------------------------------------------------------

_SCOPE: contextvars.ContextVar[tuple[TiersTable | None, bool]] = contextvars.ContextVar(
    "perptrader_tiers_scope", default=(None, False))


@contextlib.contextmanager
def tiers_scope(table: TiersTable | None = None, *, strict: bool = False) -> Iterator[None]:
    """Inside the block, runs whose config names no tiers use ``table`` first and refuse
    the DEFAULT ladder when ``strict`` (what ``backtest run --tiers/--strict-tiers`` do)."""
    token = _SCOPE.set((table, strict))
    try:
        yield
    finally:
        _SCOPE.reset(token)


def resolve(symbol: str, *, table: TiersTable | None = None,
            strict: bool | None = None) -> MarginTiers:
    """The brackets of ``symbol``: ``table`` (else the ambient scope's), the published
    table, else the DEFAULT ladder (``fallback=True``), or an error when ``strict``."""
    scope_table, scope_strict = _SCOPE.get()
    for t in (table, scope_table):
        if t is not None and (found := t.get(symbol)) is not None:
            return found
    strict = scope_strict if strict is None else (strict or scope_strict)
    return load_tiers("binance", symbol, allow_default=not strict)


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
