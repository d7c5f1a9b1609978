"""One policy: the per-bar ``decide`` gives the batch ``targets``, to the float.

Every registered baseline is replayed bar by bar, as the paper engine calls it (all bars
so far, a flat account view), and compared with ``targets`` on the whole frame. A
policy object restarted in the middle of the replay (its caches empty, as after a crash)
must give the same numbers too. The ``model:`` and ``rl:`` policies have the same test
next to their code (tests/ml/test_model_policy_decide.py, tests/rl/test_rl_policy_decide.py)
because they need a trained model or agent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perptrader.strategies import REGISTRY, AccountView, PrecomputedTargets, get_strategy
from strategies.policy_frames import ohlcv

PARAMS = {"sma_cross": {"fast": "5", "slow": "21"}, "vsa": {"hold_bars": "6"},
          "random": {"p_entry": "0.1", "p_exit": "0.2"}}


def replay(policy_name: str, frame: pd.DataFrame, first: int, *, restart_at: int | None = None,
           params: dict | None = None) -> np.ndarray:
    """``decide`` at every bar from ``first``; a fresh policy object at ``restart_at``."""
    policy = get_strategy(policy_name, params)
    out = np.full(len(frame), np.nan)
    for t in range(first, len(frame)):
        if t == restart_at:
            policy = get_strategy(policy_name, params)
        view = AccountView.flat(frame.index[t], 10_000.0, float(frame["close"].iloc[t]))
        out[t] = policy.decide(frame.iloc[: t + 1], view)
    return out


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_decide_equals_batch_targets(name: str) -> None:
    frame = ohlcv(700, seed=3)
    params = PARAMS.get(name)
    batch = np.asarray(get_strategy(name, params).targets(frame), dtype=np.float64)
    first = 1
    live = replay(name, frame, first, restart_at=400, params=params)
    np.testing.assert_array_equal(live[first:], batch[first:])
    assert np.unique(batch).size >= (1 if name in ("buy_and_hold", "always_flat") else 2)


def test_precomputed_targets_decide_by_time() -> None:
    frame = ohlcv(50)
    by_time = pd.Series(np.sign(np.sin(np.arange(50))), index=frame.index)[::2]
    policy = PrecomputedTargets(by_time, label="pre")
    batch = policy.targets(frame)
    view = AccountView.flat(frame.index[0], 1.0)
    live = [policy.decide(frame.iloc[: t + 1], view) for t in range(len(frame))]
    np.testing.assert_array_equal(live, batch)


@pytest.mark.integration
@pytest.mark.parametrize("name", ["vsa", "sma_cross"])
def test_decide_equals_batch_on_real_btc(real_btc_1h: pd.DataFrame, name: str) -> None:
    """Real bars (gaps, volume spikes): 2,500 bars of 2024 replayed bar by bar."""
    frame = real_btc_1h.loc["2024-01-01":"2024-04-15"]
    batch = np.asarray(get_strategy(name).targets(frame), dtype=np.float64)
    live = replay(name, frame, 1, restart_at=1_200)
    np.testing.assert_array_equal(live[1:], batch[1:])
