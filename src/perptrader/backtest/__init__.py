"""The backtester: strategies -> target exposures -> ``perptrader.sim`` (the one
accounting core) -> metrics, deflated Sharpe / PBO, JSON + HTML reports."""
