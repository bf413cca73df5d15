"""Interactive latency while a large section runs as a background job, on the real server.

    python bench/starvation.py [--megapixels 4] [--requests 30] [--backend local|ray]

Starts gunicorn (as ``make run`` does) with the committed checkpoints, posts a section of
``--megapixels`` MP to ``/api/v1/salt/segment`` (it becomes a job), then sends single 101x101
tiles one after the other while the job runs, and prints their p50/p95 latency, the job's time
and its tiles per second. The issue's bar: tile p95 under 3 s while a 4 MP job runs.
``--backend ray`` starts a Ray head (``ray start --head``), deploys the checkpoints with
``flask serve deploy`` (one replica, 2 torch threads) and serves through it (``INFERENCE_BACKEND=ray``).
"""
from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from bench.cluster import RayHead
from bench.server import LiveServer

ROOT = Path(__file__).resolve().parent.parent


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=4.0)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--backend", choices=("local", "ray"), default="local")
    args = parser.parse_args()
    side = int(round((args.megapixels * 1e6) ** 0.5))
    rng = np.random.default_rng(0)
    coarse = rng.integers(30, 220, (side // 16 + 2, side // 16 + 2)).astype(np.uint8)
    big = png(np.kron(coarse, np.ones((16, 16), np.uint8))[:side, :side])
    tile = png(rng.integers(30, 220, (101, 101)).astype(np.uint8))
    with tempfile.TemporaryDirectory() as work:
        head, env = None, {}
        if args.backend == "ray":
            head = RayHead(num_cpus=2)
            head.deploy(ROOT / "models", Path(work), RAY_NUM_CPUS="0.25", TORCH_THREADS="2")
            env = {**head.env, "INFERENCE_BACKEND": "ray"}
        server = LiveServer(Path(work), ROOT / "models", env=env)
        try:
            started = time.perf_counter()
            job = requests.post(f"{server.url}/api/v1/salt/segment", files={"image": ("big.png", big)}, timeout=120)
            assert job.status_code == 202, job.text
            status_url = job.json()["status_url"]
            latencies, during = [], 0
            for _ in range(args.requests):
                t0 = time.perf_counter()
                assert requests.post(f"{server.url}/api/v1/salt/segment", files={"image": ("t.png", tile)},
                                     timeout=60).status_code == 200
                latencies.append(time.perf_counter() - t0)
                during += requests.get(status_url, timeout=10).json()["status"] == "running"
            while (state := requests.get(status_url, timeout=10).json())["status"] in ("queued", "running"):
                time.sleep(0.5)
            job_seconds = time.perf_counter() - started
        finally:
            server.stop()
            if head is not None:
                head.stop()
    p95 = statistics.quantiles(latencies, n=20)[-1]
    print(f"backend {args.backend}: section {side}x{side} ({side * side / 1e6:.1f} MP, "
          f"{state['tiles_total']} tiles): job {state['status']} "
          f"in {job_seconds:.1f} s ({state['tiles_total'] / job_seconds:.1f} tiles/s, "
          f"{job_seconds / (side * side / 1e6):.1f} s per MP, with the tile requests beside it)")
    print(f"{len(latencies)} single tiles, {during} answered while the job ran: "
          f"p50 {statistics.median(latencies) * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms, max {max(latencies) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
