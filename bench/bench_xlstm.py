"""xLSTM benchmark: training throughput of the pattern expert's net (mLSTM + sLSTM
blocks) against the LSTM reference of the same width and depth, in the same run.

    .venv/bin/python bench/bench_xlstm.py [--seq-len 64] [--d-model 64] [--batch 64]
                                          [--steps 30] [--warmup 5] [--synthetic]
                                          [--package-too] [--n-blocks 2] [--slstm-at 1]
                                          [--layouts legacy,default] [--threads N]

Inputs are the pattern expert's real windows (per-window normalised OHLCV + the pattern
feature columns): the real BTCUSDT 1h futures file of ../shared/data plus its 8h funding
and 1h mark files are imported into a temporary embedded store and the ML table is
built with ``load_ml_frame``; when the files are absent (or ``--synthetic``) a synthetic
random-walk table is used instead and the output says so. A step = window gather +
normalisation + forward + focal loss + backward + clip + AdamW step (what ``fit``
does per batch), timed after ``--warmup`` steps, in ``--rounds`` chunks interleaved
between the models (a shared machine's load shifts hit all models alike). CPU always;
CUDA too when available (sLSTM "cuda" kernel, bf16/fp16 autocast as in training).
The xLSTM runs the expert's default forward (``xlstm_kernel="fast"`` on CPU, see
``ml.nn.networks``); ``--package-too`` also times the ``xlstm`` package's own forward
of the first layout's net (the state before the fast form), with its own ratio to the
same LSTM measurement.

``--layouts`` names the xLSTM block layouts to time (``LAYOUTS``: ExpertConfig's
``mlstm_proj_factor``, ``slstm_ffn_factor``, ``mlstm_heads``), each one against the
same LSTM run: "legacy" = the layout of every model saved before those knobs (mLSTM
up-projection 2, 4 mLSTM heads, gated feed-forward 1.3 after the sLSTM), "lean" =
up-projection 1, one mLSTM head, no sLSTM feed-forward, "default" = ``ExpertConfig()``
(the lean layout since it was measured, see docs/ml.md).
At d_model 64 the mLSTM's parallel form over (B, heads, L, L) and the legacy layout's
matmuls are what an LSTM step does not pay; the lean layout drops most of both.
A busy 2-core machine: ``--threads 1`` gives steadier ratios (two torch threads
fighting another process for 2 cores slow each model by a different factor).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from perptrader.ml.base import MLFrame
from perptrader.ml.experts import ExpertConfig, LSTMReference, XLSTMExpert
from perptrader.ml.nn.config import LEGACY_XLSTM_LAYOUT
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


def trainer(model: XLSTMExpert | LSTMReference, data: MLFrame, device: torch.device
            ) -> tuple[Callable[[int], float], int]:
    """(run, parameters): ``run(n)`` trains ``model``'s net for n steps and returns the
    seconds they took."""
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

    def run(n: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    return run, count_parameters(net)


def interleaved_rates(runs: dict[str, Callable[[int], float]], batch: int, steps: int,
                      warmup: int, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Training samples/s of each model over ``steps`` steps, timed in ``rounds``
    interleaved chunks (model A, model B, ..., A, B, ...) so that a load change on a
    shared machine hits all of them alike; plus, per model, the median over the rounds
    of its rate relative to the last model's (the reference) in the same round."""
    for run in runs.values():
        run(warmup)
    chunks = [steps // rounds + (r < steps % rounds) for r in range(rounds)]
    seconds: dict[str, list[float]] = {label: [] for label in runs}
    for n in chunks:
        for label, run in runs.items():
            seconds[label].append(run(n) / n)
    reference = list(runs)[-1]
    rates = {label: steps * batch / (sum(s * n for s, n in zip(secs, chunks, strict=True)))
             for label, secs in seconds.items()}
    relative = {label: float(np.median(np.divide(seconds[reference], secs)))
                for label, secs in seconds.items()}
    return rates, relative


#: block layouts the benchmark can time (``--layouts``): ExpertConfig field overrides;
#: "default" is whatever ``ExpertConfig()`` builds today
LAYOUTS: dict[str, dict[str, float | int]] = {
    "default": {},
    "legacy": dict(LEGACY_XLSTM_LAYOUT),
    "lean": {"mlstm_proj_factor": 1.0, "slstm_ffn_factor": 0.0, "mlstm_heads": 1},
    "lean-4heads": {"mlstm_proj_factor": 1.0, "slstm_ffn_factor": 0.0, "mlstm_heads": 4},
}


def layout_config(base: ExpertConfig, name: str) -> ExpertConfig:
    """``base`` with the layout ``name`` of ``LAYOUTS`` (unknown name = error)."""
    if name not in LAYOUTS:
        raise SystemExit(f"unknown layout {name!r}; known: {', '.join(LAYOUTS)}")
    return replace(base, **LAYOUTS[name])


def describe(cfg: ExpertConfig) -> str:
    """The block layout of ``cfg`` in one line (what the ratio is of)."""
    blocks = "+".join("sLSTM" if i in cfg.slstm_at else "mLSTM"
                      for i in range(cfg.n_blocks))
    return (f"{blocks}, mLSTM proj {cfg.mlstm_proj_factor:g} x {cfg.mlstm_heads} heads, "
            f"sLSTM FFN {cfg.slstm_ffn_factor:g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5,
                        help="the timed steps run in this many interleaved rounds")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: every core)")
    parser.add_argument("--n-blocks", type=int, default=ExpertConfig.n_blocks,
                        help="xLSTM blocks = LSTM layers (the depth of both sides)")
    parser.add_argument("--slstm-at", default=",".join(map(str, ExpertConfig.slstm_at)),
                        help="sLSTM block positions, comma-separated ('' = mLSTM only)")
    parser.add_argument("--layouts", default="legacy,default",
                        help=f"xLSTM layouts to time, comma-separated, each against the "
                        f"same LSTM measurement; known: {', '.join(LAYOUTS)}")
    parser.add_argument("--synthetic", action="store_true", help="skip the real data")
    parser.add_argument("--package-too", action="store_true",
                        help="also time the xlstm package's own forward of the first "
                        "layout (slow on CPU)")
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
    slstm_at = tuple(int(i) for i in args.slstm_at.split(",") if i.strip())
    base = ExpertConfig(seq_len=args.seq_len, d_model=args.d_model, batch_size=args.batch,
                        cpu_threads=args.threads, n_blocks=args.n_blocks, slstm_at=slstm_at)
    layouts = {name: layout_config(base, name)
               for name in (n.strip() for n in args.layouts.split(",")) if name}
    for name, cfg in layouts.items():
        print(f"xLSTM {name}: {describe(cfg)}")
    print(f"LSTM reference: {args.n_blocks} layers")
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    for device in devices:
        prepare_device(device, args.threads)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
            f"CPU, {torch.get_num_threads()} threads"
        print(f"\ndevice: {device} ({name})")
        time_models(models_to_time(layouts, args.package_too and device.type == "cpu"),
                    data, device, args)


def models_to_time(layouts: dict[str, ExpertConfig], package_too: bool
                   ) -> list[tuple[str, XLSTMExpert | LSTMReference]]:
    """One xLSTM per layout (+ the package forward of the first), the LSTM last (the
    reference every ratio is taken against)."""
    models: list[tuple[str, XLSTMExpert | LSTMReference]] = [
        (f"xLSTM {name}", XLSTMExpert("pattern", cfg)) for name, cfg in layouts.items()]
    first_name, first = next(iter(layouts.items()))
    if package_too:
        models.append((f"xLSTM {first_name}, package fwd", XLSTMExpert(
            "pattern", replace(first, xlstm_kernel="package"))))
    models.append(("LSTM reference", LSTMReference(first)))
    return models


def time_models(models: list[tuple[str, XLSTMExpert | LSTMReference]], data: MLFrame,
                device: torch.device, args: argparse.Namespace) -> None:
    """Train every model interleaved and print samples/s and each xLSTM's ratio to the
    LSTM of the same run."""
    runs, n_params = {}, {}
    for label, model in models:
        runs[label], n_params[label] = trainer(model, data, device)
    rates, relative = interleaved_rates(runs, args.batch, args.steps, args.warmup,
                                        args.rounds)
    for label, rate in rates.items():
        print(f"  {label:<32} {n_params[label]:>9,} params  {rate:>10,.0f} samples/s")
    lstm = rates.pop("LSTM reference")
    for label, x in rates.items():
        print(f"  ratio {label} / LSTM: {x / lstm:.2f} (xLSTM is {lstm / x:.1f}x slower; "
              f"median of the {args.rounds} interleaved rounds {relative[label]:.2f})")


if __name__ == "__main__":
    main()
