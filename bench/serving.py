"""Serving benchmark: raw model throughput vs served throughput and latency.

    python bench/serving.py [--tasks salt rocks] [--seconds 20] [--out docs/PERFORMANCE.md]

Starts the server as ``make run`` does (gunicorn, gunicorn.conf.py, the committed models),
then for each task measures (a) the raw forward throughput of the checkpoint at batch
``max_batch_size`` in a process like the server's, (b) served images/s and latency
p50/p90/p99 with 1, 8 and 32 concurrent single-image clients, (c) the mean batch size the
batcher formed at each level (from /metrics). Prints a table and writes it to --out.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests
import torch

from bench.server import ROOT, LiveServer
from geovision.checkpoint import load_checkpoint

ENDPOINTS = {"salt": "/api/v1/salt/segment", "rocks": "/api/v1/rocks/classify"}
DATA = ROOT.parent / "shared" / "data"


def sample_images(task: str, n: int = 64) -> list[bytes]:
    """Real validation images when ../shared/data exists, else random ones of the same size."""
    from io import BytesIO

    from PIL import Image

    folder = DATA / ("tgs-salt/train/images" if task == "salt" else "geological-similarity/marble")
    if folder.is_dir():
        return [p.read_bytes() for p in sorted(folder.iterdir())[:n]]
    size = (101, 101) if task == "salt" else (28, 28, 3)
    out = []
    for i in range(n):
        buf = BytesIO()
        Image.fromarray(np.random.default_rng(i).integers(0, 255, size, dtype=np.uint8)).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def raw_throughput(task: str, batch: int, seconds: float) -> float:
    """Images/s of the checkpoint's forward pass at ``batch`` (one tile per image for salt)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ckpt = load_checkpoint(ROOT / "models" / task, device)
    x = torch.randn(batch, *ckpt.meta["input_shape"], device=device)
    with torch.inference_mode():
        ckpt.module(x)
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            ckpt.module(x)
            done += batch
        if device.type == "cuda":
            torch.cuda.synchronize()
    return done / (time.perf_counter() - started)


def batch_stats(url: str, task: str) -> tuple[float, float]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    total = float(re.search(rf'geovision_batch_size_sum{{model="{task}"}} (\S+)', text).group(1))
    count = float(re.search(rf'geovision_batch_size_count{{model="{task}"}} (\S+)', text).group(1))
    return total, count


def served(url: str, task: str, images: list[bytes], clients: int, seconds: float) -> dict:
    """Closed-loop load: ``clients`` threads each sending one image per request for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    before = batch_stats(url, task)

    def client(n: int) -> None:
        nonlocal errors
        session = requests.Session()
        i = n
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            resp = session.post(url + ENDPOINTS[task], files={"image": (f"{i}.png", images[i % len(images)])}, timeout=120)
            with lock:
                if resp.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
            i += clients

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    after = batch_stats(url, task)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    return {"clients": clients, "images_per_s": len(latencies) / wall, "p50_ms": q[49] * 1e3,
            "p90_ms": q[89] * 1e3, "p99_ms": q[98] * 1e3, "errors": errors,
            "mean_batch": (after[0] - before[0]) / max(1.0, after[1] - before[1])}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["salt", "rocks"])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--levels", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "PERFORMANCE.md")
    args = parser.parse_args()
    max_batch = int(os.environ.get("MAX_BATCH_SIZE", 32))
    lines = [f"Machine: {machine()}", f"Server: gunicorn gthread, 1 worker, max_batch_size {max_batch}, "
             f"max_batch_delay_ms {os.environ.get('MAX_BATCH_DELAY_MS', 10)}; {args.seconds:.0f} s per level", ""]
    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer(Path(tmp), ROOT / "models")
        try:
            for task in args.tasks:
                raw = raw_throughput(task, max_batch, min(args.seconds, 10))
                images = sample_images(task)
                rows = [served(server.url, task, images, c, args.seconds) for c in args.levels]
                lines += [f"### {task}", "", f"Raw forward throughput at batch {max_batch}: **{raw:.1f} images/s**", "",
                          "| clients | served images/s | p50 ms | p90 ms | p99 ms | mean batch | errors | served / raw |",
                          "|---|---|---|---|---|---|---|---|"]
                for r in rows:
                    lines.append(f"| {r['clients']} | {r['images_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p90_ms']:.0f} | "
                                 f"{r['p99_ms']:.0f} | {r['mean_batch']:.1f} | {r['errors']} | {r['images_per_s'] / raw:.2f} |")
                gain = rows[-1]["images_per_s"] / rows[0]["images_per_s"]
                lines += ["", f"Gain of {rows[-1]['clients']} clients over 1: {gain:.1f}x", ""]
        finally:
            server.stop()
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"# Serving performance\n\nMeasured with `make bench` on {time.strftime('%Y-%m-%d')}.\n\n{text}\n")


if __name__ == "__main__":
    main()
