"""The build pipeline, the CLI and the generated catalogue, on synthetic and real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from feature_checks import assert_frames_close
from feature_frames import synthetic_frame
from perptrader.cli import app
from perptrader.features.base import FeatureContext
from perptrader.features.catalogue import catalogue_markdown
from perptrader.features.incremental import incremental_check
from perptrader.features.lookahead import lookahead_check
from perptrader.features.pipeline import build, compute_features, read_metadata, write_parquet
from perptrader.features.registry import all_families
from perptrader.features.sets import FEATURE_SETS, get_set

DOCS = Path(__file__).resolve().parents[2] / "docs" / "features.md"


def test_catalogue_is_consistent_and_sets_name_known_families() -> None:
    families = all_families()
    for s in FEATURE_SETS.values():
        for name in (*s.families, *s.book_families, *(n for _, ns in s.higher for n in ns)):
            assert name in families, f"set {s.name} names unknown family {name}"


def test_docs_features_md_is_generated_from_the_code() -> None:
    assert DOCS.read_text() == catalogue_markdown(), (
        "docs/features.md is stale: run `perptrader features list --markdown > "
        "docs/features.md`")


def test_build_on_synthetic_frame_drops_warmup_and_records_metadata(tmp_path: Path) -> None:
    frame = synthetic_frame(3000)
    ctx = FeatureContext(symbol="TEST", timeframe="1h")
    result = build(frame, get_set("default"), ctx)
    meta = result.meta
    assert meta["n_features"] == len(result.features) >= 150
    assert meta["warmup_rows_dropped"] == result.plan.warmup
    assert meta["rows"] == len(frame) - meta["warmup_rows_dropped"]
    assert "book" in meta["absent_families"]  # no order-book snapshots given
    assert all(c.startswith(("label_", "fwd_")) for c in result.labels)
    assert not np.isinf(result.frame[result.features].to_numpy()).any()
    path = tmp_path / "f.parquet"
    write_parquet(result, path)
    back = pd.read_parquet(path)
    assert list(back.columns) == result.features + result.labels
    assert read_metadata(path)["feature_hash"] == meta["feature_hash"]


def test_absent_inputs_remove_families_instead_of_zero_filling() -> None:
    frame = synthetic_frame(1500, extras=False)
    result = build(frame, get_set("default"), FeatureContext(timeframe="1h"), labels=False)
    for name in ("funding", "oi", "liquidation", "basis"):
        assert name in result.meta["absent_families"]
        assert not any(c.startswith(f"{name}_") for c in result.features)


def test_feature_hash_changes_with_the_feature_list() -> None:
    frame = synthetic_frame(1500)
    ctx = FeatureContext(timeframe="1h")
    a = build(frame, get_set("default"), ctx, labels=False).meta["feature_hash"]
    b = build(frame, get_set("bars"), ctx, labels=False).meta["feature_hash"]
    c = build(frame.iloc[100:], get_set("bars"), ctx, labels=False).meta["feature_hash"]
    assert a != b and b == c


def test_full_default_set_has_no_lookahead_on_synthetic_data() -> None:
    frame = synthetic_frame(2500)
    ctx = FeatureContext(timeframe="1h")
    result = build(frame, get_set("default"), ctx, labels=False)
    report = lookahead_check(frame, result.plan.families, ctx)
    assert report.ok, report.as_json()["offending_features"]


def test_cli_build_list_and_checks(tmp_path: Path) -> None:
    import os

    from perptrader.core.instruments import Instrument
    from perptrader.marketdata.dataset import Dataset, validate
    from perptrader.marketdata.kinds import Kind
    from perptrader.marketdata.store.duckdb_store import DuckDBStore

    frame = synthetic_frame(2200, extras=False).reset_index()
    ds = Dataset(Kind.OHLCV, Instrument.parse("BTCUSDT"), frame, "1h", source="synthetic")
    # the store the CLI opens: data_dir (set per test by conftest) / market.duckdb
    with DuckDBStore(Path(os.environ["PERPTRADER__DATA_DIR"]) / "market.duckdb") as store:
        store.migrate()
        store.write([validate(ds)])
    runner = CliRunner()
    out = tmp_path / "f.parquet"
    res = runner.invoke(app, ["features", "build", "--symbol", "BTCUSDT", "--timeframe", "1h",
                              "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    for key in ("n_features", "rows", "start", "end", "feature_hash"):
        assert key in data
    assert out.exists() and data["n_features"] >= 150
    res = runner.invoke(app, ["features", "lookahead-check", "--symbol", "BTCUSDT", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["ok"] is True
    res = runner.invoke(app, ["features", "incremental-check", "--bars", "5", "--json"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["features", "list", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["families"]
    res = runner.invoke(app, ["features", "build", "--out", str(out), "--set", "nope"])
    assert res.exit_code == 2 and "unknown feature set" in res.output


# ------------------------------------------------------------------ real data


@pytest.mark.integration
@pytest.mark.slow
def test_real_btc_1h_build_lookahead_and_live_path(real_btc_1h: pd.DataFrame) -> None:
    ctx = FeatureContext(symbol="BTCUSDT", timeframe="1h")
    result = build(real_btc_1h, get_set("default"), ctx)
    assert result.meta["n_features"] >= 150
    families = result.plan.families
    report = lookahead_check(real_btc_1h, families, ctx)
    assert report.ok, report.as_json()["offending_features"]
    live = incremental_check(real_btc_1h, families, ctx, bars=12)
    assert live.ok, live.as_json()["differing_features"]
    batch = compute_features(real_btc_1h, families, ctx)
    assert_frames_close(batch.loc[result.frame.index, result.features],
                        result.frame[result.features], what="build vs compute")
