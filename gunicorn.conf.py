"""gunicorn settings: one worker process per GPU, threads for concurrent requests.

Models are loaded in the worker (``wsgi:app`` is imported after fork; no ``preload_app``),
because CUDA does not survive ``fork``.
"""
import os

from gunicorn.workers.gthread import ThreadWorker


class ClosingThreadWorker(ThreadWorker):
    """gunicorn's threaded worker that, on SIGTERM, closes its listening sockets at once (a new
    connection is refused instead of waiting in the kernel's backlog until the worker exits, then
    reset) and stops the running background jobs after their current chunk (queued again, they
    run on the next start), so shutdown does not wait the whole graceful timeout for a job.
    In-flight requests still finish within ``graceful_timeout``."""

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        self.method_queue.defer(self._stop_accepting)   # in the worker's loop, not the signal handler

    def _stop_accepting(self):
        self.set_accept_enabled(False)
        for listener in self.sockets:
            listener.close()
        jobs = getattr(self.wsgi, "extensions", {}).get("jobs")
        if jobs is not None:
            jobs.stop()


bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = ClosingThreadWorker   # gthread, closing its listeners on SIGTERM
threads = int(os.environ.get("GUNICORN_THREADS", "32"))
preload_app = False
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# No shared control socket in ~/.gunicorn: several instances (tests, blue/green) may run at once.
control_socket_disable = True
