"""The pure trading domain: orders and their state machine, client order ids, position
ledgers and the pre-trade risk manager.

Nothing here does I/O, so the paper and live engines, the persistence layer and the tests
share exactly the same rules. Import the submodules directly (``perptrader.trading.orders``)
so that importing one of them stays cheap.
"""
