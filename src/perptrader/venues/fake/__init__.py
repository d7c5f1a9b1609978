"""A local exchange that speaks Binance USD-M's public REST (and websocket) protocol and
serves the real recorded data of ``../shared/data``: tests and demos exercise the same
ccxt code paths as against the real venue, with faults injected on demand."""

from perptrader.venues.fake.runner import FakeExchange, FakeExchangeThread

__all__ = ["FakeExchange", "FakeExchangeThread"]
