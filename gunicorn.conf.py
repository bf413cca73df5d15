"""gunicorn settings: one worker process per GPU, threads for concurrent requests.

Models are loaded in the worker (``wsgi:app`` is imported after fork; no ``preload_app``),
because CUDA does not survive ``fork``.
"""
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "32"))
preload_app = False
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# No shared control socket in ~/.gunicorn: several instances (tests, blue/green) may run at once.
control_socket_disable = True
