"""Small ML tables built in the test (no ../shared needed)."""

from __future__ import annotations

from feature_frames import synthetic_frame
from perptrader.ml.base import MLFrame
from perptrader.ml.dataset import build_ml_frame


def synthetic_ml_frame(n: int = 2500, seed: int = 7, feature_set: str = "bars") -> MLFrame:
    """Random-walk bars, the ``bars`` feature set and default labels (~n - 1000 rows)."""
    bars = synthetic_frame(n, seed=seed, extras=False)
    return build_ml_frame(bars, symbol="TEST", timeframe="1h", feature_set=feature_set)


def planted_ml_frame(n: int = 2000, seed: int = 0, *, signal: float = 1.0,
                     rare_buy: bool = False, noise_columns: int = 5,
                     nan_share: float = 0.1, horizon: int = 1,
                     unknown_tail: int = 5) -> MLFrame:
    """A table whose label is the tercile (or, with ``rare_buy``, the top decile for BUY)
    of ``signal * sig + (1 - signal) * noise``; the ``noise<i>`` columns carry nothing.
    ``nan_share`` of ``sig`` is NaN, and the last ``unknown_tail`` labels are unknown."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    sig = rng.normal(size=n)
    latent = signal * sig + (1.0 - signal) * rng.normal(size=n)
    hi = np.quantile(latent, 0.9 if rare_buy else 0.66)
    lo = np.quantile(latent, 0.33)
    label = np.where(latent > hi, 1.0, np.where(latent < lo, -1.0, 0.0))
    if unknown_tail:
        label[-unknown_tail:] = np.nan  # the last bars' future is unknown
    noise = [f"noise{i}" for i in range(noise_columns)]
    frame = pd.DataFrame({c: rng.normal(size=n) for c in noise},
                         index=pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"))
    if nan_share:
        sig[rng.random(n) < nan_share] = np.nan
    frame["sig"] = sig
    frame["label_adaptive"] = label
    return MLFrame(frame, ["sig", *noise], label="label_adaptive", horizon=horizon)
