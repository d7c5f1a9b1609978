"""The two xLSTM experts and the LSTM reference: sequence classifiers over an MLFrame.

- ``XLSTMExpert("pattern")``: the price SHAPE — per-window normalised OHLCV plus the
  pattern feature columns (VSA, candles, candlestick patterns; ``feature_groups``).
- ``XLSTMExpert("indicator")``: the indicator feature columns.
- ``LSTMReference()``: the pattern expert's inputs and size with an nn.LSTM core — the
  yardstick that says whether xLSTM earns its cost.

Each row t is classified from the window of rows t-L+1..t of the whole frame (see
``ml.nn.windows``). Rows with fewer than L-1 rows before them have no window: ``fit``
skips them (and unlabelled rows), ``predict_proba``/``embed`` refuse them — callers ask
``usable_rows`` first. ``embed`` returns the penultimate layer (what the RL agent
consumes).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perptrader.ml.base import CLASSES, MLFrame, Progress, feature_groups
from perptrader.ml.nn.config import ExpertConfig
from perptrader.ml.nn.networks import LSTMNet, SequenceNet, XLSTMNet, count_parameters
from perptrader.ml.nn.training import (
    Precision,
    forward_all,
    prepare_device,
    select_device,
    train,
)
from perptrader.ml.nn.windows import NORMALISATION, PRICE_CHANNELS, WindowSource
from perptrader.ml.nn.windows import usable_rows as _usable_rows

__all__ = ["ExpertConfig", "LSTMReference", "XLSTMExpert", "usable_rows"]

LOG = logging.getLogger(__name__)
ROLES = ("pattern", "indicator")
WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "config.json"
#: rows per forward pass in predict_proba/embed (memory, not maths)
PREDICT_BATCH = 512


def usable_rows(data: MLFrame, rows: np.ndarray, config: ExpertConfig | None = None
                ) -> np.ndarray:
    """The positions among ``rows`` an expert with ``config`` can see a full window for
    (row >= seq_len - 1); the others are skipped by ``fit`` and refused by predict."""
    return _usable_rows(data, rows, (config or ExpertConfig()).seq_len)


class _SequenceExpert:
    """Shared machinery: inputs of a role, window source, training, saving."""

    kind: str = ""
    role: str = ""
    uses_price: bool = False

    def __init__(self, config: ExpertConfig | None = None) -> None:
        self.config = config or ExpertConfig()
        self.columns: list[str] | None = None
        self.net: SequenceNet | None = None
        self.history: list[dict[str, float]] = []
        self.fit_info: dict[str, Any] = {}
        self.n_parameters = 0

    # -- inputs -------------------------------------------------------------------
    def input_columns(self, data: MLFrame) -> list[str]:
        """The feature columns of this role among ``data.features`` (empty = error)."""
        cols = feature_groups(data.features)[self.role]
        if not cols:
            raise ValueError(f"{self.kind}: no '{self.role}' feature columns in the frame "
                             f"(feature set {data.meta.get('feature_set')!r})")
        return cols

    def usable_rows(self, data: MLFrame, rows: np.ndarray) -> np.ndarray:
        return _usable_rows(data, rows, self.config.seq_len)

    def _source(self, data: MLFrame, device: torch.device) -> WindowSource:
        assert self.columns is not None
        return WindowSource.from_frame(data, self.columns, price=self.uses_price,
                                       seq_len=self.config.seq_len, device=device,
                                       missing_channel=self.config.missing_indicator)

    # -- network ------------------------------------------------------------------
    def _build_net(self, n_inputs: int, device: torch.device) -> SequenceNet:
        raise NotImplementedError

    def _device(self) -> torch.device:
        return select_device(self.config.device)

    # -- Classifier -----------------------------------------------------------------
    def fit(self, data: MLFrame, train_rows: np.ndarray, valid_rows: np.ndarray,
            progress: Progress | None = None) -> dict[str, Any]:
        """Train on the labelled, windowable ``train_rows``; early-stop on ``valid_rows``."""
        cfg = self.config
        device = self._device()
        prepare_device(device, cfg.cpu_threads)
        torch.manual_seed(cfg.seed)  # weights init and dropout; batch order: cfg.seed too
        self.columns = self.input_columns(data)
        y = data.y
        train_ends = data.labelled(self.usable_rows(data, np.asarray(train_rows)))
        valid_ends = data.labelled(self.usable_rows(data, np.asarray(valid_rows)))
        source = self._source(data, device)
        self.net = self._build_net(source.n_inputs, device)
        self.n_parameters = count_parameters(self.net)
        LOG.info("%s: %d inputs x %d steps, %d parameters, %d train / %d valid windows on %s",
                 self.kind, source.n_inputs, cfg.seq_len, self.n_parameters,
                 len(train_ends), len(valid_ends), device)
        info = train(self.net, source, train_ends, y[train_ends], valid_ends, y[valid_ends],
                     cfg, device, progress)
        self.history = info["history"]
        self.fit_info = {**info, "kind": self.kind, "n_parameters": self.n_parameters,
                         "n_inputs": source.n_inputs, "device": str(device),
                         # rows without a full window or without a label
                         "skipped_train_rows": int(len(train_rows) - len(train_ends))}
        return self.fit_info

    def _forward(self, data: MLFrame, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if self.net is None or self.columns is None:
            raise RuntimeError(f"{self.kind}: not fitted")
        rows = np.asarray(rows, dtype=np.int64)
        ok = self.usable_rows(data, rows)
        if len(ok) != len(rows):
            raise ValueError(f"{self.kind}: {len(rows) - len(ok)} rows have fewer than "
                             f"{self.config.seq_len - 1} rows before them (see usable_rows)")
        device = next(self.net.parameters()).device
        precision = Precision.for_device(device, self.config.amp)
        return forward_all(self.net, self._source(data, device), rows, PREDICT_BATCH, device,
                           precision)

    def predict_proba(self, data: MLFrame, rows: np.ndarray) -> np.ndarray:
        """(len(rows), 3) softmax probabilities (SELL, HOLD, BUY), eval mode, batched."""
        logits, _ = self._forward(data, rows)
        return torch.softmax(logits, dim=1).numpy().astype(np.float64)

    def embed(self, data: MLFrame, rows: np.ndarray) -> np.ndarray:
        """(len(rows), embedding_dim) embeddings (after LayerNorm + GELU) for the agent."""
        _, emb = self._forward(data, rows)
        return emb.numpy()

    # -- persistence ----------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """``model.pt`` (state_dict) + ``config.json`` (kind, role, config, columns,
        normalisation)."""
        if self.net is None or self.columns is None:
            raise RuntimeError(f"{self.kind}: nothing to save, not fitted")
        folder = Path(folder)
        torch.save(self.net.state_dict(), folder / WEIGHTS_FILE)
        meta = {"kind": self.kind, "role": self.role, "classes": list(CLASSES),
                "config": self.config.to_dict(),
                "columns": self.columns,
                "price_channels": list(PRICE_CHANNELS) if self.uses_price else [],
                "normalisation": NORMALISATION, "n_parameters": self.n_parameters,
                "history": self.history,
                "fit_info": {k: v for k, v in self.fit_info.items() if k != "history"}}
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2))

    @classmethod
    def _read(cls, folder: Path, expected_kinds: tuple[str, ...]) -> dict[str, Any]:
        path = Path(folder) / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: no {CONFIG_FILE}; not a saved model folder")
        meta = json.loads(path.read_text())
        if meta.get("kind") not in expected_kinds:
            raise ValueError(f"{folder}: holds a {meta.get('kind')!r} model, not one of "
                             f"{expected_kinds}")
        if tuple(meta.get("classes", CLASSES)) != CLASSES:
            raise ValueError(f"{folder}: class order {meta['classes']} != {list(CLASSES)}")
        return meta

    def _restore(self, folder: Path, meta: dict[str, Any]) -> None:
        self.columns = list(meta["columns"])
        self.history = list(meta.get("history", []))
        self.fit_info = dict(meta.get("fit_info", {}))
        n_inputs = int(self.fit_info.get("n_inputs") or self._n_inputs_from_meta(meta))
        device = self._device()
        self.net = self._build_net(n_inputs, device)
        state = torch.load(Path(folder) / WEIGHTS_FILE, map_location=device,
                           weights_only=True)
        self.net.load_state_dict(state)
        self.net.eval()
        self.n_parameters = count_parameters(self.net)

    def _n_inputs_from_meta(self, meta: dict[str, Any]) -> int:
        n_feat = len(meta["columns"]) * (2 if self.config.missing_indicator else 1)
        return len(meta["price_channels"]) + n_feat


class XLSTMExpert(_SequenceExpert):
    """xLSTM sequence classifier of one role ("pattern" or "indicator")."""

    def __init__(self, role: str, config: ExpertConfig | None = None) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        super().__init__(config)
        self.role = role
        self.kind = f"xlstm-{role}"
        self.uses_price = role == "pattern"

    def _build_net(self, n_inputs: int, device: torch.device) -> SequenceNet:
        cfg = self.config
        # the sLSTM kernel: CUDA backend on a GPU, the pure-PyTorch one on CPU (where
        # kernel="fast" replaces the package's forward; XLSTMNet keeps the package's
        # fused sLSTM on a GPU)
        backend = "cuda" if device.type == "cuda" else "vanilla"
        net = XLSTMNet(n_inputs, seq_len=cfg.seq_len, d_model=cfg.d_model,
                       n_blocks=cfg.n_blocks, slstm_at=cfg.slstm_at,
                       embedding_dim=cfg.embedding_dim, dropout=cfg.dropout,
                       slstm_backend=backend, kernel=cfg.xlstm_kernel,
                       mlstm_proj_factor=cfg.mlstm_proj_factor,
                       slstm_ffn_factor=cfg.slstm_ffn_factor, mlstm_heads=cfg.mlstm_heads)
        return net.to(device)

    @classmethod
    def load(cls, folder: Path) -> XLSTMExpert:
        meta = cls._read(folder, ("xlstm-pattern", "xlstm-indicator"))
        model = cls(meta["role"], ExpertConfig.from_dict(meta["config"]))
        model._restore(folder, meta)
        return model


class LSTMReference(_SequenceExpert):
    """The pattern expert's inputs and size with an nn.LSTM core (kind "lstm")."""

    kind = "lstm"
    role = "pattern"
    uses_price = True

    def _build_net(self, n_inputs: int, device: torch.device) -> SequenceNet:
        cfg = self.config
        return LSTMNet(n_inputs, d_model=cfg.d_model, n_layers=cfg.n_blocks,
                       embedding_dim=cfg.embedding_dim, dropout=cfg.dropout).to(device)

    @classmethod
    def load(cls, folder: Path) -> LSTMReference:
        meta = cls._read(folder, ("lstm",))
        model = cls(ExpertConfig.from_dict(meta["config"]))
        model._restore(folder, meta)
        return model
