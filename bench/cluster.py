"""A Ray head started with the ``ray`` command line, the checkpoints deployed to it with
``flask serve deploy``: the shape of a real cluster (separate processes), for the two-front-end
load test and the scaling benchmark.

Token authentication (on by default for new Ray clusters) is kept: the head and every client get
the same random ``RAY_AUTH_TOKEN``. Source: https://docs.ray.io/en/latest/ray-security/token-auth.html
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from bench.server import ROOT, free_port

BIN = Path(sys.executable).parent


class RayHead:
    """``ray start --head`` on a free port with ``num_cpus``; :attr:`env` is what a client needs
    (``RAY_ADDRESS``, ``RAY_AUTH_MODE``, ``RAY_AUTH_TOKEN``)."""

    def __init__(self, num_cpus: int = 2):
        self.port = free_port()
        self.env = {"RAY_ADDRESS": f"127.0.0.1:{self.port}", "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        environ = {**os.environ, **self.env, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
        environ.pop("RAY_ADDRESS")
        subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={self.port}", f"--num-cpus={num_cpus}",
                        "--include-dashboard=false", "--disable-usage-stats"],
                       env=environ, check=True, capture_output=True, timeout=180)

    def deploy(self, model_dir: Path, workdir: Path, **config: str) -> str:
        """``flask serve deploy`` of every checkpoint of ``model_dir`` (``config``: RAY_NUM_CPUS,
        RAY_MIN_REPLICAS, MAX_BATCH_SIZE, ...); returns its output."""
        env = {**os.environ, **self.env, "APP_CONFIG": "production", "SECRET_KEY": secrets.token_hex(16),
               "FLASK_APP": "wsgi", "MODEL_DIR": str(model_dir), "INSTANCE_PATH": str(Path(workdir) / "deploy"),
               "DATABASE_URL": f"sqlite:///{Path(workdir) / 'deploy.db'}", "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
               **config}
        done = subprocess.run([str(BIN / "flask"), "serve", "deploy"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
        if done.returncode:
            raise RuntimeError(f"flask serve deploy failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        return done.stdout

    def stop(self) -> None:
        """``ray stop`` (every Ray process of this machine: use one head at a time)."""
        subprocess.run([str(BIN / "ray"), "stop", "--force"], capture_output=True, timeout=120,
                       env={**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"})


def ray_available() -> bool:
    """Whether the ``ray`` command line of this environment is installed."""
    return (BIN / "ray").exists() or shutil.which("ray") is not None
