"""xLSTM benchmark: training throughput of the pattern expert's net (mLSTM + sLSTM
blocks) against the LSTM reference of the same width and depth, in the same run.

    .venv/bin/python bench/bench_xlstm.py [--seq-len 64] [--d-model 64] [--batch 64]
                                          [--steps 30] [--warmup 5] [--synthetic]

Inputs are the pattern expert's real windows (per-window normalised OHLCV + the pattern
feature columns): the real BTCUSDT 1h futures file of ../shared/data plus its 8h funding
and 1h mark files are imported into a temporary embedded store and the ML table is
built with ``load_ml_frame``; when the files are absent (or ``--synthetic``) a synthetic
random-walk table is used instead and the output says so. A step = window gather +
normalisation + forward + focal loss + backward + clip + AdamW step (what ``fit``
does per batch), timed after ``--warmup`` steps. CPU always; CUDA too when available
(sLSTM "cuda" kernel, bf16/fp16 autocast as in training).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from perptrader.ml.base import MLFrame
from perptrader.ml.experts import ExpertConfig, LSTMReference, XLSTMExpert
from perptrader.ml.nn.losses import FocalLoss
from perptrader.ml.nn.networks import count_parameters
from perptrader.ml.nn.training import Precision, optimizer_step, prepare_device
from real_data import SHARED, btc_1h_store, have_btc_1h


def real_table() -> MLFrame | None:
    """The real BTCUSDT 1h ML table, or None when the files are absent."""
    if not have_btc_1h():
        return None
    from perptrader.ml.dataset import load_ml_frame

    with btc_1h_store() as store:
        return load_ml_frame(store, "BTCUSDT", "1h")


def synthetic_table() -> MLFrame:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from ml_frames import synthetic_ml_frame

    return synthetic_ml_frame(n=6000)


def throughput(model: XLSTMExpert | LSTMReference, data: MLFrame, device: torch.device,
               steps: int, warmup: int) -> tuple[float, int]:
    """(training samples/s, parameters) of ``model``'s net on ``device``."""
    cfg = model.config
    torch.manual_seed(cfg.seed)
    model.columns = model.input_columns(data)
    source = model._source(data, device)
    net = model._build_net(source.n_inputs, device)
    net.train()
    ends_pool = data.labelled(model.usable_rows(data, np.arange(len(data))))
    y_all = torch.as_tensor(data.y, device=device)
    criterion = FocalLoss(np.ones(3), cfg.focal_gamma, cfg.label_smoothing).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    precision = Precision.for_device(device, cfg.amp)
    rng = np.random.default_rng(0)

    def step() -> None:
        ends = rng.choice(ends_pool, cfg.batch_size, replace=False)
        with precision.autocast(device):
            logits, _ = net(source.batch(ends))
        loss = criterion(logits, y_all[torch.as_tensor(ends, device=device)])
        optimizer_step(net, optimizer, loss, precision, cfg.grad_clip)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps * cfg.batch_size / (time.perf_counter() - t0), count_parameters(net)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: every core)")
    parser.add_argument("--synthetic", action="store_true", help="skip the real data")
    args = parser.parse_args()

    t0 = time.perf_counter()
    data = None if args.synthetic else real_table()
    source = "real BTCUSDT 1h (../shared/data, temporary store)"
    if data is None:
        data = synthetic_table()
        source = ("SYNTHETIC random walk (--synthetic)" if args.synthetic else
                  f"SYNTHETIC random walk (real files absent under {SHARED})")
    print(f"perptrader xLSTM benchmark · {platform.processor() or platform.machine()} · "
          f"torch {torch.__version__} · {os.cpu_count()} cores")
    print(f"table: {source}: {len(data):,} rows × {len(data.features)} features "
          f"(built in {time.perf_counter() - t0:.1f} s)")
    print(f"seq_len {args.seq_len} · d_model {args.d_model} · batch {args.batch} · "
          f"{args.steps} timed steps after {args.warmup} warm-up steps")
    cfg = ExpertConfig(seq_len=args.seq_len, d_model=args.d_model, batch_size=args.batch,
                       cpu_threads=args.threads)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    for device in devices:
        prepare_device(device, args.threads)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
            f"CPU, {torch.get_num_threads()} threads"
        print(f"\ndevice: {device} ({name})")
        rates = {}
        for label, model in (("xLSTM pattern (mLSTM+sLSTM)", XLSTMExpert("pattern", cfg)),
                             ("LSTM reference", LSTMReference(cfg))):
            rate, n_params = throughput(model, data, device, args.steps, args.warmup)
            rates[label] = rate
            print(f"  {label:<28} {n_params:>9,} params  {rate:>10,.0f} samples/s")
        x, lstm = rates.values()
        print(f"  ratio xLSTM / LSTM: {x / lstm:.2f} (xLSTM is {lstm / x:.1f}x slower)")


if __name__ == "__main__":
    main()
