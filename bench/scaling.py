"""Local backend vs Ray Serve backend (1 and 2 replicas): throughput and p50/p99 latency of the
salt and rocks APIs at 1, 8 and 32 concurrent clients, through gunicorn, with the shipped models.

    python -m bench.scaling [--requests-per-client 8] [--out docs/scaling.json]

Each configuration starts its own server (and for Ray its own head, ``ray start --head``, with the
checkpoints deployed by ``flask serve deploy``), warms it up, then each client sends its requests
one after the other: one 101x101 TGS tile (salt) or one 28x28 rock image (rocks) per request.
Prints a Markdown table (docs/OPERATIONS.md, "Scaling out") and writes the figures as JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

from bench.cluster import RayHead
from bench.server import ROOT, LiveServer

DATA = ROOT.parent / "shared" / "data"
ENDPOINTS = {"salt": "/api/v1/salt/segment", "rocks": "/api/v1/rocks/classify"}


def inputs(task: str, n: int = 32) -> list[bytes]:
    """Request bodies: real TGS tiles / Geological-Similarity images when ../shared/data exists."""
    import io

    from PIL import Image

    folder = DATA / ("tgs-salt/train/images" if task == "salt" else "geological-similarity/gneiss")
    files = sorted(folder.glob("*.png" if task == "salt" else "*.jpg"))[:n] if folder.is_dir() else []
    if files:
        return [p.read_bytes() for p in files]
    rng = np.random.default_rng(0)
    size = (101, 101) if task == "salt" else (28, 28, 3)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def load(url: str, task: str, clients: int, per_client: int) -> dict:
    """``clients`` threads sending ``clients x per_client`` requests (at least 32), each client one
    after the other; throughput and latencies of the answered ones."""
    bodies = inputs(task)
    local = threading.local()

    def one(i: int) -> tuple[int, float]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        started = time.perf_counter()
        resp = local.session.post(url + ENDPOINTS[task], files={"image": (f"{i}.png", bodies[i % len(bodies)])},
                                  timeout=300)
        return resp.status_code, time.perf_counter() - started

    for i in range(4):                                   # warm-up (not measured)
        one(i)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(max(32, clients * per_client))))
    wall = time.perf_counter() - started
    ok = sorted(t for s, t in results if s == 200)
    return {"task": task, "clients": clients, "requests": len(results), "ok": len(ok),
            "errors_5xx": sum(s >= 500 for s, _ in results), "req_per_s": round(len(ok) / wall, 1),
            "p50_ms": round(statistics.median(ok) * 1e3) if ok else None,
            "p99_ms": round(ok[min(len(ok) - 1, int(0.99 * len(ok)))] * 1e3) if ok else None}


def run_backend(name: str, workdir: Path, per_client: int, clients: list[int]) -> list[dict]:
    """Start one backend configuration, measure every (task, clients) cell, stop it."""
    head, env = None, {"GUNICORN_THREADS": "32"}
    if name.startswith("ray"):
        replicas = int(name.split("-")[1])
        head = RayHead(num_cpus=2)
        head.deploy(ROOT / "models", workdir, RAY_MIN_REPLICAS=str(replicas), RAY_MAX_REPLICAS=str(replicas),
                    RAY_NUM_CPUS="0.25", TORCH_THREADS=str(max(1, 2 // replicas)))
        env.update(head.env, INFERENCE_BACKEND="ray")
    server = LiveServer(workdir, ROOT / "models", env=env)
    try:
        rows = []
        for task in ENDPOINTS:
            for n in clients:
                row = {"backend": name, **load(server.url, task, n, per_client)}
                print(json.dumps(row), flush=True)
                rows.append(row)
        return rows
    finally:
        server.stop()
        if head is not None:
            head.stop()


def table(rows: list[dict]) -> str:
    lines = ["| task | clients | backend | req/s | p50 ms | p99 ms | 5xx |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["task"], r["clients"], r["backend"])):
        lines.append(f"| {r['task']} | {r['clients']} | {r['backend']} | {r['req_per_s']} | {r['p50_ms']} | "
                     f"{r['p99_ms']} | {r['errors_5xx']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["local", "ray-1", "ray-2"])
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--requests-per-client", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "scaling.json")
    args = parser.parse_args()
    rows = []
    for name in args.backends:
        with tempfile.TemporaryDirectory(prefix=f"scaling-{name}-") as tmp:
            rows += run_backend(name, Path(tmp), args.requests_per_client, args.clients)
    print(table(rows))
    args.out.write_text(json.dumps({"machine": f"{platform.processor() or platform.machine()}, "
                                               f"{__import__('os').cpu_count()} cores", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
