"""Inference engine extension: loads every released checkpoint per serving process.

Models are loaded in ``init_app`` (called by ``create_app``), in a background thread
so that ``/api/v1/health`` answers at once and ``/api/v1/ready`` answers 503 until
every model is loaded and warmed up. Never at import time, never in a gunicorn master.
The engine knows checkpoints and batchers only: it reports each forward pass through the
``on_batch`` callback it is given (the app passes :func:`app.metrics.observe_batch`).
"""
from __future__ import annotations

import atexit
import logging
import threading
import time

import torch
from flask import Flask, current_app

from geovision.checkpoint import Checkpoint, find_checkpoints, load_checkpoint, read_meta
from geovision.device import select_device
from geovision.inference import optimise_for_cpu, runtime_settings

from .batcher import BatchCallback, DynamicBatcher, QueueFullError

__all__ = ["InferenceEngine", "ModelNotReady", "QueueFullError", "Checkpoint"]
log = logging.getLogger(__name__)


class ModelNotReady(RuntimeError):
    """The requested model is not loaded (still loading, failed, or not shipped)."""


class EngineState:
    """Per-app engine state: checkpoints, their batchers and the load status."""

    def __init__(self, config: dict, on_batch: BatchCallback | None = None):
        self.on_batch = on_batch
        self.device = select_device(config["DEVICE"])
        self.model_dir = config["MODEL_DIR"]
        self.max_batch_size = config["MAX_BATCH_SIZE"]
        self.max_batch_delay_ms = config["MAX_BATCH_DELAY_MS"]
        self.timeout = config["INFERENCE_TIMEOUT_S"]
        self.max_queue_size = config.get("MAX_QUEUE_SIZE", 1024)
        amp = config.get("MIXED_PRECISION", "off")
        self.amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(amp) if self.device.type == "cuda" else None
        self.backend = str(config.get("INFERENCE_BACKEND", "local")).lower()
        self.config = dict(config)
        self.cpu_bf16 = str(config.get("CPU_BF16", "auto")).lower()
        self.cpu_freeze = bool(int(config.get("CPU_FREEZE", 1)))
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.checkpoints: dict[str, Checkpoint] = {}
        self.batchers: dict[str, DynamicBatcher] = {}
        #: requests a model answered from another model's forward pass (the rocks page's similarity search)
        self.answered_elsewhere: dict[str, int] = {}
        self.status = "loading"
        self.errors: dict[str, str] = {}
        self.ready_event = threading.Event()
        self.load_seconds: float | None = None
        self._loader: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = threading.Event()

    def start_loading(self) -> None:
        """Load the models in a background thread, once (later calls do nothing)."""
        if self._loader is not None:   # the common case (every request): no lock taken
            return
        with self._start_lock:
            if self._loader is not None or self.ready_event.is_set():  # started, or loaded by reload()
                return
            self._loader = threading.Thread(target=self.load_all, name="model-loader", daemon=True)
            self._loader.start()
        # A short-lived process (a CLI command) must not exit while torch is loading:
        # the interpreter would abort ("terminate called without an active exception").
        atexit.register(self._loader.join)

    def wait_loaded(self) -> None:
        """Start the loading if it was deferred and block until every model is loaded or failed."""
        self.start_loading()
        self.ready_event.wait()

    def load_all(self) -> None:
        """Load and warm up every checkpoint; sets ``status`` to ready or failed."""
        started = time.perf_counter()
        if self.backend == "ray":
            self._connect_remote()
        else:
            self._load_local()
        self.load_seconds = time.perf_counter() - started
        self.status = "failed" if self.errors else "ready"
        self.ready_event.set()
        if self.batchers and self.backend == "local":
            threading.Thread(target=self._supervise, name="batcher-supervisor", daemon=True).start()

    def dead_batchers(self) -> list[str]:
        """Tasks whose local batcher thread is not running (``/ready`` answers 503 for them)."""
        return [t for t, b in self.batchers.items() if not getattr(b, "alive", True)]

    def supervise_once(self) -> list[str]:
        """Restart every dead batcher thread; returns the tasks restarted."""
        return [t for t in self.dead_batchers() if self.batchers[t].restart()]

    def _supervise(self) -> None:
        """Every ``BATCHER_WATCH_S`` seconds (default 2) until :meth:`close`: :meth:`supervise_once`."""
        every = float(self.config.get("BATCHER_WATCH_S", 2.0))
        while not self._closed.wait(every):
            self.supervise_once()

    def _load_local(self) -> None:
        """The local backend: each checkpoint loaded here, with its dynamic batcher, warmed up."""
        for task, folder in find_checkpoints(self.model_dir).items():
            try:
                ckpt = load_checkpoint(folder, self.device)
                runtime = self.runtime_for(ckpt)
                ckpt.extra["runtime"] = runtime
                module = optimise_for_cpu(ckpt.module, task) if runtime["frozen"] else ckpt.module
                batcher = DynamicBatcher(module, self.max_batch_size, self.max_batch_delay_ms,
                                         self.device, self.max_queue_size, name=task,
                                         amp_dtype=runtime["amp_dtype"], channels_last=runtime["channels_last"],
                                         on_batch=self.on_batch)
                shape = ckpt.meta["input_shape"]
                for n in sorted({1, self.max_batch_size}):  # warm-up: first call and a full batch
                    batcher(torch.zeros(n, *shape), timeout=self.timeout)
                batcher.batch_sizes.clear()
                batcher.requests_served = 0
                self.checkpoints[task], self.batchers[task] = ckpt, batcher
                log.info("loaded %s (%s %s) on %s", task, ckpt.name, ckpt.version, self.device)
            except Exception as exc:  # noqa: BLE001 - reported by /api/v1/ready
                log.exception("could not load model %s from %s", task, folder)
                self.errors[task] = f"{type(exc).__name__}: {exc}"

    def _connect_remote(self) -> None:
        """``INFERENCE_BACKEND=ray``: read each checkpoint's meta.json here and reach its Serve
        application (deployed by ``flask serve deploy``); warm each up with one row."""
        from . import ray_backend

        try:
            ray_backend.connect(self.config.get("RAY_ADDRESS"))
        except Exception as exc:  # noqa: BLE001 - reported by /api/v1/ready
            log.exception("could not reach the Ray cluster")
            self.errors["*"] = f"Ray cluster: {type(exc).__name__}: {exc}"
            return
        for task, folder in find_checkpoints(self.model_dir).items():
            try:
                meta = read_meta(folder)
                remote = ray_backend.RemoteModel(task, self.max_batch_size, self.max_batch_delay_ms)
                remote(torch.zeros(1, *meta["input_shape"]), timeout=self.timeout)
                self.checkpoints[task] = Checkpoint(task=meta.get("task", task), module=None, meta=meta,
                                                    device=self.device, path=folder, extra={"backend": "ray"})
                self.batchers[task] = remote
            except Exception as exc:  # noqa: BLE001 - reported by /api/v1/ready
                log.exception("could not reach the Serve application of %s", task)
                self.errors[task] = f"{type(exc).__name__}: {exc}"

    def runtime_for(self, ckpt: Checkpoint) -> dict:
        """The forward-pass settings of one checkpoint on this device (``CPU_BF16``, ``CPU_FREEZE``,
        ``MIXED_PRECISION``): :func:`geovision.inference.runtime_settings`."""
        return runtime_settings(ckpt.meta, self.device, self.cpu_bf16, self.cpu_freeze, self.amp_dtype)

    def close(self) -> None:
        self._closed.set()
        for batcher in self.batchers.values():
            batcher.close()


class InferenceEngine:
    """Flask extension giving views access to the loaded models of the current app."""

    def init_app(self, app: Flask, wait: bool = False, on_batch: BatchCallback | None = None,
                 lazy: bool = False) -> None:
        """Start loading the models of ``app.config['MODEL_DIR']``; block when ``wait``.

        ``lazy`` (a CLI process: ``flask db upgrade`` needs no model) defers the loading to the
        first :meth:`EngineState.wait_loaded` or :attr:`state` access.
        ``on_batch(model, rows, queue_waits_s, seconds)`` is called after every forward pass."""
        if app.config.get("TORCH_THREADS"):
            torch.set_num_threads(app.config["TORCH_THREADS"])
        state = EngineState(app.config, on_batch)
        app.extensions["engine"] = state
        if wait:
            state.wait_loaded()
        elif not lazy:
            state.start_loading()

    def reload(self, app: Flask) -> EngineState:
        """Load every checkpoint again (blocking), then swap it in and close the old batchers."""
        new = EngineState(app.config, app.extensions["engine"].on_batch)
        new.load_all()
        old, app.extensions["engine"] = app.extensions["engine"], new
        old.close()
        return new

    @property
    def state(self) -> EngineState:
        """The current app's engine state; starts a deferred (``lazy``) loading."""
        state = current_app.extensions["engine"]
        state.start_loading()
        return state

    def checkpoint(self, task: str) -> Checkpoint:
        """The loaded checkpoint of ``task``; raises ModelNotReady if there is none."""
        state = self.state
        if task not in state.checkpoints:
            if state.status == "loading":
                raise ModelNotReady(f"the {task} model is still loading")
            raise ModelNotReady(state.errors.get(task, f"no {task} model is installed"))
        return state.checkpoints[task]

    def predict(self, task: str, inputs: torch.Tensor, priority: int = 0) -> torch.Tensor:
        """Run ``inputs`` (n, *input_shape) through the task's batcher; returns (n, ...) on CPU.

        ``priority``: 0 for interactive requests; larger numbers (background work) wait behind them.

        Raises:
            ModelNotReady: model not loaded; QueueFullError: queue full;
            concurrent.futures.TimeoutError: no answer within INFERENCE_TIMEOUT_S.
        """
        self.checkpoint(task)
        state = self.state
        if not getattr(state.batchers[task], "alive", True):   # its thread died: the supervisor restarts it
            raise ModelNotReady(f"the {task} model's worker thread stopped; it is being restarted")
        return state.batchers[task](inputs, timeout=state.timeout, priority=priority)

    def count_answer(self, task: str, n: int = 1) -> None:
        """Count ``n`` requests of ``task`` answered from another model's forward pass (its batcher
        never saw them) in ``requests_served``."""
        counts = self.state.answered_elsewhere
        counts[task] = counts.get(task, 0) + n

    def describe(self) -> list[dict]:
        """Public description of each loaded model (for ``/api/v1/models`` and ``/models``)."""
        state = self.state
        out = []
        for task, ckpt in state.checkpoints.items():
            batcher = state.batchers[task]
            out.append({
                "task": task, "name": ckpt.name, "version": ckpt.version, "device": str(state.device),
                "max_batch_size": batcher.max_batch_size, "max_batch_delay_ms": batcher.max_batch_delay_ms,
                "precision": str(batcher.amp_dtype or torch.float32).removeprefix("torch."),
                "backend": state.backend,
                "metrics": ckpt.meta.get("metrics", {}),
                "requests_served": batcher.requests_served + state.answered_elsewhere.get(task, 0),
                "mean_batch_size": round(batcher.mean_batch_size, 2),
            })
        return out
