"""Dynamic batching: many concurrent requests, one forward pass.

Requests put ``(tensor, future)`` on a bounded priority queue; one worker thread takes up to
``max_batch_size`` rows, waiting at most ``max_batch_delay_ms`` after the first,
runs a single forward pass under ``torch.inference_mode()`` and resolves each
future with its own rows. An exception fails only the callers of that batch.
A request larger than ``max_batch_size`` is queued as chunks of at most that size, so other
requests take turns between its chunks; requests of a lower ``priority`` number go first
(interactive requests before background jobs, Triton's priority levels), in arrival order
within a level. A caller that stops waiting (timeout) cancels its queued chunks: no work is
left behind. The knob names follow Triton's dynamic batcher and TorchServe.
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)
#: ``on_batch(model name, rows, queue waits in s, forward-pass seconds)``, called after each pass.
BatchCallback = Callable[[str, int, list[float], float], None]


_STOP = 1 << 30   #: priority of the stop marker: after every queued request


class QueueFullError(RuntimeError):
    """Raised by :meth:`DynamicBatcher.submit` when the request queue is full."""


@dataclass
class _Request:
    inputs: torch.Tensor
    future: Future
    enqueued: float


class DynamicBatcher:
    """Batch requests for one model on a worker thread.

    Args:
        model: callable taking a float tensor (B, *item_shape) and returning a tensor
            (B, ...) whose first dimension matches.
        max_batch_size: most rows in one forward pass (a larger request runs alone).
        max_batch_delay_ms: longest wait for more requests after the first one.
        device: where the batch is moved before the forward pass.
        max_queue_size: pending requests before :meth:`submit` raises QueueFullError.
        name: used in the thread name and logs.
        amp_dtype: run the forward pass under ``torch.autocast`` with this dtype (CUDA float16 or
            bfloat16; CPU bfloat16).
        channels_last: hand 4-D batches to the model in channels-last memory format (faster
            oneDNN convolutions on CPU, with bfloat16 above all).
        on_batch: called after each forward pass with (name, rows, queue waits in s, seconds).
    On CUDA the batch is copied from pinned memory without blocking, and a batch that runs
    out of GPU memory is split in halves and retried instead of failing.
    """

    def __init__(self, model, max_batch_size: int = 32, max_batch_delay_ms: float = 10.0,
                 device: torch.device | str = "cpu", max_queue_size: int = 1024, name: str = "model",
                 amp_dtype: torch.dtype | None = None, on_batch: BatchCallback | None = None,
                 channels_last: bool = False):
        self.model = model
        self.amp_dtype = amp_dtype
        self.channels_last = channels_last
        self.on_batch = on_batch
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_batch_delay_ms = float(max_batch_delay_ms)
        self.device = torch.device(device)
        self.name = name
        self._queue: queue.PriorityQueue[tuple[int, int, _Request | None]] = queue.PriorityQueue(maxsize=max_queue_size)
        self._order = itertools.count()
        self._lock = threading.Lock()
        self.batch_sizes: Counter[int] = Counter()   # rows per forward pass -> count
        self.requests_served = 0
        self._pending: _Request | None = None
        self._closed = False
        self.restarts = 0   #: times :meth:`restart` brought a dead worker thread back
        self._thread = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the worker thread runs (False after :meth:`close`, or when it died)."""
        return self._thread.is_alive()

    def restart(self) -> bool:
        """Start a new worker thread when the current one died (not after :meth:`close`); the
        queued requests are then served by it. Returns True when a thread was started."""
        with self._lock:
            if self._closed or self._thread.is_alive():
                return False
            self._thread = threading.Thread(target=self._run, name=f"batcher-{self.name}", daemon=True)
            self._thread.start()
            self.restarts += 1
        log.error("%s: the batcher thread had died; restarted (%d restarts)", self.name, self.restarts)
        return True

    def submit(self, inputs: torch.Tensor, priority: int = 0) -> Future:
        """Queue ``inputs`` of shape (n, *item_shape), n >= 1, as one item; the future gets (n, ...).

        ``priority``: lower numbers are served first (0 interactive, larger for background work).
        Raises QueueFullError when the queue is full.
        """
        if inputs.ndim < 1 or inputs.shape[0] < 1:
            raise ValueError("inputs need a leading batch dimension of at least 1")
        future: Future = Future()
        try:
            self._queue.put_nowait((priority, next(self._order), _Request(inputs, future, time.perf_counter())))
        except queue.Full:
            raise QueueFullError(f"{self.name}: request queue is full") from None
        return future

    def __call__(self, inputs: torch.Tensor, timeout: float | None = None, priority: int = 0) -> torch.Tensor:
        """Submit ``inputs`` in chunks of at most ``max_batch_size`` rows and wait for all of them.

        Raises the forward pass's exception, QueueFullError, or ``concurrent.futures.TimeoutError``
        after ``timeout`` seconds in all; then (and on any error) the chunks not yet run are
        cancelled, so the batcher does no work for a caller that has gone.
        """
        futures: list[Future] = []
        deadline = None if timeout is None else time.perf_counter() + timeout
        try:
            for chunk in torch.split(inputs, self.max_batch_size):
                futures.append(self.submit(chunk, priority))
            outputs = [f.result(timeout=None if deadline is None else max(0.0, deadline - time.perf_counter()))
                       for f in futures]
        except Exception:   # FutureTimeout, QueueFullError, the model's error
            for f in futures:
                f.cancel()
            raise
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def mean_batch_size(self) -> float:
        with self._lock:
            passes = sum(self.batch_sizes.values())
            rows = sum(size * count for size, count in self.batch_sizes.items())
        return rows / passes if passes else 0.0

    def close(self, timeout: float = 5.0) -> None:
        """Finish queued requests, then stop the worker thread."""
        self._closed = True
        self._queue.put((_STOP, next(self._order), None))
        self._thread.join(timeout)

    def _next(self, timeout: float | None = None) -> tuple[int, int, _Request | None]:
        """The next queued item that was not cancelled (raises queue.Empty after ``timeout``)."""
        while True:
            item = self._queue.get(timeout=timeout) if timeout is None or timeout > 0 else self._queue.get_nowait()
            if item[2] is None or not item[2].future.cancelled():
                return item

    def _collect(self) -> list[_Request] | None:
        first = self._pending or self._next()[2]
        self._pending = None
        if first is None:
            return None
        batch, rows = [first], first.inputs.shape[0]
        deadline = time.perf_counter() + self.max_batch_delay_ms / 1000.0
        while rows < self.max_batch_size:
            try:
                item = self._next(deadline - time.perf_counter())
            except queue.Empty:
                break
            if item[2] is None:
                self._queue.put(item)  # stop after this batch
                break
            if rows + item[2].inputs.shape[0] > self.max_batch_size:
                self._pending = item[2]   # starts the next batch
                break
            batch.append(item[2])
            rows += item[2].inputs.shape[0]
        return batch

    def _run(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                return
            live = [r for r in batch if r.future.set_running_or_notify_cancel()]
            if not live:
                continue
            sizes = [r.inputs.shape[0] for r in live]
            started = time.perf_counter()
            try:
                outputs = self._forward(torch.cat([r.inputs for r in live]))
                if outputs.shape[0] != sum(sizes):
                    raise RuntimeError(f"model returned {outputs.shape[0]} rows for {sum(sizes)} inputs")
            except Exception as exc:  # noqa: BLE001 - handed to this batch's callers only
                log.exception("%s: batch of %d rows failed", self.name, sum(sizes))
                for r in live:
                    r.future.set_exception(exc)
                continue
            with self._lock:
                self.batch_sizes[sum(sizes)] += 1
                self.requests_served += len(live)
            for r, out in zip(live, torch.split(outputs, sizes)):
                r.future.set_result(out)
            if self.on_batch is not None:
                try:   # a failing metrics callback must not stop the model's worker
                    self.on_batch(self.name, sum(sizes), [started - r.enqueued for r in live],
                                  time.perf_counter() - started)
                except Exception:  # noqa: BLE001 - logged, the answers were already handed over
                    log.exception("%s: the on_batch callback failed", self.name)

    def _forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """One forward pass on the device; halves the batch on CUDA out-of-memory."""
        try:
            if self.device.type == "cuda":
                inputs = inputs.pin_memory().to(self.device, non_blocking=True)
            if self.channels_last and inputs.ndim == 4:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.amp_dtype,
                                                        enabled=self.amp_dtype is not None):
                outputs = self.model(inputs)
            return outputs.detach().float().to("cpu")
        except torch.OutOfMemoryError:
            if inputs.shape[0] == 1:
                raise
            log.warning("%s: out of memory on a batch of %d rows; splitting it", self.name, inputs.shape[0])
            torch.cuda.empty_cache()
            half = inputs.shape[0] // 2
            return torch.cat([self._forward(inputs[:half].cpu()), self._forward(inputs[half:].cpu())])
