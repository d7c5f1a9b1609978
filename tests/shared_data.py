"""Locating the real market data of ../shared/data; tests skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest


def shared_data_dir() -> Path:
    env = os.environ.get("PERPTRADER_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def real_file(relative: str) -> Path:
    """A file of ../shared/data, or skip the test saying which file is missing."""
    path = shared_data_dir() / relative
    if not path.exists():
        pytest.skip(f"real data absent: {path} (set PERPTRADER_SHARED_DATA)")
    return path


def read_futures_feather(name: str) -> pd.DataFrame:
    """A freqtrade futures feather of ../shared/data (columns date, open, ..., volume)."""
    return pd.read_feather(real_file(f"freqtrade/binance/futures/{name}"))
