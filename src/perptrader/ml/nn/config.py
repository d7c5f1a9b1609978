"""``ExpertConfig``: the hyper-parameters of a sequence expert (re-exported by
``ml.experts``; here so the training loop needs no import of the experts module)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

SCHEDULES = ("cosine", "plateau")
#: forward implementations of the xLSTM stack on CPU (see ``ml.nn.networks``)
XLSTM_KERNELS = ("fast", "package")
#: the xLSTM layout fields and the values every config saved before they existed was
#: trained with (``ExpertConfig.from_dict`` fills these in, whatever the defaults now are)
LEGACY_XLSTM_LAYOUT: dict[str, float | int] = {
    "mlstm_proj_factor": 2.0, "slstm_ffn_factor": 1.3, "mlstm_heads": 4}


@dataclass
class ExpertConfig:
    """Window, network, optimisation and device settings of one expert.

    ``train_stride`` uses every k-th training window (quick runs: neighbouring windows
    overlap in L-1 rows, so striding loses less than it seems). ``amp`` only acts on
    CUDA (bf16 autocast where supported, else fp16 with a GradScaler).
    ``missing_indicator`` adds one 0/1 channel per feature column (1 = raw value NaN);
    off by default because it doubles the input width. ``cpu_threads``: torch threads
    on CPU, None = every core (``os.cpu_count()``); small nets on a busy machine train
    far faster on 1 thread (measured 15x on a loaded 2-core box), hence the knob.
    ``xlstm_kernel``: "fast" (default) runs the xLSTM stack's forward of
    ``ml.nn.networks`` on CPU, "package" the ``xlstm`` package's own; the parameters
    and the function are the same (a model saved before the knob existed loads as
    "fast" and predicts the same to float rounding), only the speed differs.
    ``mlstm_proj_factor``: the mLSTM block's up-projection (inner width = factor x
    d_model, rounded up to a multiple of 64 by the ``xlstm`` package; the package's
    default is 2). ``slstm_ffn_factor``: the gated feed-forward after each sLSTM block
    (up-projection factor, same rounding; 0 = no feed-forward). Both set how much
    matmul work the xLSTM does per step against an LSTM of the same width.
    ``mlstm_heads``: heads of the mLSTM layer (must divide its inner width); its
    parallel form costs B x heads x L x L per pass, so fewer heads = less of that.
    The defaults are the lean layout (1.0, 0, 1 head): on the real BTCUSDT 1h data it
    trains 1.4-1.7x faster than the original layout (2.0, 1.3, 4 heads) at the same
    out-of-sample macro-F1 within seed noise (docs/ml.md "Speed on CPU"). A config
    saved before these three existed loads with the layout it was trained with
    (``LEGACY_XLSTM_LAYOUT``), whatever the defaults.
    """

    seq_len: int = 64
    d_model: int = 64
    n_blocks: int = 2
    slstm_at: tuple[int, ...] = (1,)
    embedding_dim: int = 32
    dropout: float = 0.1
    batch_size: int = 64
    max_epochs: int = 20
    patience: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    schedule: str = "cosine"
    grad_clip: float = 1.0
    focal_gamma: float = 2.0
    label_smoothing: float = 0.1
    class_weights: bool = True
    train_stride: int = 1
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    missing_indicator: bool = False
    cpu_threads: int | None = None
    xlstm_kernel: str = "fast"
    mlstm_proj_factor: float = 1.0
    slstm_ffn_factor: float = 0.0
    mlstm_heads: int = 1

    def __post_init__(self) -> None:
        self.slstm_at = tuple(int(i) for i in self.slstm_at)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.xlstm_kernel not in XLSTM_KERNELS:
            raise ValueError(f"xlstm_kernel must be one of {XLSTM_KERNELS}, "
                             f"got {self.xlstm_kernel!r}")
        for name in ("seq_len", "d_model", "n_blocks", "embedding_dim", "batch_size",
                     "max_epochs", "patience", "train_stride", "mlstm_heads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ExpertConfig.{name} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        self.mlstm_proj_factor = float(self.mlstm_proj_factor)
        self.slstm_ffn_factor = float(self.slstm_ffn_factor)
        self.mlstm_heads = int(self.mlstm_heads)
        if self.mlstm_proj_factor <= 0.0:
            raise ValueError("mlstm_proj_factor must be > 0")
        if self.slstm_ffn_factor < 0.0:
            raise ValueError("slstm_ffn_factor must be >= 0 (0 = no feed-forward)")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["slstm_at"] = list(self.slstm_at)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExpertConfig:
        """Rebuild from ``to_dict`` output; unknown keys are an error (a config written
        by another version must not load half-understood). Layout keys a config lacks
        (saved before they existed) take the values of ``LEGACY_XLSTM_LAYOUT``, not the
        current defaults: the saved weights have the old layout's shapes."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown ExpertConfig keys: {sorted(unknown)}")
        return cls(**{**LEGACY_XLSTM_LAYOUT, **values})
