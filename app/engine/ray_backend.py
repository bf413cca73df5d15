"""Ray Serve as the inference backend (``INFERENCE_BACKEND=ray``).

Each task's checkpoint is a Serve application ``geovision-<task>``: a deployment whose replicas
load the TorchScript model once and batch calls with the local backend's
:class:`~app.engine.batcher.DynamicBatcher` (``MAX_BATCH_SIZE`` rows, ``MAX_BATCH_DELAY_MS``),
with ``max_ongoing_requests`` large enough for batches to fill and for every call to reach the
replica at once, ``num_gpus`` and autoscaling from the config. Ray Serve has no request priority
(its router and ``@serve.batch`` serve in arrival order), so each call carries its ``priority``
(0 interactive, larger for job chunks) and the replica's batcher orders by it, as the local
backend does: a long job does not delay interactive requests on the scaled-out shape either.
``flask serve deploy`` (:func:`deploy`) puts them on the cluster at
``RAY_ADDRESS``. The Flask front ends stay stateless clients: pre- and post-processing run in
their task handlers, and :class:`RemoteModel` sends the model rows through a
``DeploymentHandle`` (Serve's documented in-cluster path: no HTTP hop, no JSON encoding of
tensors, and Serve routes to the least busy replica). ``ray.init`` runs in each serving process
after gunicorn's fork (the engine loads in the worker), never in the master.
Source: https://docs.ray.io/en/latest/serve/advanced-guides/dyn-req-batch.html
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import numpy as np
import torch

from geovision.checkpoint import find_checkpoints, load_checkpoint
from geovision.inference import optimise_for_cpu, runtime_settings

from .batcher import DynamicBatcher, QueueFullError

log = logging.getLogger(__name__)
APP_PREFIX = "geovision-"
ROOT = Path(__file__).resolve().parents[2]


def connect(address: str | None, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address`` (``RAY_ADDRESS``; ``local`` starts one in this process,
    with ``num_cpus``). The replicas import this project's packages, installed in the same Python
    environment (``pip install -e .[ray]``; on a remote cluster the workers' image installs them too)."""
    import ray

    if not ray.is_initialized():
        local = (address or "local") == "local"
        ray.init(address=address or "local", num_cpus=num_cpus if local else None,
                 _node_ip_address="127.0.0.1" if local else None,   # a local instance stays on loopback
                 ignore_reinit_error=True, include_dashboard=False, logging_level=logging.WARNING)


def model_deployment(folder: Path, config: dict):
    """The bound Serve application of one checkpoint folder."""
    from ray import serve

    max_batch_size = int(config["MAX_BATCH_SIZE"])

    @serve.deployment(name="model", max_ongoing_requests=max(8 * max_batch_size, 64),
                      ray_actor_options={"num_cpus": float(config.get("RAY_NUM_CPUS", 1)),
                                         "num_gpus": float(config.get("RAY_NUM_GPUS", 0))},
                      autoscaling_config={"min_replicas": int(config.get("RAY_MIN_REPLICAS", 1)),
                                          "max_replicas": int(config.get("RAY_MAX_REPLICAS", 1)),
                                          "target_ongoing_requests": max_batch_size})
    class Model:
        def __init__(self, folder: str, device: str):
            if config.get("TORCH_THREADS"):
                torch.set_num_threads(int(config["TORCH_THREADS"]))
            self.ckpt = load_checkpoint(folder, torch.device(device))
            # the local engine's settings (bfloat16 + channels-last, or frozen float32 on CPU)
            runtime = runtime_settings(self.ckpt.meta, self.ckpt.device, str(config.get("CPU_BF16", "auto")).lower(),
                                       str(config.get("CPU_FREEZE", "1")) != "0")
            module = optimise_for_cpu(self.ckpt.module, self.ckpt.task) if runtime["frozen"] else self.ckpt.module
            # the local backend's batcher: Serve's router and @serve.batch are first come, first
            # served, so the priority order (interactive before job chunks) is kept here
            self.batcher = DynamicBatcher(module, max_batch_size, float(config["MAX_BATCH_DELAY_MS"]),
                                          self.ckpt.device, name=self.ckpt.task, amp_dtype=runtime["amp_dtype"],
                                          channels_last=runtime["channels_last"])
            self.priorities: Counter[int] = Counter()

        async def __call__(self, rows: np.ndarray, priority: int = 0) -> np.ndarray:
            """Rows (n <= MAX_BATCH_SIZE, ...) -> outputs (n, ...), batched with the other calls
            on this replica, lower ``priority`` numbers first. A cancelled call (the caller's
            timeout) cancels its queued rows."""
            self.priorities[priority] += 1
            future = self.batcher.submit(torch.tensor(rows), priority)   # a copy: Ray's arrays are read-only
            return (await asyncio.wrap_future(future)).float().numpy()

        def stats(self) -> dict:
            """Rows per forward pass and calls per priority of this replica (for tests and /models)."""
            sizes = self.batcher.batch_sizes
            return {"batches": sum(sizes.values()), "max_batch": max(sizes, default=0),
                    "priorities": dict(self.priorities)}

    device = "cuda" if float(config.get("RAY_NUM_GPUS", 0)) > 0 else "cpu"
    return Model.bind(str(folder), device)


def app_builder(args: dict):
    """Serve application builder for a Serve config file or a KubeRay ``RayService``
    (``import_path: app.engine.ray_backend:app_builder``, ``args: {task, model_dir, ...}``): the
    same application :func:`deploy` runs, its settings (``MAX_BATCH_SIZE``, ``RAY_NUM_GPUS``, ...)
    from ``args`` with this project's defaults."""
    config = {"MAX_BATCH_SIZE": 32, "MAX_BATCH_DELAY_MS": 10, **{k.upper(): v for k, v in args.items()}}
    return model_deployment(Path(config["MODEL_DIR"]) / config["TASK"], config)


def deploy(config: dict) -> list[str]:
    """Deploy every checkpoint of ``MODEL_DIR`` as a Serve application; returns the task names."""
    from ray import serve

    connect(config.get("RAY_ADDRESS"))
    serve.start(http_options={"host": "127.0.0.1", "port": int(config.get("RAY_SERVE_PORT", 8001))})
    tasks = []
    for task, folder in find_checkpoints(config["MODEL_DIR"]).items():
        serve.run(model_deployment(folder, config), name=APP_PREFIX + task, route_prefix=None)  # returns once ready
        tasks.append(task)
        log.info("deployed %s from %s", task, folder)
    return tasks


class RemoteModel:
    """The engine's view of a Serve application: called like a :class:`DynamicBatcher`."""

    def __init__(self, task: str, max_batch_size: int, max_batch_delay_ms: float):
        from ray import serve

        self.name, self.max_batch_size, self.max_batch_delay_ms = task, max_batch_size, max_batch_delay_ms
        self.handle = serve.get_app_handle(APP_PREFIX + task)
        self.requests_served, self.mean_batch_size, self.queue_depth, self.amp_dtype = 0, 0.0, 0, None
        self.batch_sizes: dict[int, int] = {}

    def __call__(self, inputs: torch.Tensor, timeout: float | None = None, priority: int = 0) -> torch.Tensor:
        """Rows (n, ...) -> outputs (n, ...), in calls of at most ``max_batch_size`` rows.

        Raises ``concurrent.futures.TimeoutError`` when Serve does not answer in time, and
        QueueFullError when a replica fails under the call (it is being replaced): both are
        answered 503 with ``Retry-After``.
        """
        from ray.exceptions import GetTimeoutError, RayError
        from ray.serve.exceptions import RayServeException

        calls = [self.handle.remote(chunk.numpy(), priority)
                 for chunk in torch.split(inputs.float(), self.max_batch_size)]
        try:
            outputs = [np.asarray(call.result(timeout_s=timeout)) for call in calls]
        except (GetTimeoutError, TimeoutError) as exc:
            self._cancel(calls)
            raise FutureTimeout(f"{self.name}: Ray Serve did not answer ({exc})") from None
        except (RayError, RayServeException) as exc:
            self._cancel(calls)
            log.warning("%s: Serve call failed (%s)", self.name, type(exc).__name__)
            raise QueueFullError(f"{self.name}: a model replica failed and is being replaced; retry shortly") from None
        self.requests_served += 1
        return torch.from_numpy(np.concatenate(outputs))

    @staticmethod
    def _cancel(calls) -> None:
        for call in calls:
            call.cancel()

    def stats(self) -> dict:
        return self.handle.stats.remote().result(timeout_s=10)

    def close(self) -> None:
        """Nothing to stop here: the deployment lives on the cluster."""
