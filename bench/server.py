"""Start the real server (``flask db upgrade`` then gunicorn with gunicorn.conf.py, as ``make run``); used by tests and benchmarks."""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent  # the repository root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A gunicorn server on a free loopback port with its own database and folders."""

    def __init__(self, workdir: Path, model_dir: Path, graceful_timeout: int = 30, gallery_data: Path | None = None,
                 whales_data: Path | None = None, env: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = self.workdir / "live.db"
        bin_dir = Path(sys.executable).parent
        self.env = {**os.environ, "APP_CONFIG": "production", "SECRET_KEY": secrets.token_hex(16), "AUTH_REQUIRED": "0",
                    "DATABASE_URL": f"sqlite:///{self.db_path}", "MODEL_DIR": str(model_dir),
                    "UPLOAD_FOLDER": str(self.workdir / "uploads"), "GALLERY_FOLDER": str(self.workdir / "gallery"),
                    "INSTANCE_PATH": str(self.workdir / "instance"),
                    "PORT": str(self.port), "GUNICORN_GRACEFUL_TIMEOUT": str(graceful_timeout),
                    "FLASK_APP": "wsgi", "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", **(env or {})}
        self.flask = [str(bin_dir / "flask")]
        self.cli("db", "upgrade")
        if gallery_data is not None:
            self.cli("gallery", "build", "similarity", "--data", str(gallery_data))
        if whales_data is not None:
            self.cli("gallery", "build", "whales", "--data", str(whales_data))
        self.log = open(self.workdir / "gunicorn.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                                     cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def cli(self, *args: str) -> None:
        """Run ``flask <args>`` with the server's environment; a failure raises with the command's stderr."""
        done = subprocess.run([*self.flask, *args], cwd=ROOT, env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"flask {' '.join(args)} exited {done.returncode}: {done.stderr[-3000:]}")

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {(self.workdir / 'gunicorn.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/api/v1/ready", timeout=5).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.3)
        raise TimeoutError("server not ready")

    def rows(self, task: str | None = None) -> list[tuple]:
        """(task, filename, input_sha256) of the recorded answers, in the server's database
        (``DATABASE_URL``: its SQLite file, or the PostgreSQL given in ``env``)."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.env["DATABASE_URL"])
        try:
            with engine.connect() as con:
                sql = "SELECT task, filename, input_sha256 FROM prediction" + (" WHERE task = :task" if task else "")
                return [tuple(r) for r in con.execute(sa.text(sql), {"task": task} if task else {})]
        finally:
            engine.dispose()

    def stop(self, timeout: float = 60) -> float:
        """SIGTERM the master; returns the seconds it took to exit."""
        started = time.time()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return time.time() - started
