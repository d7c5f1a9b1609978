"""The sequence networks: an xLSTM block stack and a plain LSTM of the same width, both
behind the same input projection and the same embedding + classifier head, so the
benchmark and the experts compare the recurrent core alone.

    input Linear(F -> d_model) -> core (xLSTM stack | nn.LSTM) -> last time step
    -> embedding Linear(d_model -> embedding_dim) + LayerNorm + GELU -> dropout
    -> classifier Linear(embedding_dim -> 3)

The last time step is the state at bar t (causal core: it has seen t-L+1..t); the
embedding is what the RL agent consumes (``ml.experts.XLSTMExpert.embed``).
"""

from __future__ import annotations

import torch
from torch import nn

from perptrader.ml.base import N_CLASSES

#: heads of the mLSTM/sLSTM layers; d_model must be a multiple (sLSTM splits the hidden
#: size into heads, mLSTM's q/k/v projections use blocks of 4 of its 2*d_model width)
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
    """xLSTM block stack (mLSTM blocks, sLSTM blocks at ``slstm_at``)."""

    def __init__(self, n_inputs: int, *, seq_len: int, d_model: int, n_blocks: int,
                 slstm_at: tuple[int, ...], embedding_dim: int, dropout: float,
                 slstm_backend: str) -> None:
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
        if d_model % XLSTM_HEADS:
            raise ValueError(f"d_model must be a multiple of {XLSTM_HEADS}, got {d_model}")
        bad = [i for i in slstm_at if not 0 <= i < n_blocks]
        if bad:
            raise ValueError(f"slstm_at positions {bad} outside 0..{n_blocks - 1}")
        mlstm = None
        if len(set(slstm_at)) < n_blocks:  # at least one mLSTM block
            mlstm = mLSTMBlockConfig(mlstm=mLSTMLayerConfig(
                conv1d_kernel_size=4, qkv_proj_blocksize=4, num_heads=XLSTM_HEADS))
        slstm = None
        if slstm_at:
            slstm = sLSTMBlockConfig(
                slstm=sLSTMLayerConfig(backend=slstm_backend, num_heads=XLSTM_HEADS,
                                       conv1d_kernel_size=4,
                                       bias_init="powerlaw_blockdependent"),
                feedforward=FeedForwardConfig(proj_factor=1.3, act_fn="gelu"))
        cfg = xLSTMBlockStackConfig(
            mlstm_block=mlstm, slstm_block=slstm, context_length=seq_len,
            num_blocks=n_blocks, embedding_dim=d_model, dropout=dropout,
            slstm_at=sorted(set(slstm_at)) if mlstm is not None else "all")
        self.core = xLSTMBlockStack(cfg)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.core(x)


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
