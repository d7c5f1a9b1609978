"""Sequence windows, built lazily per batch, normalised using only the window's rows.

A window ending at row t spans rows t-L+1..t of the WHOLE frame (rows before a fold's
first row are allowed: they are the past, known at t). Rows with fewer than L-1 rows
before them have no full window and are skipped by ``usable_rows``: padding them would
invent a past that was never observed.

Why per-window normalisation: it makes each window scale-free using nothing but its own
rows, so no statistic fitted on other rows (possibly the future of a test row) leaks in,
and a regime shift in price level or volatility does not move the inputs out of the
range the net was trained on.

Why lazy: the raw table is ONE float32 tensor of the whole frame (on the training
device); a batch gathers ``ends[:, None] + arange(-L+1, 1)`` from it and normalises on
the device, so n x L x F copies are never materialised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from perptrader.ml.base import MLFrame

#: guards divisions by a window's standard deviation / bar range
EPS = 1e-6
#: floor of the window's mean log bar range the price channels are divided by (0.01%):
#: a flat, illiquid window (high == low) would otherwise blow the price shape up by 1/EPS
RANGE_FLOOR = 1e-4
#: z-scores are clipped to this magnitude: a one-off spike in an otherwise constant
#: window (a candlestick flag, a climax bar) would otherwise reach ~sqrt(L)
Z_CLIP = 8.0
#: the price-shape channels the pattern expert prepends to its feature columns
PRICE_CHANNELS = ("price_open", "price_high", "price_low", "price_close", "log_volume")

NORMALISATION = {
    "window": "rows t-L+1..t of the whole frame; the window's last row is t itself",
    "price": "log(open|high|low|close) minus log(close at t), divided by the window's "
             f"mean log(high/low) bar range (floored at {RANGE_FLOOR}): the price SHAPE "
             "in units of the window's average bar range",
    "volume": "log1p(volume) minus the window's mean log1p(volume)",
    "features": "z-score over the window's rows (NaN-aware mean/std, std eps-guarded, "
                f"clipped to +-{Z_CLIP}), NaN -> 0 after normalisation; optional "
                "missing-indicator channel per feature (1 where the raw value was NaN)",
}


def usable_rows(data: MLFrame | int, rows: np.ndarray, seq_len: int) -> np.ndarray:
    """The positions among ``rows`` that have a full window (at least ``seq_len - 1``
    rows before them in the frame); ``data`` may be the frame or its length."""
    n = data if isinstance(data, int) else len(data)
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise IndexError(f"row positions outside the frame (0..{n - 1})")
    return rows[rows >= seq_len - 1]


@dataclass
class WindowSource:
    """The raw inputs of the whole frame on one device, and per-batch window building.

    ``raw`` columns: for the pattern role the 5 price channels (log open, high, low,
    close, log1p volume) then the feature columns; ``n_price`` says how many price
    channels lead (0 for the indicator role).
    """

    raw: torch.Tensor  # (n_rows, n_price + n_features) float32
    n_price: int
    seq_len: int
    missing_channel: bool = False

    @classmethod
    def from_frame(cls, data: MLFrame, columns: list[str], *, price: bool, seq_len: int,
                   device: torch.device, missing_channel: bool = False) -> WindowSource:
        """Gather ``columns`` (and the price channels when ``price``) once as float32."""
        missing = [c for c in columns if c not in data.frame.columns]
        if missing:
            raise KeyError(f"input columns missing from the frame: {missing[:10]}")
        parts = []
        if price:
            ohlc = data.frame[["open", "high", "low", "close"]].to_numpy(np.float64)
            if (ohlc <= 0).any() or np.isnan(ohlc).any():
                raise ValueError("OHLC must be positive and known for the price channels")
            vol = data.frame["volume"].to_numpy(np.float64)
            if np.isnan(vol).any() or (vol < 0).any():
                raise ValueError("volume must be known and non-negative")
            parts += [np.log(ohlc), np.log1p(vol)[:, None]]
        if columns:
            parts.append(data.frame[columns].to_numpy(np.float64))
        if not parts:
            raise ValueError("a window source needs at least one input column")
        table = np.concatenate(parts, axis=1)
        table[~np.isfinite(table)] = np.nan  # +-inf in a feature counts as missing
        return cls(torch.as_tensor(table.astype(np.float32), device=device),
                   len(PRICE_CHANNELS) if price else 0, seq_len, missing_channel)

    @property
    def n_rows(self) -> int:
        return int(self.raw.shape[0])

    @property
    def n_inputs(self) -> int:
        """Channels per time step the network sees."""
        n_feat = self.raw.shape[1] - self.n_price
        return int(self.n_price + n_feat * (2 if self.missing_channel else 1))

    def batch(self, ends: np.ndarray) -> torch.Tensor:
        """(len(ends), L, n_inputs) normalised windows ending at the rows ``ends``."""
        ends_t = torch.as_tensor(np.asarray(ends, dtype=np.int64), device=self.raw.device)
        if ends_t.numel() and (int(ends_t.min()) < self.seq_len - 1
                               or int(ends_t.max()) >= self.n_rows):
            raise IndexError("window end without a full window (see usable_rows)")
        offsets = torch.arange(-self.seq_len + 1, 1, device=self.raw.device)
        win = self.raw[ends_t[:, None] + offsets]  # (B, L, C) gather, no frame-wide copy
        return normalise_windows(win, self.n_price, self.missing_channel)


def normalise_windows(win: torch.Tensor, n_price: int, missing_channel: bool) -> torch.Tensor:
    """Per-window normalisation of raw windows (B, L, C); see ``NORMALISATION``."""
    out = []
    if n_price:
        logp = win[..., :4]
        last_close = logp[:, -1:, 3:4]
        bar_range = (logp[..., 1] - logp[..., 2]).mean(dim=1)[:, None, None]
        out.append((logp - last_close) / bar_range.clamp_min(RANGE_FLOOR))
        logv = win[..., 4:5]
        out.append(logv - logv.mean(dim=1, keepdim=True))
    feats = win[..., n_price:]
    if feats.shape[-1]:
        known = ~torch.isnan(feats)
        filled = torch.where(known, feats, torch.zeros((), dtype=feats.dtype,
                                                       device=feats.device))
        count = known.sum(dim=1, keepdim=True).clamp_min(1).to(feats.dtype)
        mean = filled.sum(dim=1, keepdim=True) / count
        dev = torch.where(known, feats - mean, torch.zeros((), dtype=feats.dtype,
                                                           device=feats.device))
        std = (dev.square().sum(dim=1, keepdim=True) / count).sqrt()
        z = (dev / std.clamp_min(EPS)).clamp(-Z_CLIP, Z_CLIP)
        out.append(z)
        if missing_channel:
            out.append((~known).to(feats.dtype))
    return torch.cat(out, dim=-1)
