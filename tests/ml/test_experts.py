"""The xLSTM experts and the LSTM reference: tiny nets, few steps, CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ml_frames import synthetic_ml_frame
from perptrader.ml.base import Classifier, MLFrame, feature_groups
from perptrader.ml.experts import ExpertConfig, LSTMReference, XLSTMExpert, usable_rows
from perptrader.ml.nn.training import macro_f1

TINY = {"seq_len": 16, "d_model": 16, "n_blocks": 2, "slstm_at": (1,), "embedding_dim": 8,
        "batch_size": 32, "warmup_steps": 2, "cpu_threads": 1, "device": "cpu"}


@pytest.fixture(autouse=True)
def _deterministic():
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture(scope="module")
def data() -> MLFrame:
    return synthetic_ml_frame()


@pytest.fixture(scope="module")
def fitted(data) -> tuple[XLSTMExpert, list]:
    """A pattern expert fitted for a few epochs on a strided slice of the synthetic frame
    (seed and lr chosen so that validation macro-F1 peaks at epoch 1 and training stops
    early: the restore of the best epoch is exercised, not assumed)."""
    calls = []
    model = XLSTMExpert("pattern", ExpertConfig(**TINY, max_epochs=4, patience=2, seed=0,
                                                 lr=1e-2, schedule="plateau",
                                                 train_stride=12))
    model.fit(data, np.arange(0, 1500), np.arange(1520, 1720),
              progress=lambda *a: calls.append(a))
    return model, calls


def planted(n: int = 300, seed: int = 3) -> MLFrame:
    """Indicator columns whose value at t (relative to its window) gives the label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(-1, 2, n)
    signal = rng.normal(0, 0.3, n) + 3.0 * y
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    frame = pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99,
                          "close": close, "volume": np.full(n, 5.0),
                          "momentum_signal": signal, "trend_noise": rng.normal(0, 1, n),
                          "label_adaptive": y.astype(float)},
                         index=pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC"))
    frame.iloc[100:110, frame.columns.get_loc("label_adaptive")] = np.nan
    return MLFrame(frame, ["momentum_signal", "trend_noise"])


def test_kinds_roles_and_inputs(data):
    assert XLSTMExpert("pattern").kind == "xlstm-pattern"
    assert XLSTMExpert("indicator").kind == "xlstm-indicator"
    assert LSTMReference().kind == "lstm"
    assert isinstance(XLSTMExpert("pattern"), Classifier)
    assert isinstance(LSTMReference(), Classifier)
    with pytest.raises(ValueError):
        XLSTMExpert("volume")
    groups = feature_groups(data.features)
    assert XLSTMExpert("indicator").input_columns(data) == groups["indicator"]
    with pytest.raises(ValueError):
        ExpertConfig(schedule="linear")


def test_usable_rows_skips_the_first_window(data):
    rows = np.arange(100)
    assert usable_rows(data, rows, ExpertConfig(seq_len=16)).tolist() == list(range(15, 100))
    assert XLSTMExpert("pattern", ExpertConfig(seq_len=64)).usable_rows(data, rows)[0] == 63


def test_fit_reports_history_and_progress(fitted, data):
    model, calls = fitted
    hist = model.history
    assert len(hist) == len(calls) >= 1
    assert set(hist[0]) == {"epoch", "train_loss", "val_loss", "val_macro_f1", "lr", "seconds"}
    assert [c[:3] for c in calls] == [("epoch", i + 1, 4) for i in range(len(calls))]
    assert set(calls[0][3]) == {"train_loss", "val_loss", "val_macro_f1", "lr"}
    # every 12th of the usable (>= L-1), labelled train rows
    assert model.fit_info["n_train"] == len(data.labelled(np.arange(15, 1500))[::12])
    assert model.n_parameters == model.fit_info["n_parameters"] > 0


def test_early_stopping_restores_the_best_epoch(fitted, data):
    model, _ = fitted
    hist = model.history
    f1s = [h["val_macro_f1"] for h in hist]
    best = model.fit_info["best_epoch"]
    assert f1s[best - 1] == max(f1s)
    assert best < len(hist) == best + model.config.patience  # stopped early after best
    assert model.fit_info["stopped_early"]
    valid = data.labelled(np.arange(1520, 1720))
    pred = model.predict_proba(data, valid).argmax(axis=1)
    assert macro_f1(data.y[valid], pred) == pytest.approx(max(f1s), abs=1e-9)


def test_predict_and_embed_shapes(fitted, data):
    model, _ = fitted
    rows = np.arange(1800, 1850)
    proba = model.predict_proba(data, rows)
    assert proba.shape == (50, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert model.embed(data, rows).shape == (50, 8)
    with pytest.raises(ValueError, match="usable_rows"):
        model.predict_proba(data, np.arange(0, 20))


def test_save_load_roundtrip(fitted, data, tmp_path: Path):
    model, _ = fitted
    model.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"model.pt", "config.json"}
    again = XLSTMExpert.load(tmp_path)
    assert again.kind == model.kind and again.config == model.config
    rows = np.arange(1900, 1960)
    np.testing.assert_array_equal(again.predict_proba(data, rows),
                                  model.predict_proba(data, rows))
    np.testing.assert_array_equal(again.embed(data, rows), model.embed(data, rows))
    with pytest.raises(ValueError, match="xlstm-pattern"):
        LSTMReference.load(tmp_path)


def test_expert_learns_a_planted_signal():
    data = planted()
    rows = np.arange(len(data))
    cfg = ExpertConfig(**{**TINY, "batch_size": 16}, max_epochs=4, patience=4, lr=3e-3,
                       dropout=0.0, label_smoothing=0.0)
    model = XLSTMExpert("indicator", cfg)
    train_rows, valid_rows = rows[:240], rows[250:]
    torch.manual_seed(cfg.seed)
    model.fit(data, train_rows, valid_rows)
    fitted_rows = data.labelled(usable_rows(data, train_rows, cfg))
    assert model.fit_info["n_train"] == len(fitted_rows)  # early + unlabelled rows skipped
    acc = np.mean(model.predict_proba(data, fitted_rows).argmax(axis=1) == data.y[fitted_rows])
    assert model.history[-1]["train_loss"] < model.history[0]["train_loss"]
    assert acc > 0.8  # chance is ~1/3


def test_lstm_reference_runs_and_repeats(data, tmp_path: Path):
    cfg = ExpertConfig(**TINY, max_epochs=1, train_stride=20, schedule="plateau")
    a, b = LSTMReference(cfg), LSTMReference(cfg)
    for m in (a, b):
        m.fit(data, np.arange(0, 1500), np.arange(1520, 1620))
    rows = np.arange(2000, 2050)
    pa = a.predict_proba(data, rows)
    assert pa.shape == (50, 3)
    np.testing.assert_array_equal(pa, b.predict_proba(data, rows))  # same seed, same net
    a.save(tmp_path)
    np.testing.assert_array_equal(LSTMReference.load(tmp_path).predict_proba(data, rows), pa)
    with pytest.raises(ValueError, match="lstm"):
        XLSTMExpert.load(tmp_path)


def test_fit_without_validation_windows_is_an_error(data):
    with pytest.raises(ValueError, match="validation"):
        XLSTMExpert("pattern", ExpertConfig(**TINY)).fit(data, np.arange(100, 300),
                                                         np.arange(0, 10))


@pytest.mark.integration
def test_experts_on_the_real_btc_table(real_btc_1h_ml):
    """Real features (warm-up NaNs, funding/mark columns): finite windows, a tiny fit."""
    data = real_btc_1h_ml
    n = len(data)
    cfg = ExpertConfig(**TINY, max_epochs=1, train_stride=150)
    for role in ("pattern", "indicator"):
        model = XLSTMExpert(role, cfg)
        model.columns = model.input_columns(data)
        source = model._source(data, torch.device("cpu"))
        win = source.batch(np.array([cfg.seq_len - 1, n // 2, n - 1]))
        assert torch.isfinite(win).all()
        assert source.n_inputs == len(model.columns) + (5 if role == "pattern" else 0)
    model = XLSTMExpert("pattern", cfg)
    model.fit(data, np.arange(n - 6000, n - 1500), np.arange(n - 1400, n - 1000))
    proba = model.predict_proba(data, np.arange(n - 500, n))
    assert proba.shape == (500, 3) and np.isfinite(proba).all()
