"""Small ML tables built in the test (no ../shared needed)."""

from __future__ import annotations

from feature_frames import synthetic_frame
from perptrader.ml.base import MLFrame
from perptrader.ml.dataset import build_ml_frame


def synthetic_ml_frame(n: int = 2500, seed: int = 7, feature_set: str = "bars") -> MLFrame:
    """Random-walk bars, the ``bars`` feature set and default labels (~n - 1000 rows)."""
    bars = synthetic_frame(n, seed=seed, extras=False)
    return build_ml_frame(bars, symbol="TEST", timeframe="1h", feature_set=feature_set)
