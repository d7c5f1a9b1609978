"""Instrument identity: (exchange, market, symbol).

The symbol is the exchange's own id without separators (``BTCUSDT``). Binance USD-M
perpetuals are the default, so ``BTCUSDT`` alone means that. Other venues are written
``exchange:SYMBOL`` and spot markets are labelled by the market field, never mixed with
the perpetual of the same name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from perptrader.core.errors import InputError

DEFAULT_EXCHANGE = "binance"
PERP = "perp"
SPOT = "spot"
MARKETS = (PERP, SPOT)

_SEPARATORS = re.compile(r"[/_\-:]")


def normalize_symbol(text: str) -> str:
    """``BTC/USDT:USDT``, ``BTC_USDT_USDT``, ``btcusdt`` -> ``BTCUSDT``.

    A settle-currency suffix equal to the quote (ccxt/freqtrade perp notation) is dropped.
    """
    raw = text.strip().upper()
    parts = [p for p in _SEPARATORS.split(raw) if p]
    if len(parts) == 3 and parts[1] == parts[2]:
        parts = parts[:2]
    return "".join(parts)


@dataclass(frozen=True, order=True)
class Instrument:
    exchange: str
    market: str
    symbol: str

    def __post_init__(self) -> None:
        if self.market not in MARKETS:
            raise InputError(f"market must be one of {MARKETS}, got {self.market!r}")
        if not self.symbol or not self.symbol.isalnum():
            raise InputError(f"symbol must be alphanumeric, got {self.symbol!r}")

    @classmethod
    def parse(cls, text: str, market: str | None = None) -> Instrument:
        """``BTCUSDT`` -> binance perp; ``kraken:BCHEUR`` -> that venue; market overrides."""
        exchange, _, symbol = text.rpartition(":") if ":" in text and not _is_ccxt(text) else (
            "",
            "",
            text,
        )
        return cls(
            exchange=(exchange or DEFAULT_EXCHANGE).lower(),
            market=market or PERP,
            symbol=normalize_symbol(symbol),
        )

    @property
    def display(self) -> str:
        """The name shown in listings: venue prefix only when it is not the default."""
        if self.exchange == DEFAULT_EXCHANGE:
            return self.symbol
        return f"{self.exchange}:{self.symbol}"


def _is_ccxt(text: str) -> bool:
    """``BTC/USDT:USDT`` is ccxt notation, not ``exchange:symbol``."""
    return "/" in text
