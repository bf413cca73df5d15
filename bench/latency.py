"""Latency of sequential single-image requests against a running server.

    python bench/latency.py --url http://127.0.0.1:8000 --image TILE.png --n 100 [--endpoint salt/segment]

Prints p50/p90/p99 in milliseconds (client-side wall time per request).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--image", required=True, type=Path)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--endpoint", default="salt/segment", help="path after /api/v1/")
    args = parser.parse_args()
    data = args.image.read_bytes()
    session = requests.Session()
    times = []
    for i in range(args.warmup + args.n):
        started = time.perf_counter()
        resp = session.post(f"{args.url}/api/v1/{args.endpoint}", files={"image": (args.image.name, data)}, timeout=60)
        resp.raise_for_status()
        if i >= args.warmup:
            times.append((time.perf_counter() - started) * 1000)
    q = statistics.quantiles(times, n=100)
    print(f"{args.n} sequential {args.endpoint} requests of {args.image.name}: "
          f"p50 {q[49]:.1f} ms, p90 {q[89]:.1f} ms, p99 {q[98]:.1f} ms, mean {statistics.mean(times):.1f} ms")


if __name__ == "__main__":
    main()
