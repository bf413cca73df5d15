"""Salt inference speed on this CPU: runtime settings, tiles per second, FLOPs and peak.

    python bench/salt_speed.py [--model models/salt [OTHER ...]] [--threads 2] [--check-metric] [--json out.json]

For the checkpoint's TorchScript module it times batches of 1 and 32 tiles (128x128 inputs, the
model's own flip TTA inside) under each runtime setting: as loaded (float32), ``torch.jit.freeze``
+ ``torch.jit.optimize_for_inference``, channels-last inputs, and bfloat16 autocast, each alone and
combined. It counts the FLOPs of one tile with ``torch.utils.flop_counter.FlopCounterMode`` and
divides the achieved FLOP/s by the CPU's peak (cores x clock x FLOPs per cycle: an AMD Zen 4 core
does 32 float32 or 64 bfloat16 FLOPs per cycle with AVX-512). ``--check-metric`` also scores the
360 validation tiles through the serving path (tiling, blending, thresholds of meta.json) in
float32 and in bfloat16, so that a faster setting is taken only when the metric holds.
Several ``--model`` folders are timed in one run, one after the other (a side-by-side comparison
under the same machine load). Prints a Markdown table; ``--json`` writes the figures for ``meta.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from geovision import tiling
from geovision.checkpoint import load_checkpoint
from geovision.inference import optimise_for_cpu
from geovision.metrics import tgs_metric

ROOT = Path(__file__).resolve().parent.parent

DATA = ROOT.parent / "shared" / "data" / "tgs-salt"
FLOPS_PER_CYCLE = {"float32": 32, "bfloat16": 64}   #: per core, AVX-512 on AMD Zen 4


def cpu_clock_ghz() -> float:
    """Nominal clock from /proc/cpuinfo (``cpu MHz`` of the first core)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1]) / 1000
    return 0.0


def tile_flops(module: torch.nn.Module, size: int) -> int:
    """FLOPs of one input row (multiply-add = 2 FLOPs), counted on a batch of 2 and halved."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(torch.zeros(2, 1, size, size))
    return counter.get_total_flops() // 2


def time_batches(run, batch: int, size: int, seconds: float = 6.0) -> float:
    """Tiles per second of ``run`` on random batches (warm-up excluded, median of repeats)."""
    x = torch.randn(batch, 1, size, size)
    run(x)
    run(x)
    rates, spent = [], 0.0
    while spent < seconds or len(rates) < 3:
        started = time.perf_counter()
        run(x)
        took = time.perf_counter() - started
        rates.append(batch / took)
        spent += took
    return float(np.median(rates))


def variants(module: torch.nn.Module) -> dict:
    """Name -> (callable on a float32 batch, dtype of its arithmetic)."""
    frozen = optimise_for_cpu(module)

    def call(m, channels_last: bool, bf16: bool):
        def run(x):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return m(x).float()
        return run

    return {
        "as loaded (float32)": (call(module, False, False), "float32"),
        "freeze + optimize_for_inference": (call(frozen, False, False), "float32"),
        "channels-last": (call(module, True, False), "float32"),
        "bf16 autocast": (call(module, False, True), "bfloat16"),
        "channels-last + bf16": (call(module, True, True), "bfloat16"),
        "freeze + channels-last + bf16": (call(frozen, True, True), "bfloat16"),
    }


def validation_metric(run, meta: dict) -> float:
    """TGS metric of ``run`` on the fixed 360-tile split through the serving path."""
    from PIL import Image

    ids = (ROOT / "train" / "splits" / "salt_val_ids.txt").read_text().split()
    truth, pred = [], []
    for i in ids:
        gray = np.asarray(Image.open(DATA / "train" / "images" / f"{i}.png").convert("L"), np.float32) / 255
        inputs, origins, canvas = tiling.model_inputs(gray, meta, tiling.OVERLAP)
        out = run(torch.from_numpy(inputs)).numpy()
        pred.append(tiling.mask_from_outputs(out, origins, canvas, gray.shape, meta, float(meta["threshold"]),
                                             tiling.OVERLAP))
        truth.append(np.asarray(Image.open(DATA / "train" / "masks" / f"{i}.png").convert("L")) > 127)
    return tgs_metric(np.stack(truth), np.stack(pred))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=[str(ROOT / "models" / "salt")])
    parser.add_argument("--threads", type=int, nargs="+", default=[os.cpu_count() or 1])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--only", nargs="*", help="names of the settings to time (default: all)")
    parser.add_argument("--check-metric", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    reports = [measure(model, args) for model in args.model]
    report = reports[0] if len(reports) == 1 else {"models": reports}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


def measure(model: str, args: argparse.Namespace) -> dict:
    """The table of one checkpoint folder (see the module docstring)."""
    ckpt = load_checkpoint(model, torch.device("cpu"))
    size = int(ckpt.meta["input_shape"][-1])
    flops = tile_flops(ckpt.module, size)
    clock = cpu_clock_ghz()
    report = {"model": f"{ckpt.name} {ckpt.version}", "gflops_per_tile": round(flops / 1e9, 3),
              "cpu_clock_ghz": round(clock, 3), "rows": []}
    print(f"{report['model']}: {flops / 1e9:.2f} GFLOPs per tile (input {size}x{size}), CPU clock {clock:.2f} GHz")
    print("| setting | threads | batch | tiles/s | GFLOP/s | of peak |\n|---|---|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, (run, dtype) in variants(ckpt.module).items():
            if args.only and name not in args.only:
                continue
            peak = threads * clock * 1e9 * FLOPS_PER_CYCLE[dtype]
            for batch in args.batches:
                rate = time_batches(run, batch, size)
                achieved = rate * flops
                row = {"setting": name, "threads": threads, "batch": batch, "tiles_per_s": round(rate, 2),
                       "gflop_per_s": round(achieved / 1e9, 1), "of_peak": round(achieved / peak, 3), "dtype": dtype}
                report["rows"].append(row)
                print(f"| {name} | {threads} | {batch} | {rate:.2f} | {achieved / 1e9:.1f} | {achieved / peak:.1%} |",
                      flush=True)
    if args.check_metric:
        fp32, bf16 = variants(ckpt.module)["as loaded (float32)"][0], variants(ckpt.module)["channels-last + bf16"][0]
        report["val_tgs_metric_float32"] = round(validation_metric(fp32, ckpt.meta), 4)
        report["val_tgs_metric_bf16"] = round(validation_metric(bf16, ckpt.meta), 4)
        print(f"validation TGS metric: float32 {report['val_tgs_metric_float32']}, "
              f"channels-last + bf16 {report['val_tgs_metric_bf16']}")
    return report


if __name__ == "__main__":
    main()
