"""The sequence networks: an xLSTM block stack and a plain LSTM of the same width, both
behind the same input projection and the same embedding + classifier head, so the
benchmark and the experts compare the recurrent core alone.

    input Linear(F -> d_model) -> core (xLSTM stack | nn.LSTM) -> last time step
    -> embedding Linear(d_model -> embedding_dim) + LayerNorm + GELU -> dropout
    -> classifier Linear(embedding_dim -> 3)

The last time step is the state at bar t (causal core: it has seen t-L+1..t); the
embedding is what the RL agent consumes (``ml.experts.XLSTMExpert.embed``).

The xLSTM stack is the ``xlstm`` package's ``xLSTMBlockStack`` (its modules, parameters,
initialisation and state_dict), but on CPU ``XLSTMNet`` runs its own forward over those
parameters (``kernel="fast"``): the package's CPU ("vanilla") sLSTM steps through time
in Python with about 40 small ops per step and writes each step into a slice of a
pre-allocated tensor, whose autograd copies the whole tensor back per step (quadratic in
the sequence length). The fast form computes the same function with

- the sLSTM recurrence as one autograd Function: a forward loop of a dozen fused ops per
  step and a hand-written backward (the gradient of the package's CUDA kernel: the
  stabiliser m is a constant, which is exact because the outputs do not depend on it),
  the recurrent-weight gradient as one batched matmul over all steps;
- the block-diagonal ("headwise") q/k/v and sLSTM gate projections as one small matmul
  per head, straight into the layout the next step wants, and the mLSTM gates through
  the composed weights (no concatenation of q, k, v);
- the mLSTM in its parallel (quadratic, no time loop) form with the row maxima as a
  running maximum over S values and the normalisation after the product with v;
- the multi-head layer norms as layer norms where the tensor lies (no transposed copy).

It draws the same dropout masks for the same seed, so a fit follows the package's to
float rounding. ``kernel="package"`` runs the package's own forward (on CUDA always: its
sLSTM kernel is fused there); the two agree to float rounding (tests/ml/test_xlstm_fast).
Measured (bench/bench_xlstm.py, docs/ml.md): about 2x the package's training speed on
CPU; in the original layout still ~3x slower than the fused nn.LSTM of the same width and
depth, in the lean layout new models get (``ExpertConfig`` defaults) ~1.5-2x slower.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from perptrader.ml.base import N_CLASSES
from perptrader.ml.nn.config import LEGACY_XLSTM_LAYOUT, XLSTM_KERNELS

#: heads of the sLSTM layers (and the mLSTM's in the legacy layout); d_model must be a
#: multiple (sLSTM splits the hidden size into heads, mLSTM's q/k/v projections use
#: blocks of 4 of its inner width)
XLSTM_HEADS = 4


class EmbeddingHead(nn.Module):
    """Embedding (what the agent consumes) and the 3-class classifier on top of it."""

    def __init__(self, d_model: int, embedding_dim: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Sequential(nn.Linear(d_model, embedding_dim),
                                       nn.LayerNorm(embedding_dim), nn.GELU())
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(embedding_dim, N_CLASSES)

    def forward(self, last: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embedding(last)
        return self.classifier(self.dropout(emb)), emb


class SequenceNet(nn.Module):
    """Input projection -> recurrent core -> last step -> head. Subclasses set ``core``."""

    def __init__(self, n_inputs: int, d_model: int, embedding_dim: int,
                 dropout: float) -> None:
        super().__init__()
        self.input = nn.Linear(n_inputs, d_model)
        self.head = EmbeddingHead(d_model, embedding_dim, dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, d_model)
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, 3), embedding (B, embedding_dim)) of windows x (B, L, F)."""
        seq = self.encode(self.input(x))
        return self.head(seq[:, -1])


class XLSTMNet(SequenceNet):
    """xLSTM block stack (mLSTM blocks, sLSTM blocks at ``slstm_at``).

    ``mlstm_proj_factor`` is the mLSTM layer's up-projection, ``slstm_ffn_factor`` the
    gated feed-forward's after each sLSTM block (0 = none) and ``mlstm_heads`` the
    mLSTM's heads; their defaults are the original layout
    (``ml.nn.config.LEGACY_XLSTM_LAYOUT``). At small widths the projections and the
    mLSTM's (B, heads, L, L) parallel form are most of what an xLSTM step costs beyond
    an LSTM's, hence knobs (``ExpertConfig``); the fast forward serves every layout."""

    def __init__(self, n_inputs: int, *, seq_len: int, d_model: int, n_blocks: int,
                 slstm_at: tuple[int, ...], embedding_dim: int, dropout: float,
                 slstm_backend: str, kernel: str = "fast",
                 mlstm_proj_factor: float = LEGACY_XLSTM_LAYOUT["mlstm_proj_factor"],
                 slstm_ffn_factor: float = LEGACY_XLSTM_LAYOUT["slstm_ffn_factor"],
                 mlstm_heads: int = int(LEGACY_XLSTM_LAYOUT["mlstm_heads"])) -> None:
        from xlstm import (
            FeedForwardConfig,
            mLSTMBlockConfig,
            mLSTMLayerConfig,
            sLSTMBlockConfig,
            sLSTMLayerConfig,
            xLSTMBlockStack,
            xLSTMBlockStackConfig,
        )

        super().__init__(n_inputs, d_model, embedding_dim, dropout)
        if kernel not in XLSTM_KERNELS:
            raise ValueError(f"kernel must be one of {XLSTM_KERNELS}, got {kernel!r}")
        if slstm_backend != "vanilla":
            kernel = "package"  # GPU: the package's fused CUDA sLSTM kernel is the fast form
        self.kernel = kernel
        if d_model % XLSTM_HEADS:
            raise ValueError(f"d_model must be a multiple of {XLSTM_HEADS}, got {d_model}")
        bad = [i for i in slstm_at if not 0 <= i < n_blocks]
        if bad:
            raise ValueError(f"slstm_at positions {bad} outside 0..{n_blocks - 1}")
        mlstm = None
        if len(set(slstm_at)) < n_blocks:  # at least one mLSTM block
            mlstm = mLSTMBlockConfig(mlstm=mLSTMLayerConfig(
                conv1d_kernel_size=4, qkv_proj_blocksize=4, num_heads=mlstm_heads,
                proj_factor=mlstm_proj_factor))
        slstm = None
        if slstm_at:
            feedforward = FeedForwardConfig(proj_factor=slstm_ffn_factor, act_fn="gelu") \
                if slstm_ffn_factor > 0 else None
            slstm = sLSTMBlockConfig(
                slstm=sLSTMLayerConfig(backend=slstm_backend, num_heads=XLSTM_HEADS,
                                       conv1d_kernel_size=4,
                                       bias_init="powerlaw_blockdependent"),
                feedforward=feedforward)
        cfg = xLSTMBlockStackConfig(
            mlstm_block=mlstm, slstm_block=slstm, context_length=seq_len,
            num_blocks=n_blocks, embedding_dim=d_model, dropout=dropout,
            slstm_at=sorted(set(slstm_at)) if mlstm is not None else "all")
        self.core = xLSTMBlockStack(cfg)
        if mlstm is not None and mlstm.mlstm._inner_embedding_dim % mlstm_heads:
            raise ValueError(f"mlstm_heads {mlstm_heads} does not divide the mLSTM's inner "
                             f"width {mlstm.mlstm._inner_embedding_dim}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel == "package":
            return self.core(x)
        for block in self.core.blocks:
            layer = block.xlstm
            inner = mlstm_layer_forward if hasattr(layer, "mlstm_cell") else \
                slstm_layer_forward
            x = x + inner(layer, block.xlstm_norm(x))
            if block.ffn is not None:
                x = x + block.ffn(block.ffn_norm(x))
        return self.core.post_blocks_norm(x)


class LSTMNet(SequenceNet):
    """The reference: nn.LSTM with ``n_layers`` layers of width d_model."""

    def __init__(self, n_inputs: int, *, d_model: int, n_layers: int, embedding_dim: int,
                 dropout: float) -> None:
        super().__init__(n_inputs, d_model, embedding_dim, dropout)
        self.core = nn.LSTM(d_model, d_model, num_layers=n_layers, batch_first=True,
                            dropout=dropout if n_layers > 1 else 0.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.core(x)[0]


def count_parameters(net: nn.Module) -> int:
    """Trainable parameters (logged by the experts and printed by the benchmark)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


# -- the fast xLSTM forward (kernel="fast") -------------------------------------------------
def headwise_weight(projection: nn.Module) -> torch.Tensor:
    """The dense (out, in) block-diagonal weight of an ``xlstm`` LinearHeadwiseExpand
    (weight (heads, out/head, in/head)): what the composed mLSTM gate weights and the
    per-head (DH x DH) blocks are taken from (differentiable in the parameters)."""
    return torch.block_diag(*projection.weight.unbind(0))


def mlstm_parallel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   igate: torch.Tensor, fgate: torch.Tensor, eps: float = 1e-6
                   ) -> torch.Tensor:
    """The stabilised parallel mLSTM (``xlstm``'s ``parallel_stabilized_simple``):
    q, k, v (B, NH, S, DH), gate pre-activations (B, NH, S) -> h (B, NH, S, DH).

    Row i mixes the values of steps j <= i with weights q_i.k_j exp(F_i - F_j + i_j - m_i)
    (F = cumulative log forget gate, m_i = the row maximum, so exp <= 1), normalised by
    max(|row sum|, exp(-m_i)): causal by the mask, no loop over time. Cheaper than the
    package's form, same values: F_i cancels inside a row, so the (S, S) log-weights are
    u_j - max_{j'<=i} u_j' with u = i - F (the row maximum is a running maximum over
    S values, not a reduction over S^2), and the row normalisation is applied after the
    product with v (S x DH values, not S x S)."""
    S, DH = q.shape[-2], q.shape[-1]
    log_f = torch.cumsum(F.logsigmoid(fgate), dim=-1)  # (B, NH, S)
    u = igate - log_f
    u_max = torch.cummax(u, dim=-1).values  # m_i - F_i
    causal = torch.ones(S, S, dtype=torch.bool, device=q.device).tril()
    decay = torch.exp((u.unsqueeze(-2) - u_max.unsqueeze(-1)).masked_fill(~causal, -math.inf))
    c = (q @ (k / math.sqrt(DH)).transpose(-2, -1)) * decay  # (B, NH, S, S)
    max_log_d = (log_f + u_max).unsqueeze(-1)
    normaliser = torch.maximum(c.sum(dim=-1, keepdim=True).abs(), torch.exp(-max_log_d))
    return (c @ v) / (normaliser + eps)


def mlstm_layer_forward(layer: Any, x: torch.Tensor) -> torch.Tensor:
    """``xlstm`` mLSTMLayer.forward over the layer's own parameters, fast form.

    q, k, v come out of one (DH x DH) matmul per mLSTM head straight in the (B, NH, S, DH)
    layout the parallel form wants (when their projection blocks do not straddle a head:
    the default), and the gate pre-activations, linear in q, k, v, use the composed
    weights (no concat of q, k, v)."""
    cfg, cell = layer.config, layer.mlstm_cell
    B, S, _ = x.shape
    inner, nh = cfg._inner_embedding_dim, cell.config.num_heads
    x_mlstm, z = layer.proj_up(x).split(inner, dim=-1)
    x_conv = F.silu(causal_conv(layer.conv1d, x_mlstm))
    w_q, w_k, w_v = (headwise_weight(p) for p in (layer.q_proj, layer.k_proj, layer.v_proj))
    b_q, b_k, b_v = (p.bias for p in (layer.q_proj, layer.k_proj, layer.v_proj))
    # gates = [i; f] weights x cat(q, k, v) + b, with q = W_q x_conv + b_q etc.
    w_gates = torch.cat([cell.igate.weight, cell.fgate.weight])  # (2 NH, 3 inner)
    g_q, g_k, g_v = w_gates.split(inner, dim=1)
    b_gates = torch.cat([cell.igate.bias, cell.fgate.bias])
    for g, bias in ((g_q, b_q), (g_k, b_k), (g_v, b_v)):
        if bias is not None:
            b_gates = b_gates + g @ bias
    gates = F.linear(x_conv, g_q @ w_q + g_k @ w_k) + F.linear(x_mlstm, g_v @ w_v, b_gates)
    igate, fgate = gates.transpose(1, 2).split(nh, dim=1)  # (B, NH, S) each
    q = _head_projection(x_conv, layer.q_proj, w_q, nh)
    k = _head_projection(x_conv, layer.k_proj, w_k, nh)
    v = _head_projection(x_mlstm, layer.v_proj, w_v, nh)
    h = mlstm_parallel(q, k, v, igate, fgate)  # (B, NH, S, DH)
    h = _head_norm(cell.outnorm, h, nh).transpose(1, 2)  # (B, S, NH, DH), a view
    skip = (layer.learnable_skip * x_conv).view(B, S, nh, -1)
    h = ((skip + h) * F.silu(z).view(B, S, nh, -1)).reshape(B, S, inner)
    return layer.dropout(layer.proj_down(h))


def _head_norm(norm: nn.Module, h: torch.Tensor, nh: int) -> torch.Tensor:
    """``xlstm`` MultiHeadLayerNorm (a group norm with one group per head) of h
    (..., NH, S, DH) as a layer norm over DH where h lies, without the package's
    transpose-and-copy to (B S, NH DH)."""
    dh = h.shape[-1]
    out = F.layer_norm(h, (dh,), eps=norm.eps)
    weight = norm.weight_proxy
    if weight is not None:
        out = out * weight.view(nh, 1, dh)
    if norm.bias is not None:
        out = out + norm.bias.view(nh, 1, dh)
    return out


def _head_projection(x: torch.Tensor, proj: nn.Module, weight: torch.Tensor, nh: int
                     ) -> torch.Tensor:
    """x (B, S, W) @ the headwise projection ``proj`` (dense form ``weight``) ->
    (B, NH, S, W / NH): only the NH diagonal (DH x DH) blocks are multiplied when the
    projection's blocks tile the heads (the default: DH = 32, blocks of 4), a dense
    matmul otherwise."""
    B, S, W = x.shape
    dh = W // nh
    _, out_block, in_block = proj.weight.shape
    if out_block == in_block and dh % in_block == 0:
        blocks = weight.view(nh, dh, nh, dh).diagonal(dim1=0, dim2=2).permute(2, 0, 1)
        out = x.view(B, S, nh, dh).transpose(1, 2) @ blocks.transpose(1, 2)
    else:
        out = F.linear(x, weight).view(B, S, nh, dh).transpose(1, 2)
    if proj.bias is not None:
        out = out + proj.bias.view(nh, 1, dh)
    return out


class SLSTMRecurrence(torch.autograd.Function):
    """The sLSTM recurrence of ``xlstm``'s vanilla backend over a whole sequence.

    pre: gate pre-activations W x_t + b, (S, NH, B, 4, DH), gates (i, f, z, o);
    recurrent: the vanilla cell's ``_recurrent_kernel`` (NH, 4 DH, DH) ->
    y (S, NH, B, DH). Zero initial state (as the layer uses it). Forward::

        raw = pre_t + R y_{t-1};  m_t = max(i, m_{t-1} + logsigmoid(f))  (m_0 = i)
        c_t = e^{f~} c_{t-1} + e^{i - m_t} tanh(z);  n_t = e^{f~} n_{t-1} + e^{i - m_t}
        y_t = sigmoid(o) c_t / n_t,  f~ = m_{t-1} + logsigmoid(f) - m_t

    The backward treats the stabiliser m as a constant, like the package's CUDA kernel:
    y does not depend on m (it scales c and n alike), so this is the exact gradient.
    """

    @staticmethod
    def forward(ctx: Any, pre: torch.Tensor, recurrent: torch.Tensor) -> torch.Tensor:
        S, NH, B, _, DH = pre.shape
        ys, cs, ns, ms = (pre.new_zeros(S + 1, NH, B, DH) for _ in range(4))
        raw = torch.empty_like(pre)
        acts = pre.new_empty(4, S, NH, B, DH)  # e^{i-m}, e^{f~}, tanh(z), sigmoid(o)
        _slstm_forward_steps(pre, recurrent, raw, acts, ys, cs, ns, ms)
        ctx.save_for_backward(recurrent, raw, acts, ys, cs, ns)
        return ys[1:]

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        recurrent, raw, acts, ys, cs, ns = ctx.saved_tensors
        S, NH, B, G, DH = raw.shape
        grad_pre = torch.empty_like(raw)
        _slstm_backward_steps(grad_y, recurrent, raw, acts, ys, cs, ns, grad_pre)
        # dR[h] = sum over steps and batch of d gates^T y_{t-1}: one batched matmul
        d_gates = grad_pre.permute(1, 0, 2, 3, 4).reshape(NH, S * B, G * DH)
        y_prev = ys[:-1].permute(1, 0, 2, 3).reshape(NH, S * B, DH)
        return grad_pre, torch.bmm(d_gates.transpose(1, 2), y_prev)


def _slstm_forward_steps(pre: torch.Tensor, recurrent: torch.Tensor, raw: torch.Tensor,
                         acts: torch.Tensor, ys: torch.Tensor, cs: torch.Tensor,
                         ns: torch.Tensor, ms: torch.Tensor) -> None:
    """The forward of ``SLSTMRecurrence``: one baddbmm (R y_{t-1} + pre_t) and a dozen
    pointwise ops per step, written into pre-allocated buffers (no autograd graph); the
    gate activations are kept in ``acts`` for the backward.
    A numba kernel per (head, sample) was tried and was 2x slower: its exp/tanh/log1p
    are scalar libm calls where torch's are vectorised."""
    S, NH, B, G, DH = pre.shape
    r_t = recurrent.transpose(1, 2)  # (NH, DH, 4 DH): y (NH, B, DH) @ r_t
    for t in range(S):
        torch.baddbmm(pre[t].view(NH, B, G * DH), ys[t], r_t,
                      out=raw[t].view(NH, B, G * DH))
        i, f, z, o = raw[t].unbind(2)
        ig, fg, tz, og = acts[:, t]
        torch.tanh(z, out=tz)
        if t == 0:  # zero state: m = i, so e^{i-m} = 1 and c = tanh(z), n = 1 (the
            ms[1].copy_(i)  # forget gate multiplies zeros: 0 keeps its gradient 0)
            ig.fill_(1.0)
            fg.zero_()
            cs[1].copy_(tz)
            ns[1].fill_(1.0)
        else:
            log_fm = F.logsigmoid(f).add_(ms[t])
            m_new = torch.maximum(i, log_fm, out=ms[t + 1])
            torch.exp(torch.sub(i, m_new), out=ig)
            torch.exp(log_fm.sub_(m_new), out=fg)
            torch.addcmul(fg * cs[t], ig, tz, out=cs[t + 1])
            torch.addcmul(ig, fg, ns[t], out=ns[t + 1])
        torch.div(torch.sigmoid(o, out=og).mul(cs[t + 1]), ns[t + 1], out=ys[t + 1])


def _slstm_backward_steps(grad_y: torch.Tensor, recurrent: torch.Tensor, raw: torch.Tensor,
                          acts: torch.Tensor, ys: torch.Tensor, cs: torch.Tensor,
                          ns: torch.Tensor, grad_pre: torch.Tensor) -> None:
    """The gate gradients of ``SLSTMRecurrence`` into ``grad_pre``: everything that does
    not depend on the backward recursion (gate activations, the coefficients of dc, dn
    and dy) is computed for all steps at once; the loop keeps ~10 ops per step."""
    S, NH, B, G, DH = raw.shape
    ig, fg, tz, og = acts  # (S, NH, B, DH) each
    y, n = ys[1:], ns[1:]
    dfg = fg * torch.sigmoid(-raw[:, :, :, 1])  # d e^{f~} / d f = e^{f~} (1 - sigmoid(f))
    zero = torch.zeros_like(ig)
    # d gates = p * dc + q * dn (+ (1 - og) y dy on o): dc, dn, dy per step below
    p = torch.stack([ig * tz, dfg * cs[:-1], ig * (1.0 - tz * tz), zero], dim=3)
    q = torch.stack([ig, dfg * ns[:-1], zero, zero], dim=3)
    dy_o = (1.0 - og) * y
    a, b = og / n, y / n  # dy/dc, -dy/dn
    dy_rec = dc_c = dn_c = torch.zeros_like(y[0])
    for t in range(S - 1, -1, -1):
        dy = grad_y[t] + dy_rec
        dc = torch.addcmul(dc_c, dy, a[t])
        dn = torch.addcmul(dn_c, dy, b[t], value=-1.0)
        g = grad_pre[t]
        torch.mul(p[t], dc.unsqueeze(2), out=g)
        g.addcmul_(q[t], dn.unsqueeze(2))
        g[:, :, 3].addcmul_(dy_o[t], dy)
        if t:
            dy_rec = torch.bmm(g.view(NH, B, G * DH), recurrent)
            dc_c, dn_c = fg[t] * dc, fg[t] * dn


def causal_conv(module: Any, x: torch.Tensor) -> torch.Tensor:
    """``xlstm``'s CausalConv1d (depthwise, zero history) on x (B, S, C) as K shifted
    multiply-adds: y_t = b + sum_k w_k x_{t-K+1+k}. The same function as the package's
    padded nn.Conv1d; on CPU its backward costs a few pointwise ops instead of a
    depthwise convolution's backward (about a tenth of a lean xLSTM step). A channel-
    mixing convolution goes to the module itself."""
    conv = module.conv
    if conv is None:
        return x
    if conv.groups != x.shape[-1]:
        return module(x)
    w = conv.weight[:, 0, :]  # (C, K)
    k = w.shape[1]
    s = x.shape[1]
    out = x * w[:, k - 1]
    for j in range(k - 1):
        shift = k - 1 - j
        if shift < s:
            out[:, shift:] += x[:, : s - shift] * w[:, j]
    return out + conv.bias if conv.bias is not None else out


def slstm_layer_forward(layer: Any, x: torch.Tensor) -> torch.Tensor:
    """``xlstm`` sLSTMLayer.forward (vanilla cell) over the layer's own parameters, fast
    form. As in the package, the input and forget gates see the convolved input and
    z and o the raw one, and the module named ``fgate`` feeds the input gate."""
    cfg, cell = layer.config, layer.slstm_cell
    B, S, D = x.shape
    nh = cfg.num_heads
    dh = D // nh
    x_conv = F.silu(causal_conv(layer.conv1d, x)) if cfg.conv1d_kernel_size > 0 else x
    # per head, [x_conv, x] (2 DH) @ [[W_i, W_f, 0, 0], [0, 0, W_z, W_o]] + b: the gate
    # pre-activations (NH, S B, 4 DH), one transposed copy from the recurrence's layout
    inputs = torch.stack([x_conv, x], dim=2).view(B, S, 2, nh, dh).permute(3, 1, 0, 2, 4)
    blocks = [p.weight.transpose(1, 2) for p in (layer.fgate, layer.igate, layer.zgate,
                                                  layer.ogate)]  # (NH, DH in, DH out)
    zero = torch.zeros_like(blocks[0])
    weight = torch.cat([torch.cat([blocks[0], blocks[1], zero, zero], dim=2),
                        torch.cat([zero, zero, blocks[2], blocks[3]], dim=2)], dim=1)
    bias = cell._bias.view(4, nh, dh).transpose(0, 1).reshape(nh, 1, 4 * dh)
    pre = torch.baddbmm(bias, inputs.reshape(nh, S * B, 2 * dh), weight)
    pre = pre.view(nh, S, B, 4, dh).transpose(0, 1).contiguous()
    y = SLSTMRecurrence.apply(pre, cell._recurrent_kernel)  # (S, NH, B, DH)
    # dropout over the package's memory layout (S, B, NH, DH), viewed (B, NH, S, DH): the
    # same seed draws the same mask, so training runs like the package's to float rounding
    y = layer.dropout(y.transpose(1, 2).contiguous().permute(1, 2, 0, 3))  # (B, NH, S, DH)
    return _head_norm(layer.group_norm, y, nh).transpose(1, 2).reshape(B, S, D)
