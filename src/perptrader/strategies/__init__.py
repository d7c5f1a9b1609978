"""THE policy interface (``base``) and the shipped policies: the baselines here, and the
``model:`` / ``rl:`` prefixes that ``perptrader.ml`` and ``perptrader.rl`` register
(``registry``). Backtests, RL evaluation, paper and live trading all take a ``Policy``."""

from perptrader.strategies.always_flat import AlwaysFlat
from perptrader.strategies.base import AccountView, Policy, PolicyBase
from perptrader.strategies.buy_and_hold import BuyAndHold
from perptrader.strategies.precomputed import PrecomputedTargets
from perptrader.strategies.random_entries import RandomEntries
from perptrader.strategies.registry import (
    BASELINES,
    REGISTRY,
    get_strategy,
    prefixes,
    register_prefix,
    strategy_params,
)
from perptrader.strategies.sma_cross import SmaCross
from perptrader.strategies.vsa import VsaStrategy

__all__ = ["BASELINES", "REGISTRY", "AccountView", "AlwaysFlat", "BuyAndHold", "Policy",
           "PolicyBase", "PrecomputedTargets", "RandomEntries", "SmaCross", "VsaStrategy",
           "get_strategy", "prefixes", "register_prefix", "strategy_params"]
