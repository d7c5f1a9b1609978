"""``AccountBatch``: N environments' accounts over one ``EnvMarket``, as numpy arrays.

The single environment (``PerpFuturesEnv``) is a batch of one and the SB3 vectorized
environment (``PerpVecEnv``) a batch of many, so both step through the same numba code.
"""

from __future__ import annotations

import numpy as np

from perptrader.rl import actions as ACT
from perptrader.rl import core as C
from perptrader.rl.market import EnvMarket
from perptrader.rl.reward import N_TERMS, RewardConfig
from perptrader.sim import kernel as K
from perptrader.sim.setup import resolve_tiers, run_params, symbol_params


class AccountBatch:
    """State of ``n`` accounts; ``reset(idx, starts, ends)`` then ``step(actions)``."""

    def __init__(self, market: EnvMarket, n: int, reward: RewardConfig | None = None, *,
                 min_equity: float = 0.0, obs_columns: np.ndarray | None = None,
                 parallel: bool = False) -> None:
        self.market = market
        #: step the environments on numba's threads (same results; pays off from a few
        #: dozen environments, below that the thread start-up costs more than it saves)
        self._step = C.step_batch_parallel if parallel else C.step_batch
        self.n = n
        self.reward = reward or RewardConfig()
        config = market.config
        tiers = resolve_tiers(config, market.symbol)
        self.P = run_params(config)
        self.SP, self.TB = symbol_params(config, [tiers])
        self.RW = self.reward.vector()
        self.EP = np.zeros(C.NEP)
        self.EP[C.EP_MAX_EXP] = config.leverage
        self.EP[C.EP_INIT] = config.initial_cash
        self.EP[C.EP_MIN_EQ] = min_equity
        self.EP[C.EP_SHARPE_N] = self.reward.sharpe_trades
        self.EP[C.EP_DSR_ETA] = self.reward.dsr_eta
        self.ST = np.zeros((n, 1, K.NS))
        self.W = np.zeros((n, K.NW))
        self.X = np.zeros((n, 1, K.NX))
        self.F = np.zeros((n, K.FILLS_PER_BAR, K.NF))
        self.T = np.zeros((n, K.FILLS_PER_BAR, K.NT))
        self.cnt = np.zeros((n, 2), dtype=np.int64)
        self.B = np.zeros((n, 1, K.NB))
        self.A = np.zeros((n, K.NA))
        self.E = np.zeros((n, C.NE))
        self.TR = np.zeros((n, max(self.reward.sharpe_trades, 2)))
        self.book_idx = np.full(1, -1, dtype=np.int64)
        self.no_book = np.zeros((0, 2, 1))
        self.n_obs_full = market.state.shape[1] + C.N_ACCOUNT
        self.obs_full = np.zeros((n, self.n_obs_full), dtype=np.float32)
        self.obs_columns = None if obs_columns is None else np.asarray(obs_columns, np.int64)
        self.rewards = np.zeros(n)
        self.terms = np.zeros((n, N_TERMS))
        self.terminated = np.zeros(n, dtype=np.bool_)
        self.truncated = np.zeros(n, dtype=np.bool_)
        self.orders = np.zeros(n)
        self.mask_buf = np.zeros((n, ACT.N_ACTIONS), dtype=np.bool_)

    # ---- names ------------------------------------------------------------------------
    @property
    def observation_names(self) -> list[str]:
        names = [*self.market.state_columns, *C.ACCOUNT_FEATURES]
        if self.obs_columns is None:
            return names
        return [names[j] for j in self.obs_columns]

    @property
    def n_obs(self) -> int:
        return self.n_obs_full if self.obs_columns is None else len(self.obs_columns)

    def observations(self) -> np.ndarray:
        if self.obs_columns is None:
            return self.obs_full
        return self.obs_full[:, self.obs_columns]

    # ---- stepping ---------------------------------------------------------------------
    def reset(self, idx: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        m = self.market
        starts = np.asarray(starts, dtype=np.float64)
        ends = np.asarray(ends, dtype=np.float64)
        if (starts < 0).any() or (ends >= len(m)).any() or (ends <= starts).any():
            raise ValueError(f"episode bounds outside the window of {len(m)} bars or empty")
        C.reset_batch(np.asarray(idx, dtype=np.int64), starts, ends, m.xs, m.state, self.P,
                      self.SP, self.TB, self.ST, self.W, self.A, self.E, self.EP,
                      m.r2_mean, self.obs_full)
        self.orders[np.asarray(idx, dtype=np.int64)] = 0.0

    def step(self, actions: np.ndarray) -> None:
        m = self.market
        self._step(np.asarray(actions, dtype=np.int64), m.xs, m.state, m.vsa_dir, m.agree,
                     m.conflict, self.P, self.SP, self.TB, self.RW, self.ST, self.W, self.X,
                     self.F, self.T, self.cnt, self.B, self.A, self.E, self.EP, self.TR,
                     self.book_idx, self.no_book, self.obs_full, self.rewards, self.terms,
                     self.terminated, self.truncated, self.orders)

    def masks(self) -> np.ndarray:
        C.masks_batch(self.E, float(self.EP[C.EP_MAX_EXP]), self.mask_buf)
        return self.mask_buf

    # ---- per-environment facts -----------------------------------------------------------
    def equity(self, i: int) -> float:
        return float(self.A[i, K.A_EQUITY])

    def bar(self, i: int) -> int:
        return int(self.E[i, C.E_T])

    def target(self, i: int) -> float:
        return float(self.E[i, C.E_TARGET])

    def info(self, i: int) -> dict[str, float | int]:
        e = self.E[i]
        return {"bar": int(e[C.E_T]), "equity": float(self.A[i, K.A_EQUITY]),
                "position_qty": float(self.ST[i, 0, K.S_QTY]),
                "target": float(e[C.E_TARGET]), "decision": float(self.orders[i]),
                "trades": int(e[C.E_TRADES]), "liquidations": int(e[C.E_LIQS]),
                "invalid_actions": int(e[C.E_INVALID]), "fees": float(self.W[i, K.W_FEES]),
                "funding_received": float(self.W[i, K.W_FUND])}
