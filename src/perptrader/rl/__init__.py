"""Reinforcement learning for leveraged perpetual futures (see docs/rl.md).

``PerpFuturesEnv`` (gymnasium) and ``PerpVecEnv`` (SB3 VecEnv) step the backtester's
accounting kernel (``perptrader.sim.kernel``) over a fused state of model outputs, VSA,
market features and the account; ``rl.agents`` trains MaskablePPO on them and
``rl.evaluate`` backtests an agent beside the baselines.
"""

from perptrader.rl.env import PerpFuturesEnv
from perptrader.rl.market import EnvMarket, rl_sim_config
from perptrader.rl.reward import PRESETS, RewardConfig
from perptrader.rl.vec_env import PerpVecEnv

__all__ = ["PRESETS", "EnvMarket", "PerpFuturesEnv", "PerpVecEnv", "RewardConfig",
           "rl_sim_config"]
