"""``ExpertConfig``: the hyper-parameters of a sequence expert (re-exported by
``ml.experts``; here so the training loop needs no import of the experts module)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

SCHEDULES = ("cosine", "plateau")
#: forward implementations of the xLSTM stack on CPU (see ``ml.nn.networks``)
XLSTM_KERNELS = ("fast", "package")


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

    def __post_init__(self) -> None:
        self.slstm_at = tuple(int(i) for i in self.slstm_at)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.xlstm_kernel not in XLSTM_KERNELS:
            raise ValueError(f"xlstm_kernel must be one of {XLSTM_KERNELS}, "
                             f"got {self.xlstm_kernel!r}")
        for name in ("seq_len", "d_model", "n_blocks", "embedding_dim", "batch_size",
                     "max_epochs", "patience", "train_stride"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ExpertConfig.{name} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["slstm_at"] = list(self.slstm_at)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExpertConfig:
        """Rebuild from ``to_dict`` output; unknown keys are an error (a config written
        by another version must not load half-understood)."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown ExpertConfig keys: {sorted(unknown)}")
        return cls(**values)
