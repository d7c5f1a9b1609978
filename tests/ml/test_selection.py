"""Feature selection: correlation clusters, purged (clustered) permutation importance,
named selected sets and training on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_frames import planted_ml_frame
from perptrader.ml.base import MLFrame
from perptrader.ml.selection import (
    feature_clusters,
    load_selected_set,
    purged_permutation_importance,
    restrict,
    save_selected_set,
    select_features,
    spearman_abs,
    time_purged_kfold,
)

QUICK = {"params": {"n_estimators": 80, "early_stopping_rounds": 15, "num_threads": 1,
                    "min_child_samples": 20, "feature_fraction": 1.0}}


def with_copies(n: int = 1500, seed: int = 0, signal: float = 0.8) -> MLFrame:
    """``planted_ml_frame`` plus two near-copies of ``sig`` (one noisy, one monotone)."""
    base = planted_ml_frame(n, seed, signal=signal, noise_columns=4, horizon=2)
    frame = base.frame.copy()
    rng = np.random.default_rng(seed + 100)
    frame["sig_copy"] = frame["sig"] + rng.normal(0, 0.1, n)
    frame["sig_exp"] = np.exp(frame["sig"])
    features = ["noise0", "sig", "noise1", "sig_copy", "noise2", "sig_exp", "noise3"]
    return MLFrame(frame, features, horizon=base.horizon)


def test_spearman_abs_is_rank_correlation_with_nan() -> None:
    data = with_copies(400)
    rows = np.arange(len(data))
    corr = spearman_abs(data, rows)
    known = data.frame["sig"].notna()
    assert corr.loc["sig", "sig_exp"] == pytest.approx(1.0, abs=1e-9)
    exact = data.frame[["noise0", "noise1"]].corr(method="spearman").iloc[0, 1]
    assert corr.loc["noise0", "noise1"] == pytest.approx(abs(exact), abs=1e-12)
    # with NaN: mean-rank imputation, close to the pairwise-complete figure
    pairwise = data.frame.loc[known, ["sig_copy", "sig"]].corr(method="spearman").iloc[0, 1]
    assert corr.loc["sig_copy", "sig"] == pytest.approx(pairwise, abs=0.02)
    np.testing.assert_allclose(corr.to_numpy(), corr.to_numpy().T)


def test_correlated_duplicates_land_in_one_cluster() -> None:
    data = with_copies()
    clusters = feature_clusters(data, np.arange(1000), threshold=0.7)
    assert ["sig", "sig_copy", "sig_exp"] in clusters
    assert sorted(map(len, clusters)) == [1, 1, 1, 1, 3]
    assert sorted(c for g in clusters for c in g) == sorted(data.features)
    # a threshold above their correlation separates the noisy copy
    tight = feature_clusters(data, np.arange(1000), threshold=0.9999)
    assert ["sig", "sig_exp"] in tight and ["sig_copy"] in tight


def test_permutation_importance_finds_the_planted_feature() -> None:
    data = planted_ml_frame(1600, 1, signal=0.8, noise_columns=5, horizon=2)
    imp = purged_permutation_importance(data, np.arange(1600), k=3, model_kwargs=QUICK)
    assert imp.columns.tolist() == ["feature", "mean", "std", "f1_mean", "f1_std"]
    assert imp["feature"].iloc[0] == "sig"
    top = imp.set_index("feature")
    noise = top.drop(index="sig")
    assert top.loc["sig", "mean"] > 0.2 and top.loc["sig", "f1_mean"] > 0.2
    assert top.loc["sig", "mean"] > 10 * noise["mean"].abs().max()
    assert (noise["f1_mean"].abs() < 0.05).all()


def test_clustered_importance_sees_what_duplicates_hide() -> None:
    """Shuffling one of three copies of the signal costs little (the others stand in);
    shuffling the cluster jointly costs what the signal is worth."""
    data = with_copies(1600, seed=2)
    rows = np.arange(1600)
    single = purged_permutation_importance(data, rows, k=3, model_kwargs=QUICK)
    clusters = feature_clusters(data, rows)
    joint = purged_permutation_importance(data, rows, k=3, model_kwargs=QUICK,
                                          clusters=clusters)
    assert joint.columns.tolist() == ["cluster", "members", "size", "mean", "std",
                                      "f1_mean", "f1_std"]
    assert joint["members"].iloc[0] == ["sig", "sig_copy", "sig_exp"]
    best_single = single.set_index("feature").loc[["sig", "sig_copy", "sig_exp"], "mean"].max()
    assert joint["mean"].iloc[0] > 2 * best_single
    assert joint["mean"].iloc[1:].abs().max() < 0.02


def test_selection_reads_only_the_given_rows() -> None:
    """Scrambling every row after the given (training) rows changes nothing."""
    data = with_copies(1600, seed=3)
    rows = np.arange(1000)
    spoiled = data.frame.copy()
    rng = np.random.default_rng(9)
    spoiled.iloc[1000:, :] = rng.permutation(spoiled.iloc[1000:].to_numpy())
    spoiled.loc[spoiled.index[1000:], "label_adaptive"] = rng.choice([-1.0, 0.0, 1.0], 600)
    other = MLFrame(spoiled, data.features, horizon=data.horizon)
    tables = [purged_permutation_importance(d, rows, k=3, model_kwargs=QUICK,
                                            clusters=feature_clusters(d, rows))
              for d in (data, other)]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert (select_features(data, rows, k=3, model_kwargs=QUICK)
            == select_features(other, rows, k=3, model_kwargs=QUICK))


def test_select_features_representative_or_all_members() -> None:
    data = with_copies(1600, seed=4)
    rows = np.arange(1600)
    one = select_features(data, rows, keep=1, k=3, model_kwargs=QUICK)
    assert len(one) == 1 and one[0] in ("sig", "sig_copy", "sig_exp")
    every = select_features(data, rows, keep=1, members="all", k=3, model_kwargs=QUICK)
    assert every == ["sig", "sig_copy", "sig_exp"]
    positive = select_features(data, rows, k=3, model_kwargs=QUICK)
    assert one[0] in positive
    assert len([c for c in positive if c.startswith("sig")]) == 1
    strict = select_features(data, rows, k=3, model_kwargs=QUICK, min_t=3.0)
    assert strict == one and set(strict) <= set(positive)
    with pytest.raises(ValueError, match="members"):
        select_features(data, rows, members="some")


def test_pooled_rows_are_blocked_on_time() -> None:
    """On a table with several rows per time, no time is both fitted and held out, and
    the purge is in bars of time, not in interleaved rows."""
    n, h = 300, 5
    idx = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC").repeat(3)
    frame = pd.DataFrame({"x": np.arange(3 * n, dtype=float),
                          "label_adaptive": np.zeros(3 * n)}, index=idx)
    data = MLFrame(frame, ["x"], horizon=h)
    folds = time_purged_kfold(data, np.arange(3 * n), k=4, embargo=h)
    assert len(folds) == 4
    hour = pd.Timedelta("1h")
    for fit, held in folds:
        fit_t, held_t = data.index[fit], data.index[held]
        assert not np.isin(fit_t.asi8, held_t.asi8).any()
        assert len(held) % 3 == 0                            # whole times only
        before = fit_t[fit_t < held_t.min()]
        after = fit_t[fit_t > held_t.max()]
        assert len(before) == 0 or before.max() + h * hour < held_t.min()
        assert len(after) == 0 or after.min() - h * hour > held_t.max()


def test_importance_refuses_sequence_models() -> None:
    data = planted_ml_frame(300, 0)
    with pytest.raises(ValueError, match="row-wise"):
        purged_permutation_importance(data, np.arange(300), kind="xlstm-pattern")


def test_named_set_round_trip_and_training_on_it(tmp_path: Path) -> None:
    from perptrader.ml.models import make_model

    data = with_copies(800)
    path = save_selected_set("btc_sel", "default", ["sig", "noise1"], root=tmp_path,
                             source={"symbol": "TEST", "rows": [0, 600]})
    assert path == tmp_path / "feature_sets" / "btc_sel.json"
    body = json.loads(path.read_text())
    assert set(body) == {"name", "base", "columns", "created", "source"}
    loaded = load_selected_set("btc_sel", root=tmp_path)
    assert loaded["columns"] == ["sig", "noise1"] and loaded["base"] == "default"
    small = restrict(data, loaded["columns"])
    assert small.features == ["sig", "noise1"] and small.frame is data.frame
    assert small.meta["feature_hash"].startswith("sel-")
    model = make_model("lightgbm", **QUICK)
    model.fit(small, np.arange(500), np.arange(520, 650))
    assert model.columns == ["sig", "noise1"]
    assert model.predict_proba(small, np.arange(700, 790)).shape == (90, 3)
    with pytest.raises(KeyError, match="not features"):
        restrict(data, ["sig", "absent"])
    with pytest.raises(FileNotFoundError, match="btc_sel"):
        load_selected_set("other", root=tmp_path)
    with pytest.raises(ValueError, match="invalid feature-set name"):
        save_selected_set("../escape", "default", ["sig"], root=tmp_path)
    with pytest.raises(ValueError, match="twice"):
        save_selected_set("dup", "default", ["sig", "sig"], root=tmp_path)


def test_default_root_is_the_data_dir(tmp_path: Path) -> None:
    """conftest points PERPTRADER__DATA_DIR at tmp_path / "user_data"."""
    path = save_selected_set("plain", "bars", ["a"])
    assert path == tmp_path / "user_data" / "feature_sets" / "plain.json"
    assert load_selected_set("plain")["columns"] == ["a"]
