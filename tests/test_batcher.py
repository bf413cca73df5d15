import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import pytest
import torch

from app.engine.batcher import DynamicBatcher, QueueFullError


def wait_until(condition, timeout: float = 10.0) -> None:
    """Poll ``condition`` until true (instead of sleeping a fixed time on a possibly loaded machine)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


class Doubler(torch.nn.Module):
    """Returns 2 * x; fails the whole batch when any row holds a negative value."""

    def __init__(self, delay: float = 0.0):
        super().__init__()
        self.delay = delay
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        time.sleep(self.delay)
        if (x < 0).any():
            raise ValueError("negative input")
        return x * 2


def test_each_caller_gets_its_own_rows():
    model = Doubler()
    batcher = DynamicBatcher(model, max_batch_size=16, max_batch_delay_ms=20)
    try:
        def call(i):
            n = 1 + i % 3
            x = torch.full((n, 2), float(i))
            return i, n, batcher(x, timeout=10)
        with ThreadPoolExecutor(24) as pool:
            for i, n, out in pool.map(call, range(96)):
                assert out.shape == (n, 2)
                assert torch.all(out == 2 * i)
    finally:
        batcher.close()


def test_batches_grow_under_load():
    model = Doubler(delay=0.02)
    batcher = DynamicBatcher(model, max_batch_size=8, max_batch_delay_ms=10)
    try:
        batcher(torch.ones(1, 1), timeout=5)
        assert model.calls == [1]            # alone: one row per pass
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda i: batcher(torch.ones(1, 1), timeout=10), range(64)))
        assert max(model.calls) == 8
        assert len(model.calls) < 1 + 64 / 2
        assert batcher.requests_served == 65
        assert batcher.mean_batch_size > 2
    finally:
        batcher.close()


def test_exception_reaches_only_its_batch():
    model = Doubler(delay=0.2)      # the three rows below queue while the first pass sleeps
    batcher = DynamicBatcher(model, max_batch_size=4, max_batch_delay_ms=30)
    try:
        blocker = batcher.submit(torch.ones(1, 1))          # occupies the worker
        while not model.calls:                              # until its forward pass runs
            time.sleep(0.001)
        bad_batch = [batcher.submit(torch.full((1, 1), v)) for v in (1.0, -1.0, 2.0)]
        assert blocker.result(5).item() == 2.0
        for f in bad_batch:                                  # one pass, all three fail
            with pytest.raises(ValueError, match="negative"):
                f.result(5)
        good = batcher.submit(torch.full((1, 1), 3.0))      # the worker survives the error
        assert good.result(5).item() == 6.0
        assert model.calls == [1, 3, 1]
    finally:
        batcher.close()


def test_large_request_runs_in_chunks_and_queue_is_bounded():
    model = Doubler()
    batcher = DynamicBatcher(model, max_batch_size=4, max_batch_delay_ms=1)
    try:
        assert torch.equal(batcher(torch.arange(10.0).view(10, 1), timeout=5), torch.arange(10.0).view(10, 1) * 2)
        assert model.calls == [4, 4, 2]          # never one forward pass above max_batch_size
    finally:
        batcher.close()
    gate = threading.Event()
    slow = DynamicBatcher(lambda x: (gate.wait(5), x)[1], max_batch_size=1, max_queue_size=2)
    try:
        slow.submit(torch.ones(1))
        wait_until(lambda: slow.queue_depth == 0)   # the worker holds the first one
        slow.submit(torch.ones(1))
        slow.submit(torch.ones(1))
        with pytest.raises(QueueFullError):
            slow.submit(torch.ones(1))
    finally:
        gate.set()
        slow.close()


class RecordsLayout(torch.nn.Module):
    """A convolution that remembers whether its input came channels-last and in which dtype it ran."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.seen: list[tuple[bool, torch.dtype]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        self.seen.append((x.stride()[1] == 1, out.dtype))   # channels-last: the channel stride is 1
        return out


def test_cpu_bf16_and_channels_last_reach_the_model():
    torch.manual_seed(0)
    model = RecordsLayout()
    x = torch.randn(2, 3, 16, 16)
    expected = model.conv(x)
    fast = DynamicBatcher(model, amp_dtype=torch.bfloat16, channels_last=True, name="fast")
    plain = DynamicBatcher(model, name="plain")
    try:
        out = fast(x, timeout=10)
        assert out.dtype == torch.float32 and torch.allclose(out, expected, atol=0.05)
        assert model.seen[-1] == (True, torch.bfloat16)
        assert torch.allclose(plain(x, timeout=10), expected, atol=1e-6)
        assert model.seen[-1] == (False, torch.float32)
    finally:
        fast.close()
        plain.close()


@pytest.mark.parametrize("setting, validated, supported, expected", [
    ("auto", True, True, torch.bfloat16), ("auto", False, True, None), ("auto", True, False, None),
    ("off", True, True, None), ("on", False, False, torch.bfloat16)])
def test_cpu_runtime_follows_config_and_meta(monkeypatch, setting, validated, supported, expected):
    import app.engine as engine_module
    import geovision.inference
    from geovision.checkpoint import Checkpoint

    monkeypatch.setattr(geovision.inference, "cpu_supports_bf16", lambda: supported)
    state = engine_module.EngineState({"DEVICE": "cpu", "MODEL_DIR": "none", "MAX_BATCH_SIZE": 4,
                                       "MAX_BATCH_DELAY_MS": 1, "INFERENCE_TIMEOUT_S": 5, "CPU_BF16": setting})
    meta = {"input_shape": [1, 8, 8], "runtime": {"cpu_bf16": validated}}
    runtime = state.runtime_for(Checkpoint("t", torch.nn.Identity(), meta, torch.device("cpu"), None))
    assert runtime["amp_dtype"] == expected
    assert runtime["channels_last"] == (expected is not None)
    assert runtime["frozen"] == (expected is None)   # float32 models are frozen (CPU_FREEZE=1)


class Gated:
    """A model that waits for ``gate`` before each forward pass and logs the first value of each row."""

    def __init__(self):
        self.gate, self.entered, self.rows = threading.Event(), threading.Event(), []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        assert self.gate.wait(10)
        self.rows.extend(int(v) for v in x[:, 0])
        return x * 2


def test_large_requests_run_in_chunks_and_urgent_ones_cut_in():
    model = Gated()
    batcher = DynamicBatcher(model, max_batch_size=4, max_batch_delay_ms=1, name="chunks")
    try:
        with ThreadPoolExecutor(3) as pool:
            blocker = pool.submit(batcher, torch.full((1, 1), -1.0))       # occupies the worker
            assert model.entered.wait(10)
            job = pool.submit(batcher, torch.arange(12.0).view(12, 1), None, 10)   # background: 3 chunks
            wait_until(lambda: batcher.queue_depth == 3)
            urgent = pool.submit(batcher, torch.full((2, 1), 100.0))       # interactive, arrives later
            wait_until(lambda: batcher.queue_depth == 4)
            model.gate.set()
            assert torch.equal(job.result(10), torch.arange(12.0).view(12, 1) * 2)
            assert urgent.result(10).tolist() == [[200.0], [200.0]] and blocker.result(10).item() == -2
        order = model.rows
        assert order.index(100) < order.index(0)          # the urgent rows ran before every chunk of the job
        assert sorted(batcher.batch_sizes) == [1, 2, 4]   # chunks of max_batch_size, never one pass of 12
    finally:
        batcher.close()


def test_a_caller_that_times_out_leaves_no_work_behind():
    model = Gated()
    batcher = DynamicBatcher(model, max_batch_size=2, max_batch_delay_ms=1, name="abandoned")
    try:
        with ThreadPoolExecutor(1) as pool:
            blocker = pool.submit(batcher, torch.full((1, 1), -1.0))
            assert model.entered.wait(10)
            with pytest.raises(FutureTimeout):
                batcher(torch.arange(8.0).view(8, 1), timeout=0.2)       # 4 chunks queued, then abandoned
            model.gate.set()
            blocker.result(10)
        assert batcher(torch.full((1, 1), 7.0), timeout=10).item() == 14
        assert model.rows == [-1, 7]                       # none of the 8 abandoned rows was computed
    finally:
        batcher.close()


def test_a_failing_callback_does_not_stop_the_batcher():
    """An on_batch callback that raises (a metrics bug) is logged; the model keeps answering."""
    def broken(*_):
        raise RuntimeError("metrics backend down")

    batcher = DynamicBatcher(Doubler(), max_batch_size=4, max_batch_delay_ms=1, on_batch=broken)
    try:
        for i in range(3):
            assert torch.equal(batcher(torch.full((1, 2), float(i)), timeout=10), torch.full((1, 2), 2.0 * i))
        assert batcher.alive
    finally:
        batcher.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_batcher_thread_is_seen_and_restarted(app, client, monkeypatch):
    """The worker thread dies (an error outside the forward pass): /ready answers 503 naming the
    model and requests get 503 instead of hanging; the supervisor restarts it and both recover."""
    import io

    from .conftest import rock_png

    state = app.extensions["engine"]
    batcher = state.batchers["rocks"]
    original = batcher._collect
    calls = {"n": 0}

    def dies_once():
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("killed")
        return original()

    monkeypatch.setattr(batcher, "_collect", dies_once)
    # wake the thread so that it calls the patched _collect and dies
    batcher.submit(torch.zeros(1, *state.checkpoints["rocks"].meta["input_shape"]))
    wait_until(lambda: not batcher.alive)
    ready = client.get("/api/v1/ready")
    assert ready.status_code == 503 and "rocks" in ready.get_json()["errors"]
    refused = client.post("/api/v1/rocks/classify", data={"image": [(io.BytesIO(rock_png("marble")), "r.png")]},
                          content_type="multipart/form-data")
    assert refused.status_code == 503
    assert state.supervise_once() == ["rocks"] and batcher.alive and batcher.restarts == 1
    assert client.get("/api/v1/ready").status_code == 200
    ok = client.post("/api/v1/rocks/classify", data={"image": [(io.BytesIO(rock_png("marble")), "r.png")]},
                     content_type="multipart/form-data")
    assert ok.status_code == 200, ok.get_json()
