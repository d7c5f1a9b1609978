"""Synthetic bars and funding written into a test store (the ``fill`` fixture)."""

from __future__ import annotations

import pytest

from store_frames import fill_store


@pytest.fixture
def fill():
    """``fill(store, n=720, seed=0, funding=True, drift=0.0, symbol="BTCUSDT")`` writes
    synthetic 1h bars (and 8h funding at +0.01 %)."""
    return fill_store
