"""The look-ahead check catches leaks and the live path equals the batch path, on
families built in the test (one honest, one leaking, one recursive)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feature_frames import synthetic_frame
from perptrader.features.base import Family, FeatureContext, FeatureSpec
from perptrader.features.compare import differences
from perptrader.features.incremental import IncrementalFeatures, incremental_check
from perptrader.features.lookahead import cut_positions, lookahead_check


def _family(name: str, fn, warmup: int = 20, memory: int | None = None) -> Family:
    col = f"{name}_x"
    return Family(name=name, description="test", requires=("close",),
                  specs=(FeatureSpec(col, "test", ("close",), warmup, memory),),
                  compute=lambda f, ctx: pd.DataFrame({col: fn(f["close"])}, index=f.index))


HONEST = _family("honest", lambda c: c.pct_change(5) / c.pct_change().rolling(20).std())
LEAKY = _family("leaky", lambda c: c.shift(-1) / c - 1)  # tomorrow's return
CENTRED = _family("centred", lambda c: c.rolling(11, center=True).mean() / c)
EMA = _family("ema", lambda c: c.ewm(span=20, adjust=False).mean() / c, warmup=20, memory=300)


def test_cut_positions_include_the_last_bar_dropped() -> None:
    assert cut_positions(100) == [35, 60, 80, 95, 99]
    assert cut_positions(2) == [1]


def test_clean_features_pass() -> None:
    frame = synthetic_frame(800)
    report = lookahead_check(frame, [HONEST, EMA], FeatureContext())
    assert report.ok, report.as_json()
    assert report.n_features == 2 and len(report.cuts) == 5


@pytest.mark.parametrize("leak", [LEAKY, CENTRED])
def test_leaks_are_named(leak: Family) -> None:
    frame = synthetic_frame(800)
    report = lookahead_check(frame, [HONEST, leak], FeatureContext())
    assert not report.ok
    assert list(report.offenders) == [leak.names[0]]
    js = report.as_json()
    assert js["offending_features"] == [leak.names[0]]
    assert js["details"][leak.names[0]]["rows"] >= 1


def test_differences_sees_nan_mismatch_and_value_changes() -> None:
    idx = pd.date_range("2024", periods=4, freq="h", tz="UTC")
    a = pd.DataFrame({"x": [1.0, 2.0, np.nan, 4.0], "y": [1.0, 1.0, 1.0, 1.0]}, index=idx)
    b = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [1.0, 1.0, 1.0 + 1e-6, 1.0]}, index=idx)
    found = {d.column: d for d in differences(a, b)}
    assert set(found) == {"x", "y"}
    assert found["x"].nan_mismatches == 1 and found["x"].first == idx[2]
    assert found["y"].max_abs_diff == pytest.approx(1e-6)


def test_live_path_equals_batch_with_a_bounded_buffer() -> None:
    frame = synthetic_frame(1500)
    report = incremental_check(frame, [HONEST, EMA], FeatureContext(), bars=60)
    assert report.ok, report.as_json()
    assert report.buffer_rows == 300 + 64  # the longest history plus the margin


def test_live_path_with_too_short_a_memory_is_caught() -> None:
    # an EMA declared with a 20-row memory really remembers ~300 rows: the bounded
    # buffer then differs from the batch value, and the check says so
    short = _family("short", lambda c: c.ewm(span=20, adjust=False).mean() / c, memory=20)
    report = incremental_check(synthetic_frame(1500), [short], FeatureContext(), bars=30)
    assert not report.ok and report.differences[0].column == "short_x"


def test_live_update_refuses_old_or_multi_row_bars() -> None:
    frame = synthetic_frame(400)
    live = IncrementalFeatures([HONEST], FeatureContext(), frame.iloc[:300])
    with pytest.raises(ValueError, match="not after"):
        live.update(frame.iloc[[100]])
    with pytest.raises(ValueError, match="one bar"):
        live.update(frame.iloc[300:302])
    value = live.update(frame.iloc[300])  # a Series named by its open time works too
    assert value.name == frame.index[300]


def test_live_update_appends_book_events_for_book_families() -> None:
    # a family that counts the book snapshots inside each bar [open, close)
    def count(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
        ts = pd.to_datetime(ctx.book["ts"], utc=True) if ctx.book is not None else None
        n = [np.nan if ts is None else float(((ts >= t) & (ts < t + pd.Timedelta("1h"))).sum())
             for t in frame.index]
        return pd.DataFrame({"bk_n": n}, index=frame.index)

    fam = Family(name="bk", description="test", requires=(), compute=count,
                 specs=(FeatureSpec("bk_n", "snapshots in the bar", (), 0),))
    frame = synthetic_frame(120)
    snaps = pd.DataFrame({"ts": frame.index[:100] + pd.Timedelta("10min")})
    live = IncrementalFeatures([fam], FeatureContext(book=snaps), frame.iloc[:100])
    new = pd.DataFrame({"ts": [frame.index[100] + pd.Timedelta(m, "min") for m in (1, 2)]})
    assert live.update(frame.iloc[[100]], book=new)["bk_n"] == 2.0
    assert live.update(frame.iloc[[101]])["bk_n"] == 0.0  # no events in that bar
