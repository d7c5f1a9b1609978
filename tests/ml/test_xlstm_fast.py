"""The fast xLSTM forward (``ml.nn.networks``, kernel="fast") against the ``xlstm``
package's own forward over the same parameters: same outputs and gradients, causal, and a
model saved before the ``xlstm_kernel`` knob existed still loads and predicts the same."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from xlstm.blocks.mlstm.backends import (
    parallel_stabilized_simple,
    recurrent_step_stabilized_simple,
)
from xlstm.blocks.slstm.src.vanilla import slstm_forward, slstm_pointwise_function_registry

from ml_frames import synthetic_ml_frame
from perptrader.ml.experts import ExpertConfig, XLSTMExpert
from perptrader.ml.nn.networks import (
    SLSTMRecurrence,
    XLSTMNet,
    mlstm_parallel,
)

N_INPUTS, SEQ, D_MODEL = 7, 12, 16
LAYOUTS = [(1,), (), (0, 1)]  # mLSTM + sLSTM, mLSTM only, sLSTM only
#: leaner block layouts (ExpertConfig's mlstm_proj_factor, slstm_ffn_factor, mlstm_heads)
#: at d_model 64, where the package's rounding of widths to multiples of 64 leaves the
#: mLSTM inner width at factor x d_model (at 16 every factor <= 4 rounds up to 64)
LEAN_D_MODEL = 64
LEAN_LAYOUTS = [
    {"mlstm_proj_factor": 1.0, "slstm_ffn_factor": 0.0, "mlstm_heads": 1},
    {"mlstm_proj_factor": 1.0, "slstm_ffn_factor": 0.0, "mlstm_heads": 4},
    {"mlstm_proj_factor": 2.0, "slstm_ffn_factor": 0.0, "mlstm_heads": 2},
    {"mlstm_proj_factor": 1.0, "slstm_ffn_factor": 1.3, "mlstm_heads": 1},
]


def net(kernel: str, slstm_at: tuple[int, ...], dropout: float = 0.0,
        d_model: int = D_MODEL, **layout: float) -> XLSTMNet:
    torch.manual_seed(5)
    return XLSTMNet(N_INPUTS, seq_len=SEQ, d_model=d_model, n_blocks=2, slstm_at=slstm_at,
                    embedding_dim=8, dropout=dropout, slstm_backend="vanilla", kernel=kernel,
                    **layout)


def pair(slstm_at: tuple[int, ...], d_model: int = D_MODEL, **layout: float
         ) -> tuple[XLSTMNet, XLSTMNet]:
    """The package's and the fast forward over the same weights; the recurrent kernels and
    the forget-gate weights are randomised (both start at zero), so every path counts."""
    package, fast = net("package", slstm_at, d_model=d_model, **layout), \
        net("fast", slstm_at, d_model=d_model, **layout)
    with torch.no_grad():
        for name, p in package.named_parameters():
            if "recurrent_kernel" in name or name.endswith("fgate.weight"):
                p.normal_(0.0, 0.3)
    fast.load_state_dict(package.state_dict())
    return package, fast


@pytest.mark.parametrize("slstm_at", LAYOUTS)
@pytest.mark.parametrize("d_model", [D_MODEL, 20])  # 20: q/k/v blocks of 4 straddle heads
def test_fast_forward_and_gradients_equal_the_package(slstm_at, d_model):
    _assert_fast_equals_package(*pair(slstm_at, d_model))


@pytest.mark.parametrize("slstm_at", LAYOUTS)
@pytest.mark.parametrize("layout", LEAN_LAYOUTS)
def test_lean_layouts_fast_forward_and_gradients_equal_the_package(slstm_at, layout):
    """The fast forward computes the package's function in the leaner layouts too
    (narrower mLSTM, fewer or wider mLSTM heads, sLSTM block without feed-forward)."""
    package, fast = pair(slstm_at, LEAN_D_MODEL, **layout)
    for block, i in zip(fast.core.blocks, range(2), strict=True):
        if i in slstm_at:
            assert (block.ffn is None) == (layout["slstm_ffn_factor"] == 0)
        else:
            mlstm = block.xlstm
            assert mlstm.config._inner_embedding_dim == \
                layout["mlstm_proj_factor"] * LEAN_D_MODEL
            assert mlstm.mlstm_cell.config.num_heads == layout["mlstm_heads"]
    _assert_fast_equals_package(package, fast)


def _assert_fast_equals_package(package: XLSTMNet, fast: XLSTMNet) -> None:
    """Same logits, embeddings and parameter gradients (to float rounding)."""
    x = torch.randn(5, SEQ, N_INPUTS, generator=torch.Generator().manual_seed(1)) * 2.0
    (lp, ep), (lf, ef) = package(x), fast(x)
    torch.testing.assert_close(lf, lp, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ef, ep, rtol=1e-4, atol=1e-5)
    (lp.square().sum() + ep.sum()).backward()
    (lf.square().sum() + ef.sum()).backward()
    for (name, a), b in zip(package.named_parameters(), fast.parameters(), strict=True):
        scale = a.grad.abs().max().item() + 1e-8
        assert (a.grad - b.grad).abs().max().item() <= 1e-4 * scale, name


@pytest.mark.parametrize("kernel", ["fast", "package"])
def test_output_shapes(kernel):
    model = net(kernel, (1,))
    x = torch.randn(3, SEQ, N_INPUTS)
    logits, emb = model(x)
    assert logits.shape == (3, 3) and emb.shape == (3, 8)
    assert model.encode(model.input(x)).shape == (3, SEQ, D_MODEL)
    # windows shorter than seq_len (the causal mask is built for the actual length)
    assert model(x[:, -5:])[0].shape == (3, 3)


@pytest.mark.parametrize("slstm_at", LAYOUTS)
@pytest.mark.parametrize("layout", [{}, LEAN_LAYOUTS[0]])
def test_fast_form_is_causal(slstm_at, layout):
    """The state at step t is unchanged when only the inputs after t change."""
    _, model = pair(slstm_at, LEAN_D_MODEL if layout else D_MODEL, **layout)
    model.eval()
    x = torch.randn(2, SEQ, N_INPUTS)
    t = 6
    changed = x.clone()
    changed[:, t + 1:] = torch.randn(2, SEQ - t - 1, N_INPUTS) * 5.0
    with torch.no_grad():
        a, b = model.encode(model.input(x)), model.encode(model.input(changed))
    torch.testing.assert_close(a[:, :t + 1], b[:, :t + 1], rtol=0, atol=1e-6)
    assert (a[:, t + 1:] - b[:, t + 1:]).abs().max() > 1e-3  # the later steps do see it


def _slstm_inputs(dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    S, NH, B, DH = 6, 2, 3, 4
    pre = torch.randn(S, NH, B, 4, DH, generator=g, dtype=dtype) * 2.0
    recurrent = torch.randn(NH, 4 * DH, DH, generator=g, dtype=dtype) * 0.5
    return pre, recurrent


def test_slstm_recurrence_equals_the_package_loop():
    pre, recurrent = _slstm_inputs(torch.float64)
    S, NH, B, G, DH = pre.shape
    y = SLSTMRecurrence.apply(pre, recurrent)  # (S, NH, B, DH)
    # the package's vanilla loop: input (S, B, gate-major 4 x NH x DH), bias separate
    x = pre.permute(0, 2, 3, 1, 4).reshape(S, B, G * NH * DH)
    states = torch.zeros(4, B, NH * DH, dtype=pre.dtype)
    ref = slstm_forward(x, states, recurrent, torch.zeros(G * NH * DH, dtype=pre.dtype),
                        slstm_pointwise_function_registry["slstm"])[0][0, 1:]
    torch.testing.assert_close(y.permute(0, 2, 1, 3).reshape(S, B, NH * DH), ref)


def test_slstm_recurrence_gradient_is_exact():
    """The hand-written backward against finite differences (float64)."""
    pre, recurrent = _slstm_inputs(torch.float64, seed=3)
    pre.requires_grad_(True)
    recurrent.requires_grad_(True)
    assert torch.autograd.gradcheck(SLSTMRecurrence.apply, (pre, recurrent), eps=1e-6,
                                    atol=1e-6, rtol=1e-5)


def _mlstm_inputs(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    B, NH, S, DH = 2, 3, 10, 4
    q, k, v = (torch.randn(B, NH, S, DH, generator=g, dtype=torch.float64) for _ in range(3))
    igate = torch.randn(B, NH, S, generator=g, dtype=torch.float64) * 2.0
    fgate = torch.randn(B, NH, S, generator=g, dtype=torch.float64) * 3.0
    return q, k, v, igate, fgate


def test_mlstm_parallel_equals_the_package_parallel_and_recurrent_forms():
    q, k, v, igate, fgate = _mlstm_inputs()
    h = mlstm_parallel(q, k, v, igate, fgate)
    ref = parallel_stabilized_simple(q, k, v, igate.unsqueeze(-1), fgate.unsqueeze(-1))
    torch.testing.assert_close(h, ref)
    B, NH, S, DH = q.shape
    c = torch.zeros(B, NH, DH, DH, dtype=q.dtype)
    n = torch.zeros(B, NH, DH, 1, dtype=q.dtype)
    m = torch.zeros(B, NH, 1, 1, dtype=q.dtype)
    steps = []
    for t in range(S):
        h_t, (c, n, m) = recurrent_step_stabilized_simple(
            c, n, m, q[:, :, t:t + 1].clone(), k[:, :, t:t + 1].clone(),
            v[:, :, t:t + 1].clone(), igate[:, :, t, None, None], fgate[:, :, t, None, None])
        steps.append(h_t)
    # same function; the forms differ only in where eps = 1e-6 enters the normaliser
    torch.testing.assert_close(h, torch.cat(steps, dim=2), rtol=1e-4, atol=1e-5)


def test_mlstm_parallel_gradient_is_finite_and_exact():
    inputs = tuple(t.requires_grad_(True) for t in _mlstm_inputs(seed=4))
    assert torch.autograd.gradcheck(mlstm_parallel, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_kernel_names_are_checked():
    with pytest.raises(ValueError, match="xlstm_kernel"):
        ExpertConfig(xlstm_kernel="cuda")
    with pytest.raises(ValueError, match="kernel"):
        net("turbo", (1,))
    assert net("fast", (1,)).kernel == "fast"
    gpu_style = XLSTMNet(N_INPUTS, seq_len=SEQ, d_model=D_MODEL, n_blocks=1, slstm_at=(),
                         embedding_dim=8, dropout=0.0, slstm_backend="cuda", kernel="fast")
    assert gpu_style.kernel == "package"  # the package's fused kernels on a GPU


def test_a_model_saved_before_the_knob_loads_and_predicts_the_same(tmp_path: Path):
    """config.json without ``xlstm_kernel`` (written before it existed): loads as the fast
    kernel, the same parameters, the package's predictions to float rounding."""
    data = synthetic_ml_frame(n=1200)
    n = len(data)
    cfg = ExpertConfig(seq_len=16, d_model=16, n_blocks=2, slstm_at=(1,), embedding_dim=8,
                       batch_size=32, max_epochs=1, warmup_steps=2, train_stride=4,
                       cpu_threads=1, device="cpu", xlstm_kernel="package")
    old = XLSTMExpert("pattern", cfg)
    old.fit(data, np.arange(0, n - 300), np.arange(n - 280, n - 120))
    old.save(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    del meta["config"]["xlstm_kernel"]
    (tmp_path / "config.json").write_text(json.dumps(meta))
    loaded = XLSTMExpert.load(tmp_path)
    assert loaded.config.xlstm_kernel == "fast" and loaded.net.kernel == "fast"
    rows = np.arange(n - 100, n)
    np.testing.assert_allclose(loaded.predict_proba(data, rows),
                               old.predict_proba(data, rows), rtol=0, atol=1e-5)


@pytest.mark.integration
def test_fast_equals_package_on_real_windows(real_btc_1h_ml):
    """Real pattern windows (heavy tails, gaps): the two forwards agree, nothing blows up."""
    data = real_btc_1h_ml
    cfg = ExpertConfig(seq_len=64, d_model=32, cpu_threads=1, device="cpu")
    model = XLSTMExpert("pattern", cfg)
    model.columns = model.input_columns(data)
    source = model._source(data, torch.device("cpu"))
    n = len(data)
    x = source.batch(np.linspace(cfg.seq_len - 1, n - 1, 16).astype(np.int64))
    torch.manual_seed(0)
    package = model._build_net(source.n_inputs, torch.device("cpu"))
    package.kernel = "package"
    fast = model._build_net(source.n_inputs, torch.device("cpu"))
    fast.load_state_dict(package.state_dict())
    package.eval()
    fast.eval()
    with torch.no_grad():
        (lp, ep), (lf, ef) = package(x), fast(x)
    assert fast.kernel == "fast" and torch.isfinite(lf).all()
    torch.testing.assert_close(lf, lp, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ef, ep, rtol=1e-4, atol=1e-5)
    assert math.isfinite(float(lf.abs().max()))


@pytest.mark.parametrize("slstm_at", LAYOUTS)
@pytest.mark.parametrize("layout", [{}, LEAN_LAYOUTS[0]])
def test_training_mode_draws_the_same_dropout_masks(slstm_at, layout):
    """Same seed, same dropout masks as the package's forward: a fit with the fast kernel
    follows the package's to float rounding instead of being another random draw."""
    d_model = LEAN_D_MODEL if layout else D_MODEL
    package, fast = (net(kernel, slstm_at, dropout=0.3, d_model=d_model, **layout)
                     for kernel in ("package", "fast"))
    fast.load_state_dict(package.state_dict())
    x = torch.randn(4, SEQ, N_INPUTS)
    outputs = []
    for model in (package, fast):
        model.train()
        torch.manual_seed(11)
        outputs.append(model(x)[0])
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)
