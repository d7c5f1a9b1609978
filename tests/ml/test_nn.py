"""The neural building blocks: windows, focal loss, schedule, networks (small, CPU)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from perptrader.ml.base import MLFrame
from perptrader.ml.nn.losses import FocalLoss, inverse_frequency_alpha
from perptrader.ml.nn.networks import LSTMNet, XLSTMNet, count_parameters
from perptrader.ml.nn.training import macro_f1, warmup_cosine, warmup_only
from perptrader.ml.nn.windows import Z_CLIP, WindowSource, usable_rows

L = 8
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def small_frame(n: int = 60, seed: int = 0, nan_at: int | None = None) -> MLFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0, 0.003, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.004, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.004, n)))
    feat = rng.normal(5, 2, n)
    if nan_at is not None:
        feat[nan_at] = np.nan
    frame = pd.DataFrame({
        "open": open_, "high": high, "low": low, "close": close,
        "volume": rng.uniform(10, 20, n), "vsa_x": feat, "candle_flag": np.zeros(n),
        "label_adaptive": rng.integers(-1, 2, n).astype(float)},
        index=pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC"))
    return MLFrame(frame, ["vsa_x", "candle_flag"])


def test_usable_rows_skips_rows_without_a_full_window():
    rows = np.arange(20)
    assert usable_rows(60, rows, L).tolist() == list(range(L - 1, 20))
    with pytest.raises(IndexError):
        usable_rows(10, np.array([10]), L)


def test_window_uses_only_past_rows():
    data = small_frame()
    t = 30
    cut = MLFrame(data.frame.iloc[: t + 1], data.features)
    full = WindowSource.from_frame(data, data.features, price=True, seq_len=L, device=CPU)
    past = WindowSource.from_frame(cut, cut.features, price=True, seq_len=L, device=CPU)
    a, b = full.batch(np.array([t])), past.batch(np.array([t]))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # a change in the future of t changes nothing, a change inside the window does
    shifted = data.frame.copy()
    shifted.loc[shifted.index[t + 1:], "close"] *= 2.0
    shifted.loc[shifted.index[t + 1:], "vsa_x"] += 50.0
    moved = WindowSource.from_frame(MLFrame(shifted, data.features), data.features,
                                    price=True, seq_len=L, device=CPU)
    torch.testing.assert_close(moved.batch(np.array([t])), a, rtol=0, atol=0)
    assert not torch.equal(moved.batch(np.array([t + 1])), full.batch(np.array([t + 1])))


def test_window_normalisation_values():
    data = small_frame()
    src = WindowSource.from_frame(data, data.features, price=True, seq_len=L, device=CPU)
    t = 40
    win = src.batch(np.array([t]))[0].numpy()
    assert win.shape == (L, 5 + 2) and src.n_inputs == 7
    f = data.frame.iloc[t - L + 1: t + 1]
    rng_mean = np.log(f["high"] / f["low"]).mean()
    np.testing.assert_allclose(win[:, 3], np.log(f["close"] / f["close"].iloc[-1]) / rng_mean,
                               atol=2e-3)
    assert win[-1, 3] == 0.0  # the last close is the reference
    lv = np.log1p(f["volume"].to_numpy())
    np.testing.assert_allclose(win[:, 4], lv - lv.mean(), atol=1e-4)
    x = f["vsa_x"].to_numpy()
    np.testing.assert_allclose(win[:, 5], (x - x.mean()) / x.std(), atol=1e-4)
    assert (win[:, 6] == 0).all()  # constant column: z = 0, not NaN


def test_window_nan_becomes_zero_with_missing_channel():
    data = small_frame(nan_at=35)
    src = WindowSource.from_frame(data, ["vsa_x"], price=False, seq_len=L, device=CPU,
                                  missing_channel=True)
    win = src.batch(np.array([38]))[0].numpy()
    pos = 35 - (38 - L + 1)
    assert src.n_inputs == 2 and np.isfinite(win).all()
    assert win[pos, 0] == 0.0 and win[pos, 1] == 1.0 and win[:, 1].sum() == 1.0
    known = np.delete(win[:, 0], pos)
    assert abs(known.mean()) < 1e-5  # the z-score ignores the NaN row
    assert np.abs(win).max() <= Z_CLIP


def test_flat_window_does_not_explode():
    data = small_frame()
    flat = data.frame.copy()
    for col in ("open", "high", "low"):
        flat[col] = flat["close"]  # high == low: zero bar range
    src = WindowSource.from_frame(MLFrame(flat, data.features), [], price=True, seq_len=L,
                                  device=CPU)
    win = src.batch(np.array([40]))[0].numpy()
    f = flat.iloc[40 - L + 1: 41]
    np.testing.assert_allclose(win[:, 3], np.log(f["close"] / f["close"].iloc[-1]) / 1e-4,
                               rtol=1e-3, atol=1e-2)


def test_window_refuses_rows_without_full_window():
    data = small_frame()
    src = WindowSource.from_frame(data, ["vsa_x"], price=False, seq_len=L, device=CPU)
    with pytest.raises(IndexError):
        src.batch(np.array([L - 2]))


def test_focal_equals_cross_entropy_without_focusing():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 3, generator=gen)
    y = torch.randint(0, 3, (64,), generator=gen)
    torch.testing.assert_close(FocalLoss(None, gamma=0.0)(logits, y),
                               F.cross_entropy(logits, y))
    torch.testing.assert_close(FocalLoss(np.ones(3), gamma=0.0, label_smoothing=0.1)(logits, y),
                               F.cross_entropy(logits, y, label_smoothing=0.1))


def test_focal_down_weights_easy_examples():
    easy = torch.tensor([[6.0, 0.0, 0.0]])
    hard = torch.tensor([[0.3, 0.0, 0.0]])
    y = torch.tensor([0])
    ratio = [float(FocalLoss(None, gamma=2.0)(lg, y) / F.cross_entropy(lg, y))
             for lg in (easy, hard)]
    assert ratio[0] < 0.01 < ratio[1] < 1.0
    # alpha scales a class's loss
    a = FocalLoss(np.array([2.0, 1.0, 1.0]), gamma=2.0)(hard, y)
    torch.testing.assert_close(a, 2 * FocalLoss(None, gamma=2.0)(hard, y))


def test_inverse_frequency_alpha():
    alpha = inverse_frequency_alpha(np.array([0] * 10 + [1] * 30 + [2] * 20), 3)
    assert alpha.mean() == pytest.approx(1.0)
    assert alpha[0] > alpha[2] > alpha[1]
    assert alpha[0] / alpha[1] == pytest.approx(3.0)


def test_warmup_cosine_shape():
    warm, total = 10, 110
    f = np.array([warmup_cosine(s, warm, total) for s in range(total + 1)])
    np.testing.assert_allclose(f[:warm], np.arange(1, warm + 1) / warm)
    assert f[warm] == pytest.approx(1.0)
    assert np.all(np.diff(f[warm:]) <= 1e-12)  # monotone decay after warm-up
    assert f[warm + 50] == pytest.approx(0.5)  # half way: cos(pi/2)
    assert f[total] == pytest.approx(0.0, abs=1e-12)
    assert warmup_only(3, 10) == pytest.approx(0.4) and warmup_only(50, 10) == 1.0


def test_macro_f1_matches_definition():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    f0, f1, f2 = 2 / 4, 2 * 2 / (2 * 2 + 1), 2 / 3
    assert macro_f1(y, p) == pytest.approx(np.mean([f0, f1, f2]))
    assert macro_f1(y, y) == 1.0


@pytest.mark.parametrize("slstm_at,n_blocks", [((1,), 2), ((0,), 1)])
def test_xlstm_net_with_vanilla_slstm_on_cpu(slstm_at, n_blocks):
    torch.manual_seed(0)
    net = XLSTMNet(7, seq_len=L, d_model=16, n_blocks=n_blocks, slstm_at=slstm_at,
                   embedding_dim=8, dropout=0.0, slstm_backend="vanilla")
    kinds = [type(b).__name__ for b in net.core.blocks]
    assert kinds[slstm_at[0]] == "sLSTMBlock"
    cell = net.core.blocks[slstm_at[0]].xlstm.slstm_cell
    assert type(cell).__name__ == "sLSTMCell_vanilla"
    x = torch.randn(4, L, 7, requires_grad=True)
    logits, emb = net(x)
    assert logits.shape == (4, 3) and emb.shape == (4, 8)
    logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    # causal: the output at the last step does not depend on... nothing after it exists,
    # but it must depend on the first step of the window (the recurrence carries it)
    assert float(x.grad[:, 0].abs().sum()) > 0
    assert count_parameters(net) > 0


def test_lstm_net_shapes_and_size():
    net = LSTMNet(7, d_model=16, n_layers=2, embedding_dim=8, dropout=0.1)
    logits, emb = net(torch.randn(3, L, 7))
    assert logits.shape == (3, 3) and emb.shape == (3, 8)
    # 2 LSTM layers of width 16: 2 * 4 * (16*16 + 16*16 + 2*16) parameters
    assert sum(p.numel() for p in net.core.parameters()) == 2 * 4 * (2 * 16 * 16 + 2 * 16)


def test_xlstm_rejects_bad_sizes():
    with pytest.raises(ValueError):
        XLSTMNet(7, seq_len=L, d_model=18, n_blocks=2, slstm_at=(1,), embedding_dim=8,
                 dropout=0.0, slstm_backend="vanilla")
    with pytest.raises(ValueError):
        XLSTMNet(7, seq_len=L, d_model=16, n_blocks=2, slstm_at=(2,), embedding_dim=8,
                 dropout=0.0, slstm_backend="vanilla")
