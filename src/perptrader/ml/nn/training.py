"""The training loop of the sequence experts.

AdamW; linear warm-up then cosine decay per step (or, ``schedule="plateau"``, warm-up
then ReduceLROnPlateau on the validation loss per epoch); gradient clipping; focal loss;
early stopping on validation macro-F1 (the metric the experts are judged on: accuracy
would reward predicting HOLD everywhere) with the best epoch's weights kept in memory and
restored at the end; AMP only on CUDA. Seeds come from the config so a run repeats.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from perptrader.ml.base import N_CLASSES, Progress
from perptrader.ml.nn.config import ExpertConfig
from perptrader.ml.nn.losses import FocalLoss, inverse_frequency_alpha
from perptrader.ml.nn.networks import SequenceNet
from perptrader.ml.nn.windows import WindowSource

#: the smallest macro-F1 gain that counts as an improvement for early stopping
MIN_DELTA = 1e-6


def select_device(spec: str = "auto") -> torch.device:
    """"auto" -> CUDA when available, else CPU; anything else is taken literally (and
    asking for CUDA without one is an error, not a silent CPU run)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} asked but CUDA is not available")
    return device


def prepare_device(device: torch.device, threads: int | None = None) -> None:
    """On CPU use ``threads`` torch threads, every core this process may run on when
    None (torch defaults to fewer on some builds; ``os.cpu_count`` ignores CPU affinity)."""
    if device.type == "cpu":
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
            os.cpu_count()
        torch.set_num_threads(threads or usable or 1)


@dataclass
class Precision:
    """Autocast settings: bf16 where the GPU supports it, else fp16 + GradScaler."""

    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None

    @classmethod
    def for_device(cls, device: torch.device, amp: bool) -> Precision:
        if device.type != "cuda" or not amp:
            return cls(None, None)
        if torch.cuda.is_bf16_supported():
            return cls(torch.bfloat16, None)
        return cls(torch.float16, torch.amp.GradScaler("cuda"))

    def autocast(self, device: torch.device) -> AbstractContextManager[Any]:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


def warmup_cosine(step: int, warmup: int, total: int, floor: float = 0.0) -> float:
    """LR multiplier: linear warm-up 1/warmup..1 over ``warmup`` steps, then cosine decay
    from 1 to ``floor`` at step ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_only(step: int, warmup: int) -> float:
    """LR multiplier of the plateau schedule before ReduceLROnPlateau takes over."""
    return (step + 1) / warmup if warmup > 0 and step < warmup else 1.0


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = N_CLASSES) -> float:
    """Macro-F1 over the classes present in truth or prediction (sklearn's convention)."""
    labels = np.union1d(y_true, y_pred)
    scores = []
    for k in labels:
        tp = np.sum((y_pred == k) & (y_true == k))
        fp = np.sum((y_pred == k) & (y_true != k))
        fn = np.sum((y_pred != k) & (y_true == k))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def optimizer_step(net: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                   precision: Precision, grad_clip: float) -> None:
    """Backward, clip (after unscaling, so the norm is the true one) and step, with the
    fp16 GradScaler when mixed precision uses one. Shared by training and the bench."""
    optimizer.zero_grad(set_to_none=True)
    if precision.scaler is not None:
        precision.scaler.scale(loss).backward()
        precision.scaler.unscale_(optimizer)
    else:
        loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    if precision.scaler is not None:
        precision.scaler.step(optimizer)
        precision.scaler.update()
    else:
        optimizer.step()


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@torch.no_grad()
def forward_all(net: SequenceNet, source: WindowSource, ends: np.ndarray, batch_size: int,
                device: torch.device, precision: Precision) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, embeddings) of all windows ending at ``ends``, in eval mode, batched;
    float32 on the CPU."""
    was_training = net.training
    net.eval()
    logits, embs = [], []
    try:
        for part in batches(len(ends), batch_size):
            with precision.autocast(device):
                lg, emb = net(source.batch(ends[part]))
            logits.append(lg.float().cpu())
            embs.append(emb.float().cpu())
    finally:
        net.train(was_training)
    if not logits:
        dim = net.head.classifier.in_features
        return torch.zeros((0, N_CLASSES)), torch.zeros((0, dim))
    return torch.cat(logits), torch.cat(embs)


def train(net: SequenceNet, source: WindowSource, train_ends: np.ndarray, y_train: np.ndarray,
          valid_ends: np.ndarray, y_valid: np.ndarray, cfg: ExpertConfig,
          device: torch.device, progress: Progress | None = None) -> dict[str, Any]:
    """Fit ``net`` in place; returns {"history", "best_epoch", "best_val_macro_f1",
    "n_train", "n_valid", "alpha", "stopped_early"}. The net ends with its best
    validation epoch's weights."""
    if len(train_ends) == 0 or len(valid_ends) == 0:
        raise ValueError(f"need labelled training and validation windows, got "
                         f"{len(train_ends)} train / {len(valid_ends)} valid")
    train_ends = np.asarray(train_ends, dtype=np.int64)[::cfg.train_stride]
    y_train = np.asarray(y_train, dtype=np.int64)[::cfg.train_stride]
    valid_ends = np.asarray(valid_ends, dtype=np.int64)
    y_valid = np.asarray(y_valid, dtype=np.int64)
    alpha = inverse_frequency_alpha(y_train, N_CLASSES) if cfg.class_weights else None
    criterion = FocalLoss(alpha, cfg.focal_gamma, cfg.label_smoothing).to(device)
    precision = Precision.for_device(device, cfg.amp)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_ends) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.max_epochs
    if cfg.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine(s, cfg.warmup_steps, total_steps))
        plateau = None
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_only(s, cfg.warmup_steps))
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=0.5, patience=max(1, cfg.patience // 2))
    y_train_t = torch.as_tensor(y_train, device=device)
    rng = np.random.default_rng(cfg.seed)
    history: list[dict[str, float]] = []
    best_f1, best_epoch, best_state, bad = -1.0, 0, None, 0
    step = 0
    net.to(device).train()
    for epoch in range(1, cfg.max_epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(len(train_ends))
        loss_sum, seen = 0.0, 0
        for part in batches(len(order), cfg.batch_size):
            idx = order[part]
            with precision.autocast(device):
                logits, _ = net(source.batch(train_ends[idx]))
            loss = criterion(logits, y_train_t[torch.as_tensor(idx, device=device)])
            optimizer_step(net, optimizer, loss, precision, cfg.grad_clip)
            if plateau is None or step < cfg.warmup_steps:
                scheduler.step()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            seen += len(idx)
        logits, _ = forward_all(net, source, valid_ends, max(256, cfg.batch_size), device,
                                precision)
        with torch.no_grad():
            val_loss = float(criterion(logits.to(device), torch.as_tensor(y_valid,
                                                                          device=device)))
        val_f1 = macro_f1(y_valid, logits.argmax(dim=1).numpy())
        if plateau is not None and step >= cfg.warmup_steps:
            plateau.step(val_loss)
        row = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "val_loss": val_loss,
               "val_macro_f1": val_f1, "lr": float(optimizer.param_groups[0]["lr"]),
               "seconds": time.perf_counter() - t0}
        history.append(row)
        if progress is not None:
            progress("epoch", epoch, cfg.max_epochs,
                     {k: row[k] for k in ("train_loss", "val_loss", "val_macro_f1", "lr")})
        if val_f1 > best_f1 + MIN_DELTA:
            best_f1, best_epoch, bad = val_f1, epoch, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return {"history": history, "best_epoch": best_epoch, "best_val_macro_f1": best_f1,
            "n_train": len(train_ends), "n_valid": len(valid_ends),
            "alpha": None if alpha is None else [float(a) for a in alpha],
            "stopped_early": len(history) < cfg.max_epochs}
