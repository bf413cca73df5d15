import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from app.engine.batcher import DynamicBatcher, QueueFullError


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
    model = Doubler(delay=0.05)
    batcher = DynamicBatcher(model, max_batch_size=4, max_batch_delay_ms=30)
    try:
        blocker = batcher.submit(torch.ones(1, 1))          # occupies the worker
        while not model.calls:                              # until its forward pass runs
            time.sleep(0.001)
        bad_batch = [batcher.submit(torch.full((1, 1), v)) for v in (1.0, -1.0, 2.0)]
        time.sleep(0.2)
        good = batcher.submit(torch.full((1, 1), 3.0))
        assert blocker.result(5).item() == 2.0
        for f in bad_batch:
            with pytest.raises(ValueError, match="negative"):
                f.result(5)
        assert good.result(5).item() == 6.0
    finally:
        batcher.close()


def test_large_request_runs_alone_and_queue_is_bounded():
    model = Doubler()
    batcher = DynamicBatcher(model, max_batch_size=4, max_batch_delay_ms=1)
    try:
        assert batcher(torch.ones(10, 1), timeout=5).shape == (10, 1)
        assert 10 in model.calls
    finally:
        batcher.close()
    gate = threading.Event()
    slow = DynamicBatcher(lambda x: (gate.wait(5), x)[1], max_batch_size=1, max_queue_size=2)
    try:
        slow.submit(torch.ones(1))
        time.sleep(0.05)   # the worker holds the first one
        slow.submit(torch.ones(1))
        slow.submit(torch.ones(1))
        with pytest.raises(QueueFullError):
            slow.submit(torch.ones(1))
    finally:
        gate.set()
        slow.close()
