"""Strategies: registry, no look-ahead (truncation), determinism, the hold logic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perptrader.strategies import (
    BASELINES,
    REGISTRY,
    Policy,
    get_strategy,
    strategy_params,
)
from perptrader.strategies.hold import hold_positions
from strategies.policy_frames import ohlcv


def _vsa_available() -> bool:
    try:
        import perptrader.features.vsa  # noqa: F401
    except ImportError:
        return False
    return True


NAMES = [n for n in BASELINES if n != "vsa" or _vsa_available()]


def test_registry_holds_the_four_baselines() -> None:
    assert set(BASELINES) | {"always_flat"} == set(REGISTRY)
    for name in BASELINES:
        assert isinstance(REGISTRY[name][0](), Policy)
    assert strategy_params("sma_cross") == {"fast": 20, "slow": 50, "long_only": False}


def test_get_strategy_coerces_cli_strings_and_refuses_unknowns() -> None:
    s = get_strategy("sma_cross", {"fast": "5", "slow": "12", "long_only": "yes"})
    assert s.params == {"fast": 5, "slow": 12, "long_only": True}
    with pytest.raises(ValueError, match="unknown strategy"):
        get_strategy("nope")
    with pytest.raises(ValueError, match="no parameter"):
        get_strategy("sma_cross", {"speed": 3})
    with pytest.raises(ValueError, match="fast < slow"):
        get_strategy("sma_cross", {"fast": 30, "slow": 10})
    with pytest.raises(ValueError, match="boolean"):
        get_strategy("random", {"long_only": "maybe"})


@pytest.mark.parametrize("name", NAMES)
def test_no_look_ahead_truncation_keeps_earlier_targets(name: str) -> None:
    frame = ohlcv()
    strategy = get_strategy(name)
    full = strategy.targets(frame)
    assert full.dtype == np.float64 and len(full) == len(frame)
    for cut in (50, 199, 417):
        np.testing.assert_array_equal(strategy.targets(frame.iloc[:cut]), full[:cut])


def test_sma_cross_signs_and_long_only() -> None:
    close = np.r_[np.linspace(100, 120, 40), np.linspace(120, 90, 40)]
    frame = pd.DataFrame({"close": close})
    t = get_strategy("sma_cross", {"fast": 3, "slow": 10}).targets(frame)
    assert (t[:9] == 0).all()  # warm-up: flat
    assert (t[10:40] == 1).all() and (t[-20:] == -1).all()
    lo = get_strategy("sma_cross", {"fast": 3, "slow": 10, "long_only": True}).targets(frame)
    assert (lo[-20:] == 0).all() and (lo[10:40] == 1).all()


def test_random_is_deterministic_per_seed_and_respects_long_only() -> None:
    frame = ohlcv(3000)
    a = get_strategy("random", {"seed": 7}).targets(frame)
    np.testing.assert_array_equal(a, get_strategy("random", {"seed": 7}).targets(frame))
    b = get_strategy("random", {"seed": 8}).targets(frame)
    assert not np.array_equal(a, b)
    assert set(np.unique(a)) == {-1.0, 0.0, 1.0}
    # in-market share of the chain: p_entry / (p_entry + p_exit) = 0.02 / 0.07
    assert abs(np.mean(a != 0) - 0.02 / 0.07) < 0.08
    lo = get_strategy("random", {"seed": 7, "long_only": True}).targets(frame)
    assert set(np.unique(lo)) == {0.0, 1.0}


def test_hold_positions_holds_n_bars_flips_and_restarts() -> None:
    long_sig = np.zeros(12, dtype=bool)
    short_sig = np.zeros(12, dtype=bool)
    long_sig[1] = True
    short_sig[3] = True  # opposite signal flips at once
    short_sig[5] = True  # same direction restarts the count
    long_sig[10] = short_sig[10] = True  # ambiguous bar: no signal
    out = hold_positions(long_sig, short_sig, 3)
    np.testing.assert_array_equal(out, [0, 1, 1, -1, -1, -1, -1, -1, 0, 0, 0, 0])


@pytest.mark.skipif(not _vsa_available(), reason="perptrader.features.vsa not built yet")
def test_vsa_strategy_trades_its_events() -> None:
    from perptrader.features.vsa import compute_vsa

    frame = ohlcv(2000, seed=5)
    strategy = get_strategy("vsa", {"hold_bars": 5, "context": False})
    long_sig, short_sig = strategy.signals(frame)
    vsa = compute_vsa(frame)
    expect_long = (vsa[["vsa_selling_climax", "vsa_no_supply", "vsa_test"]] > 0).any(axis=1)
    np.testing.assert_array_equal(long_sig, expect_long.to_numpy())
    t = strategy.targets(frame)
    both = long_sig & short_sig
    assert (t[long_sig & ~both] == 1).all() and (t[short_sig & ~both] == -1).all()
    assert (t != 0).any()
    with_ctx = get_strategy("vsa", {"hold_bars": 5}).signals(frame)
    assert with_ctx[0].sum() <= long_sig.sum() and with_ctx[1].sum() <= short_sig.sum()
