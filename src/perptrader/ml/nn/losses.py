"""Focal loss with per-class alpha and label smoothing.

Why focal: most bars are easy HOLDs (or easy continuation moves); the (1 - p)^gamma
factor shrinks the loss of examples the net already gets right so the gradient goes to
the hard, ambiguous turns. Why alpha: the classes are imbalanced per fold (HOLD ~40%);
inverse-frequency alpha keeps the net from collapsing onto the majority class.

    loss_i = - sum_k q_ik * alpha_k * (1 - p_ik)^gamma * log p_ik
    q_i = (1 - eps) * onehot(y_i) + eps / K          (label smoothing eps)

With gamma = 0, alpha = 1 and eps = 0 this is exactly cross-entropy (mean over the
batch); with gamma = 0 and alpha = 1 it equals torch's label-smoothed cross-entropy.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def inverse_frequency_alpha(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class alpha = 1 / class frequency, normalised to mean 1 (so the loss keeps the
    scale of cross-entropy). A class absent from ``y`` gets the largest weight seen
    rather than infinity: it cannot contribute to the loss anyway."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(float)
    if counts.sum() == 0:
        raise ValueError("no labelled rows to derive class weights from")
    inv = np.zeros(n_classes)
    seen = counts > 0
    inv[seen] = counts.sum() / counts[seen]
    inv[~seen] = inv[seen].max()
    return inv / inv.mean()


class FocalLoss(nn.Module):
    """Multi-class focal loss (mean over the batch); see the module docstring."""

    def __init__(self, alpha: torch.Tensor | np.ndarray | None = None, gamma: float = 2.0,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        if gamma < 0 or not 0.0 <= label_smoothing < 1.0:
            raise ValueError("gamma must be >= 0 and label_smoothing in [0, 1)")
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)
        if alpha is not None:
            alpha = torch.as_tensor(np.asarray(alpha, dtype=np.float32))
        self.register_buffer("alpha", alpha)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=-1)
        k = logits.shape[-1]
        q = F.one_hot(target, k).to(logp.dtype)
        if self.label_smoothing:
            q = q * (1.0 - self.label_smoothing) + self.label_smoothing / k
        weight = q
        if self.gamma:
            weight = weight * (1.0 - logp.exp()).clamp_min(0.0).pow(self.gamma)
        if self.alpha is not None:
            weight = weight * self.alpha.to(logp.device)
        return -(weight * logp).sum(dim=-1).mean()
