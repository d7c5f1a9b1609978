"""Walk-forward folds and purged k-fold on synthetic hourly indexes (hand-counted)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from perptrader.ml.splits import (
    Fold,
    WalkForwardSpec,
    parse_duration,
    purged_kfold,
    walk_forward,
)


def hourly(days: float, start: str = "2023-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=int(days * 24), freq="1h", tz="UTC")


def assert_no_leak(folds: list[Fold], horizon: int) -> None:
    """No train/valid label window [t, t+h] touches a test row; valid is after train."""
    for f in folds:
        assert len(f.train) and len(f.test)
        fit = np.concatenate([f.train, f.valid])
        # label windows of every fit row end before the first test row
        assert fit.max() + horizon < f.test.min()
        assert not np.isin(fit, f.test).any()
        if len(f.valid):
            assert f.train.max() + horizon < f.valid.min()
        assert np.all(np.diff(f.train) > 0) and np.all(np.diff(f.test) == 1)


@pytest.mark.parametrize(("days", "expected"), [(100, 7), (96, 7), (94, 6), (35, 1)])
def test_fold_count_matches_hand_count(days: float, expected: int) -> None:
    # train 30d, test 10d: test windows start at day 30, 40, ...; a last window covering
    # < 5 days is dropped (96 days: 6 days left -> kept; 94 days: 4 days -> dropped)
    folds = walk_forward(hourly(days), WalkForwardSpec(train="30d", test="10d"), horizon=24)
    assert len(folds) == expected
    assert [f.index for f in folds] == list(range(expected))


def test_rolling_windows_tile_and_purge() -> None:
    idx = hourly(100)
    h = 24
    spec = WalkForwardSpec(train="30d", test="10d", valid=0.2)
    folds = walk_forward(idx, spec, horizon=h)
    assert_no_leak(folds, h)
    for prev, nxt in itertools.pairwise(folds):
        assert prev.test[-1] + 1 == nxt.test[0]            # tile without overlap or hole
    for k, f in enumerate(folds):
        start = pd.Timestamp("2023-01-31", tz="UTC") + pd.Timedelta(days=10 * k)
        assert idx[f.test[0]] == start and len(f.test) == 240
        # rolling: the training window starts exactly 30 days before the test window
        assert idx[f.train[0]] == start - pd.Timedelta(days=30)
        window = 30 * 24 - h                                 # rows left after the test purge
        n_valid = round(0.2 * window)
        assert len(f.valid) == n_valid
        assert f.valid[-1] == f.test[0] - h - 1             # valid ends right at the purge
        assert len(f.train) == window - n_valid - h          # purged before valid too
        assert f.train_span[0] == idx[f.train[0]].isoformat()
        assert f.test_span == (idx[f.test[0]].isoformat(), idx[f.test[-1]].isoformat())


def test_partial_last_window_is_kept_when_long_enough() -> None:
    folds = walk_forward(hourly(96), WalkForwardSpec(train="30d", test="10d"), horizon=5)
    assert len(folds[-1].test) == 6 * 24
    assert folds[-1].test[-1] == 96 * 24 - 1


def test_expanding_mode_trains_from_the_first_row_and_embargoes() -> None:
    idx = hourly(100)
    h, emb = 12, 48
    spec = WalkForwardSpec(train="30d", test="10d", valid=0.0, mode="expanding", embargo=emb)
    folds = walk_forward(idx, spec, horizon=h)
    assert_no_leak(folds, h)
    assert all(f.train[0] == 0 and len(f.valid) == 0 for f in folds)
    banned = np.concatenate([np.arange(f.test[-1] + 1, f.test[-1] + 1 + emb) for f in folds])
    for j, earlier in enumerate(folds):
        after = np.arange(earlier.test[-1] + 1, earlier.test[-1] + 1 + emb)
        for later in folds[j + 1:]:
            assert not np.isin(after, later.train).any()
        for later in folds[j + 2:]:
            # the other test rows of earlier folds are ordinary training rows later on
            allowed = np.setdiff1d(earlier.test, banned)
            assert len(allowed) == len(earlier.test) - (emb if j else 0)
            assert np.isin(allowed, later.train).all()
    # expanding windows only grow
    assert all(len(a.train) < len(b.train) for a, b in itertools.pairwise(folds))


def test_embargo_also_applies_to_rolling_and_valid() -> None:
    idx = hourly(100)
    spec = WalkForwardSpec(train="30d", test="10d", valid=0.3, embargo=30)
    folds = walk_forward(idx, spec, horizon=6)
    banned = np.concatenate([np.arange(f.test[-1] + 1, f.test[-1] + 31) for f in folds])
    for f in folds[1:]:
        assert not np.isin(np.concatenate([f.train, f.valid]), banned).any()
    assert_no_leak(folds, 6)


def test_max_folds_keeps_the_last_ones() -> None:
    idx = hourly(100)
    full = walk_forward(idx, WalkForwardSpec(train="30d", test="10d"), horizon=24)
    last = walk_forward(idx, WalkForwardSpec(train="30d", test="10d", max_folds=2), horizon=24)
    assert len(last) == 2
    for a, b in zip(full[-2:], last, strict=True):
        assert np.array_equal(a.test, b.test) and np.array_equal(a.train, b.train)


def test_data_gap_skips_empty_test_windows() -> None:
    idx = hourly(100)
    keep = (idx < pd.Timestamp("2023-02-10", tz="UTC")) | (idx >= pd.Timestamp("2023-02-25",
                                                                                tz="UTC"))
    folds = walk_forward(idx[keep], WalkForwardSpec(train="30d", test="10d"), horizon=24)
    # windows from day 30: [30,40) kept, [40,50) has no bar -> skipped, [50,60) partial
    # (days 55-60), then 60..100 -> 1 + 0 + 1 + 4 folds
    assert len(folds) == 6
    assert_no_leak(folds, 24)


def test_too_short_and_bad_specs_raise() -> None:
    with pytest.raises(ValueError, match="too short"):
        walk_forward(hourly(32), WalkForwardSpec(train="30d", test="10d"), horizon=1)
    with pytest.raises(ValueError, match="no training rows"):
        walk_forward(hourly(40), WalkForwardSpec(train="1d", test="10d"), horizon=48)
    with pytest.raises(ValueError):
        WalkForwardSpec(valid=1.0)
    with pytest.raises(ValueError):
        WalkForwardSpec(mode="sliding")
    with pytest.raises(ValueError):
        WalkForwardSpec(test="-1d")
    with pytest.raises(ValueError, match="duration"):
        WalkForwardSpec(train="3mo")
    with pytest.raises(ValueError):
        WalkForwardSpec(test="0h")
    with pytest.raises(ValueError, match="unknown key"):
        WalkForwardSpec.parse("train=10d,tset=2d")
    with pytest.raises(ValueError, match="key=value"):
        WalkForwardSpec.parse("train=10d,test")


def test_parse_duration() -> None:
    assert parse_duration("540d") == pd.Timedelta(days=540)
    assert parse_duration("2W") == pd.Timedelta(days=14)
    assert parse_duration("12h") == pd.Timedelta(hours=12)
    assert parse_duration("90min") == parse_duration("90m") == pd.Timedelta(minutes=90)


def test_parse() -> None:
    spec = WalkForwardSpec.parse("train=540d, test=30d,valid=0.1,mode=expanding,embargo=24,"
                                 "folds=3")
    assert spec == WalkForwardSpec("540d", "30d", 0.1, "expanding", 24, 3)
    assert WalkForwardSpec.parse(spec.describe()) == spec
    assert WalkForwardSpec.parse("train=90d,test=7d") == WalkForwardSpec("90d", "7d")


def test_purged_kfold_hand_checked() -> None:
    rows = np.arange(100, dtype=np.int64)
    splits = purged_kfold(rows, k=4, horizon=5, embargo=3)
    assert [len(held) for _, held in splits] == [25, 25, 25, 25]
    fit, held = splits[1]                                   # block 25..49
    assert held[0] == 25 and held[-1] == 49
    expected = np.setdiff1d(rows, np.arange(20, 53))        # 5 before, 3 after
    assert np.array_equal(fit, expected)
    fit0, _ = splits[0]
    assert fit0[0] == 28                                    # block 0..24 + embargo 3
    fit3, _ = splits[3]
    assert fit3[-1] == 69                                   # block 75..99 - horizon 5
    for fit, held in splits:                                # no fit label reaches held
        before = fit[fit < held[0]]
        assert len(before) == 0 or before.max() + 5 < held[0]


def test_purged_kfold_uses_positions_not_ranks() -> None:
    rows = np.array([0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23], dtype=np.int64)
    fit, held = purged_kfold(rows, k=3, horizon=7)[1]       # held 10..13
    assert held.tolist() == [10, 11, 12, 13]
    assert fit.tolist() == [0, 1, 2, 20, 21, 22, 23]        # 3 + 7 >= 10 is purged
    with pytest.raises(ValueError):
        purged_kfold(rows, k=1, horizon=1)
    with pytest.raises(ValueError):
        purged_kfold(rows[:2], k=3, horizon=1)
