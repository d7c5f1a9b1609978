"""Deflated Sharpe ratio and PBO against worked numbers and known regimes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perptrader.backtest.overfitting import (
    deflated_sharpe,
    expected_max_sharpe,
    pbo_cscv,
    probabilistic_sharpe,
)


def test_dsr_worked_example_of_bailey_lopez_de_prado_2014() -> None:
    # the paper's example: best of N=100 trials, annualised SR 2.5 over 5 years of daily
    # returns (T=1250, 250 days/year), variance of the trials' annualised SR 0.5,
    # skew -3, kurtosis 10 -> SR0 = 1.7894 annualised, DSR = 0.9004
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 * math.sqrt(250) == pytest.approx(1.7894, abs=1e-4)
    dsr = probabilistic_sharpe(2.5 / math.sqrt(250), sr0, 1250, -3.0, 10.0)
    assert dsr == pytest.approx(0.9004, abs=1e-4)


def test_dsr_falls_with_more_trials_and_equals_psr_for_one() -> None:
    rng = np.random.default_rng(1)
    r = rng.normal(0.0005, 0.01, 2000)
    one = deflated_sharpe(r, n_trials=1)
    assert one.sr0 == 0.0 and one.variance_source == "null"
    assert one.dsr == pytest.approx(probabilistic_sharpe(one.sharpe, 0.0, 2000, one.skew,
                                                         one.kurtosis))
    many = deflated_sharpe(r, n_trials=1000)
    assert many.dsr < one.dsr
    # SR0 for 1000 skill-less trials with V = 1/(T-1): about 3.25 standard errors
    assert many.sr0 == pytest.approx(expected_max_sharpe(1000, 1 / 1999))
    given = deflated_sharpe(r, n_trials=10, sr_variance=0.0004)
    assert given.variance_source == "trials" and given.sr_variance == 0.0004


def test_pbo_is_zero_for_a_dominant_variant() -> None:
    rng = np.random.default_rng(3)
    m = rng.normal(0.0, 0.01, (2000, 12))
    m[:, 5] += 0.004  # a real edge in every block
    res = pbo_cscv(m, n_blocks=10)
    assert res.pbo == 0.0
    assert res.n_splits == 252 and res.n_strategies == 12


def test_pbo_is_about_one_half_for_pure_noise() -> None:
    # one noise matrix gives a noisy PBO (splits share data); the mean over many is ~0.5
    pbos = [pbo_cscv(np.random.default_rng(s).normal(0, 0.01, (600, 16)), 8).pbo
            for s in range(30)]
    assert 0.4 < float(np.mean(pbos)) < 0.65


def test_pbo_is_one_when_the_in_sample_winner_always_loses_out_of_sample() -> None:
    # variant 0 is great in the first half and terrible in the second, all others flat-ish
    rng = np.random.default_rng(4)
    m = rng.normal(0, 0.001, (400, 4))
    m[:200, 0] += 0.01
    m[200:, 0] -= 0.01
    res = pbo_cscv(m, n_blocks=2)  # one split each way: IS = one half
    assert res.n_splits == 2 and res.pbo == 1.0


def test_pbo_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="even"):
        pbo_cscv(np.zeros((100, 3)), n_blocks=5)
    with pytest.raises(ValueError, match="N >= 2"):
        pbo_cscv(np.zeros((100, 1)))
    with pytest.raises(ValueError, match="NaN"):
        pbo_cscv(np.full((100, 3), np.nan))
    with pytest.raises(ValueError, match="blocks"):
        pbo_cscv(np.zeros((10, 3)), n_blocks=16)
