"""The one futures accounting core: margin, fees, slippage, funding, mark price,
maintenance-margin tiers and liquidation, used by backtests, the RL environment and the
paper broker alike (``simulate`` = whole arrays; ``Account`` = one bar at a time; both
advance the same numba ``kernel.step_bar``). Assumptions: docs/backtest-assumptions.md.
"""

from perptrader.sim.account import Account, StepReport
from perptrader.sim.config import SimConfig
from perptrader.sim.costs import CostModel
from perptrader.sim.engine import BookLevels, simulate, simulate_portfolio
from perptrader.sim.market import BarInput, MarketData
from perptrader.sim.result import SimResult
from perptrader.sim.tiers import (
    MarginTiers,
    TiersTable,
    liquidation_price,
    load_tiers,
    load_tiers_file,
    tiers_scope,
)

__all__ = ["Account", "BarInput", "BookLevels", "CostModel", "MarginTiers", "MarketData",
           "SimConfig", "SimResult", "StepReport", "TiersTable", "liquidation_price",
           "load_tiers", "load_tiers_file", "simulate", "simulate_portfolio", "tiers_scope"]
