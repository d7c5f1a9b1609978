"""Exchange adapters (ccxt REST + ccxt.pro streams per venue) and the local fake exchange
that speaks the venues' protocols for tests and demos."""
