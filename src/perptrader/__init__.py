"""perptrader: research, backtest, paper-trade and live-trade crypto perpetual futures."""

__version__ = "0.1.0"
