"""How much of a backtest's Sharpe ratio is selection luck: the deflated Sharpe ratio
and the probability of backtest overfitting (PBO) by combinatorially symmetric
cross-validation (CSCV).

Why both: the DSR corrects ONE reported Sharpe ratio for the number of variants tried
and for non-normal returns; PBO looks at ALL variants' return streams and asks how
often the in-sample winner is a below-median performer out of sample.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Euler-Mascheroni constant, in the expected maximum of N standard normals
EULER_GAMMA = 0.5772156649015329


def expected_max_sharpe(n_trials: int, sr_variance: float) -> float:
    """Expected maximum of ``n_trials`` Sharpe ratios whose true value is 0
    (Bailey & López de Prado 2014, eq. 6; the False Strategy theorem):

    ``SR0 = sqrt(V) * ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e)))``.

    One trial selects nothing, so ``SR0 = 0`` for ``N = 1``.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials == 1:
        return 0.0
    z1 = stats.norm.ppf(1.0 - 1.0 / n_trials)
    z2 = stats.norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(sr_variance) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def probabilistic_sharpe(sr: float, sr_benchmark: float, n_obs: int, skew: float,
                         kurtosis: float) -> float:
    """P(true SR > ``sr_benchmark``) given the per-period estimate ``sr`` from ``n_obs``
    returns with the given skewness and (non-excess) kurtosis (Bailey & López de Prado
    2012): ``Φ((SR - SR*) sqrt(T - 1) / sqrt(1 - γ3 SR + (γ4 - 1)/4 SR²))``."""
    if n_obs < 2 or not math.isfinite(sr):
        return math.nan
    denom = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if denom <= 0:
        return math.nan
    return float(stats.norm.cdf((sr - sr_benchmark) * math.sqrt(n_obs - 1) / math.sqrt(denom)))


@dataclass(frozen=True)
class DeflatedSharpe:
    #: P(true Sharpe > 0 after selecting the best of ``n_trials``); > 0.95 is the usual bar
    dsr: float
    #: the per-period Sharpe ratio being judged
    sharpe: float
    #: expected maximum per-period Sharpe of ``n_trials`` skill-less variants
    sr0: float
    n_trials: int
    n_obs: int
    skew: float
    kurtosis: float
    #: variance of the per-period Sharpe ratio across trials used for ``sr0``
    sr_variance: float
    #: where ``sr_variance`` came from: "trials" (given) or "null" (1/(T-1))
    variance_source: str


def deflated_sharpe(returns: np.ndarray, n_trials: int = 1,
                    sr_variance: float | None = None) -> DeflatedSharpe:
    """Deflated Sharpe ratio of per-period ``returns`` (Bailey & López de Prado 2014).

    ``DSR = PSR(SR0)`` with ``SR0 = expected_max_sharpe(N, V)``. ``V`` is the variance of
    the per-period Sharpe ratios of the trials; when they are not given, the variance of
    the Sharpe estimator of a skill-less strategy, ``1 / (T - 1)``, is used (then SR0 is
    the luck a search over ``N`` independent zero-Sharpe variants would find). With
    ``n_trials = 1`` the DSR is the probabilistic Sharpe ratio against 0.
    """
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    t = len(r)
    sd = float(np.std(r, ddof=1)) if t > 1 else 0.0
    sr = float(np.mean(r)) / sd if sd > 0 else math.nan
    skew = float(stats.skew(r)) if t > 2 and sd > 0 else math.nan
    kurt = float(stats.kurtosis(r, fisher=False)) if t > 3 and sd > 0 else math.nan
    source = "trials"
    if sr_variance is None:
        source = "null"
        sr_variance = 1.0 / (t - 1) if t > 1 else math.nan
    sr0 = expected_max_sharpe(n_trials, sr_variance) if t > 1 else math.nan
    dsr = probabilistic_sharpe(sr, sr0, t, skew, kurt) if math.isfinite(skew + kurt) else math.nan
    return DeflatedSharpe(dsr, sr, sr0, n_trials, t, skew, kurt, float(sr_variance), source)


@dataclass(frozen=True)
class PBOResult:
    #: share of splits where the in-sample best is at or below the out-of-sample median
    pbo: float
    #: logit of the in-sample winner's relative out-of-sample rank, one per split
    logits: np.ndarray
    #: per split: the in-sample winner's performance in and out of sample
    is_best: np.ndarray
    oos_of_best: np.ndarray
    n_splits: int
    n_blocks: int
    n_strategies: int


def _block_sharpe(s1: np.ndarray, s2: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Sharpe (mean / population std) from sums, counts per row; -inf where flat."""
    mean = s1 / n[:, None]
    var = np.maximum(s2 / n[:, None] - mean * mean, 0.0)
    sd = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(sd > 0, mean / sd, np.where(mean > 0, np.inf, np.where(mean < 0,
                                                                              -np.inf, 0.0)))
    return out


def pbo_cscv(returns: np.ndarray, n_blocks: int = 16) -> PBOResult:
    """Probability of backtest overfitting by CSCV (Bailey, Borwein, López de Prado &
    Zhu 2017).

    ``returns`` is a T×N matrix: per-period returns of N variants over the same T
    periods. Rows are cut into ``n_blocks`` (S, even) contiguous blocks of equal size
    (the last ``T mod S`` rows are dropped). For each of the C(S, S/2) ways to choose
    half of the blocks as in-sample (IS) and the rest as out-of-sample (OOS):

    1. ``n*`` = the variant with the best IS Sharpe ratio;
    2. ``ω`` = its OOS rank among the N variants divided by N + 1 (rank 1 = worst,
       ties share the average rank);
    3. ``λ = log(ω / (1 - ω))``.

    ``PBO = #(λ <= 0) / C``: how often the IS winner is at or below the OOS median.
    Vectorised: per-block sums make every split's Sharpe one matrix product.
    """
    m = np.asarray(returns, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError("returns must be a T×N matrix with N >= 2 variants")
    if n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"n_blocks must be an even number >= 2, got {n_blocks}")
    if not np.isfinite(m).all():
        raise ValueError("returns contain NaN/inf; fill or drop those periods first")
    t, n = m.shape
    size = t // n_blocks
    if size < 2:
        raise ValueError(f"{t} periods cannot fill {n_blocks} blocks of >= 2 periods")
    blocks = m[: size * n_blocks].reshape(n_blocks, size, n)
    s1, s2 = blocks.sum(axis=1), (blocks * blocks).sum(axis=1)  # S×N
    combos = np.array(list(itertools.combinations(range(n_blocks), n_blocks // 2)))
    mask = np.zeros((len(combos), n_blocks))
    np.put_along_axis(mask, combos, 1.0, axis=1)
    count = np.full(len(combos), size * n_blocks / 2)
    is_perf = _block_sharpe(mask @ s1, mask @ s2, count)
    oos_perf = _block_sharpe((1 - mask) @ s1, (1 - mask) @ s2, count)
    best = np.argmax(is_perf, axis=1)
    rows = np.arange(len(combos))
    oos_best = oos_perf[rows, best]
    below = (oos_perf < oos_best[:, None]).sum(axis=1)
    ties = (oos_perf == oos_best[:, None]).sum(axis=1) - 1
    rank = below + 0.5 * ties + 1.0
    omega = rank / (n + 1.0)
    logits = np.log(omega / (1.0 - omega))
    return PBOResult(
        pbo=float(np.mean(logits <= 0)),
        logits=logits,
        is_best=is_perf[rows, best],
        oos_of_best=oos_best,
        n_splits=len(combos),
        n_blocks=n_blocks,
        n_strategies=n,
    )


def pbo_of_equity_curves(curves: list[np.ndarray], initial_cash: list[float],
                         n_blocks: int = 16) -> PBOResult | None:
    """PBO of several runs over the SAME bars, from their equity curves; None when
    there are fewer than two runs, the curves differ in length, or too few bars fill
    the blocks (a comparison across different data is not a selection among variants).
    """
    from perptrader.backtest.metrics import bar_returns

    if len(curves) < 2 or len({len(c) for c in curves}) != 1:
        return None
    matrix = np.column_stack([bar_returns(np.asarray(c, dtype=np.float64), cash)
                              for c, cash in zip(curves, initial_cash, strict=True)])
    if len(matrix) < 2 * n_blocks or not np.isfinite(matrix).all():
        return None
    return pbo_cscv(matrix, n_blocks=n_blocks)


__all__ = [
    "EULER_GAMMA",
    "DeflatedSharpe",
    "PBOResult",
    "deflated_sharpe",
    "expected_max_sharpe",
    "pbo_cscv",
    "pbo_of_equity_curves",
    "probabilistic_sharpe",
]
