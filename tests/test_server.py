"""The real server under load, and its graceful shutdown (gunicorn, as `make run`)."""
from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from bench.server import LiveServer

from .conftest import DATA, half_bright_tile, png_bytes

pytestmark = pytest.mark.slow


def _tiles(n: int) -> list[bytes]:
    folder = DATA / "tgs-salt" / "train" / "images"
    if folder.is_dir():
        return [p.read_bytes() for p in sorted(folder.glob("*.png"))[:n]]
    rng = np.random.default_rng(0)
    return [png_bytes(rng.integers(0, 255, (101, 101), dtype=np.uint8)) for _ in range(n)]


def _send(url: str, data: bytes, name: str, session: requests.Session) -> tuple[int | str, float]:
    started = time.perf_counter()
    try:
        resp = session.post(f"{url}/api/v1/salt/segment", files={"image": (name, data)}, timeout=120)
        return resp.status_code, time.perf_counter() - started
    except requests.ConnectionError:
        return "refused", time.perf_counter() - started


def salt_load(urls: list[str], requests_total: int = 640, clients: int = 32) -> tuple[list, float]:
    """Send ``requests_total`` salt uploads (every 20th a bad one, ``b"not an image"``) from
    ``clients`` threads, upload i to server ``urls[i % len(urls)]`` by client ``i % clients``: each
    client keeps one keep-alive connection to one server (no idle connection that the server may
    close under a client's next request). Returns ([((name, data, bad, url), (status, seconds))]
    in upload order, wall seconds)."""
    tiles = _tiles(64)
    jobs = [(f"tile{i}.png", b"not an image" if i % 20 == 7 else tiles[i % len(tiles)], i % 20 == 7, urls[i % len(urls)])
            for i in range(requests_total)]
    outcomes: list = [None] * len(jobs)

    def client(c: int) -> None:
        with requests.Session() as session:
            for i in range(c, len(jobs), clients):
                outcomes[i] = (jobs[i], _send(jobs[i][3], jobs[i][1], jobs[i][0], session))

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return outcomes, time.perf_counter() - started


def test_640_requests_from_32_clients_lose_nothing(tmp_path, model_dir):
    server = LiveServer(tmp_path, model_dir)
    try:
        outcomes, wall = salt_load([server.url])            # 32 refused uploads mixed in
        statuses = [status for _, (status, _) in outcomes]
        assert not [s for s in statuses if s == "refused" or (isinstance(s, int) and s >= 500)]
        answered = [job for job, (status, _) in outcomes if status == 200]
        refused = [job for job, (status, _) in outcomes if status == 400]
        assert len(answered) == 608 and len(refused) == 32
        assert all(job[2] for job in refused) and not any(job[2] for job in answered)
        rows = server.rows("salt")
        assert len(rows) == len(answered)
        assert sorted(r[1] for r in rows) == sorted(job[0] for job in answered)   # exactly one row each
        latencies = sorted(t for _, (s, t) in outcomes if s == 200)
        models = requests.get(f"{server.url}/api/v1/models").json()["models"]
        salt = next(m for m in models if m["task"] == "salt")
        print(f"\nload: 640 requests, 32 clients, {wall:.1f} s, {len(answered) / wall:.1f} answered/s, "
              f"p50 {statistics.median(latencies) * 1e3:.0f} ms, p99 {latencies[int(0.99 * len(latencies))] * 1e3:.0f} ms, "
              f"5xx 0, rows {len(rows)}, mean batch {salt['mean_batch_size']}")
        assert requests.get(f"{server.url}/api/v1/ready").status_code == 200
    finally:
        server.stop()


def test_sigterm_lets_in_flight_requests_finish(tmp_path, model_dir):
    server = LiveServer(tmp_path, model_dir, graceful_timeout=30)
    tile = png_bytes(half_bright_tile((202, 202)))      # 9 tiles: a request worth being in flight
    results: list[tuple[float, int | str]] = []          # (start time, outcome) of every request
    lock = threading.Lock()
    stop_sending = threading.Event()

    def client(n):
        session = requests.Session()
        while not stop_sending.is_set():
            started = time.time()
            status, _ = _send(server.url, tile, f"c{n}.png", session)
            with lock:
                results.append((started, status))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(3)
    stop_sending.set()
    sigterm_at = time.time()
    os.kill(server.proc.pid, signal.SIGTERM)
    # New connections are not served: gunicorn stops accepting at once (the kernel may still
    # complete the TCP handshake until the worker closes its listener, then resets it).
    assert refused_within(f"{server.url}/api/v1/health", 3.0)
    exit_code = server.proc.wait(60)
    exited_after = time.time() - sigterm_at
    for t in threads:
        t.join(30)
    server.log.close()
    in_flight = [status for started, status in results if started < sigterm_at]
    assert in_flight and all(status == 200 for status in in_flight), in_flight
    assert len(server.rows("salt")) == len(in_flight)     # their rows were written
    assert exit_code == 0 and exited_after < 30
    print(f"\nshutdown: {len(in_flight)} requests sent before SIGTERM, all answered and recorded; "
          f"exit {exit_code} after {exited_after:.1f} s")


def refused_within(url: str, seconds: float) -> bool:
    """Whether ``url`` stops being answered (connection refused or reset, or no answer) within
    ``seconds``: polled every 50 ms instead of a fixed sleep."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            requests.get(url, timeout=min(1.0, max(0.05, deadline - time.time())))
        except (requests.ConnectionError, requests.Timeout):
            return True
        time.sleep(0.05)
    return False


def test_sigterm_with_a_job_running_stops_at_once_and_the_job_runs_after_the_restart(tmp_path, model_dir):
    """A job is running: SIGTERM refuses new connections at once (no hanging in the backlog), the
    worker stops the job after its chunk instead of waiting the graceful timeout, and the next start
    runs the job again from its kept input."""
    env = {"SYNC_MAX_TILES": "4", "JOB_CHUNK_ROWS": "4"}
    server = LiveServer(tmp_path, model_dir, graceful_timeout=30, env=env)
    section = png_bytes(np.random.default_rng(1).integers(0, 255, (1200, 1500), dtype=np.uint8))
    job = requests.post(f"{server.url}/api/v1/salt/jobs", files={"image": ("big.png", section)}, timeout=60).json()
    path = job["status_url"].split(str(server.port), 1)[1]
    deadline = time.time() + 60
    while requests.get(server.url + path, timeout=10).json()["tiles_done"] == 0 and time.time() < deadline:
        time.sleep(0.1)
    sigterm_at = time.time()
    os.kill(server.proc.pid, signal.SIGTERM)
    assert refused_within(f"{server.url}/api/v1/health", 2.0)
    refused_after = time.time() - sigterm_at
    assert server.proc.wait(60) == 0
    exited_after = time.time() - sigterm_at
    server.log.close()
    assert refused_after < 2 and exited_after < 10, (refused_after, exited_after)
    again = LiveServer(tmp_path, model_dir, env=env)          # the same database and uploads
    try:
        deadline = time.time() + 180
        while (body := requests.get(again.url + path, timeout=10).json())["status"] in ("queued", "running"):
            assert time.time() < deadline, body
            time.sleep(0.5)
        assert body["status"] == "done" and body["tiles_done"] == body["tiles_total"], body
    finally:
        again.stop()
    print(f"\nSIGTERM with a job running: new connections refused after {refused_after:.2f} s, "
          f"exit after {exited_after:.1f} s; the job finished after the restart")
