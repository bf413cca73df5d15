"""Configuration classes, read from environment variables with fallbacks."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SECRET_KEY = "dev-only-change-me"
#: Keys refused in production (the default and well-known placeholders).
WEAK_SECRET_KEYS = {DEFAULT_SECRET_KEY, "changeme", "change-me", "secret", "dev", "development", ""}


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


class Config:
    """Defaults for every environment; each value can be set by the variable of the same name."""

    SECRET_KEY = os.environ.get("SECRET_KEY", DEFAULT_SECRET_KEY)
    #: SQLAlchemy URL; ``None`` means SQLite ``app.db`` in the instance folder.
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL")
    #: PostgreSQL connection pool per serving process (threads share it).
    DB_POOL_SIZE = _env_int("DB_POOL_SIZE", 10)
    DB_MAX_OVERFLOW = _env_int("DB_MAX_OVERFLOW", 20)
    #: Folder with one sub-folder per task holding ``model.pt`` + ``meta.json``.
    MODEL_DIR = os.environ.get("MODEL_DIR", str(ROOT / "models"))
    #: ``auto`` (cuda when available, else cpu), ``cpu``, ``cuda`` or ``cuda:N``.
    DEVICE = os.environ.get("DEVICE", "auto")
    #: ``local`` (the in-process dynamic batchers) or ``ray`` (Ray Serve deployments at RAY_ADDRESS,
    #: deployed by ``flask serve deploy``; this process keeps the pre/post-processing).
    INFERENCE_BACKEND = os.environ.get("INFERENCE_BACKEND", "local")
    RAY_ADDRESS = os.environ.get("RAY_ADDRESS")
    #: Per Serve replica: CPUs, GPUs; replicas between min and max (Serve's autoscaling).
    RAY_NUM_CPUS = float(os.environ.get("RAY_NUM_CPUS", 1))
    RAY_NUM_GPUS = float(os.environ.get("RAY_NUM_GPUS", 0))
    RAY_MIN_REPLICAS = _env_int("RAY_MIN_REPLICAS", 1)
    RAY_MAX_REPLICAS = _env_int("RAY_MAX_REPLICAS", 1)
    #: Dynamic batching knobs (names as in Triton / TorchServe).
    MAX_BATCH_SIZE = _env_int("MAX_BATCH_SIZE", 32)
    MAX_BATCH_DELAY_MS = _env_int("MAX_BATCH_DELAY_MS", 10)
    #: Requests waiting per model before the API answers 503 with Retry-After.
    MAX_QUEUE_SIZE = _env_int("MAX_QUEUE_SIZE", 256)
    #: CUDA only: ``off``, ``fp16`` or ``bf16`` autocast for the forward pass.
    MIXED_PRECISION = os.environ.get("MIXED_PRECISION", "off")
    #: CPU: ``auto`` = bfloat16 autocast + channels-last for checkpoints validated in bfloat16
    #: (``meta.json`` ``runtime.cpu_bf16``) on CPUs with native bfloat16; ``off``; ``on`` = every model.
    CPU_BF16 = os.environ.get("CPU_BF16", "auto")
    #: CPU: ``torch.jit.freeze`` + ``optimize_for_inference`` for float32 models (1) or not (0).
    CPU_FREEZE = _env_int("CPU_FREEZE", 1)
    #: Seconds a request waits for its batch before failing with 503.
    INFERENCE_TIMEOUT_S = _env_int("INFERENCE_TIMEOUT_S", 60)
    #: Largest request body in bytes (HTTP 413 above it).
    MAX_CONTENT_LENGTH = _env_int("MAX_CONTENT_LENGTH", 32 * 1024 * 1024)
    #: An upload refused with 413 is read and dropped up to this many bytes before the answer, so
    #: that clients which send the whole body first (requests, urllib) can read it; larger: closed.
    MAX_DRAIN_BYTES = _env_int("MAX_DRAIN_BYTES", 256 * 1024 * 1024)
    #: Inputs of more model rows than this (salt: 101x101 tiles) run as background jobs.
    SYNC_MAX_TILES = _env_int("SYNC_MAX_TILES", 100)   # about 0.25 Mpx at the 50 px overlap
    #: Jobs run at a time per serving process; active (queued or running) jobs per client and in all.
    JOB_CONCURRENCY = _env_int("JOB_CONCURRENCY", 1)
    #: A running job's worker renews its lease (``job.heartbeat_at``) every JOB_HEARTBEAT_S seconds;
    #: any front end takes back a job whose lease is older than JOB_LEASE_S (its worker is gone).
    JOB_HEARTBEAT_S = float(os.environ.get("JOB_HEARTBEAT_S", "10"))
    JOB_LEASE_S = float(os.environ.get("JOB_LEASE_S", "60"))
    JOB_MAX_PER_CLIENT = _env_int("JOB_MAX_PER_CLIENT", 2)   # per account; per address for anonymous
    #: Reverse proxies in front of the app whose X-Forwarded-For/-Proto/-Host are believed
    #: (werkzeug's ProxyFix); 0: none, the socket's peer is the client.
    TRUSTED_PROXIES = _env_int("TRUSTED_PROXIES", 0)
    #: Sign-in attempts (POST /login) per address (Flask-Limiter's syntax), then 429 with Retry-After;
    #: counted in RATELIMIT_STORAGE_URI (memory:// counts per process; redis://... for several).
    LOGIN_RATE_LIMIT = os.environ.get("LOGIN_RATE_LIMIT", "10 per minute")
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    JOB_MAX_ACTIVE = _env_int("JOB_MAX_ACTIVE", 8)
    #: Rows a job hands the batcher at a time: the longest an interactive request waits behind it.
    JOB_CHUNK_ROWS = _env_int("JOB_CHUNK_ROWS", 8)
    #: Largest SEG-Y upload in bytes (streamed to disk; the salt form and API only).
    SEGY_MAX_BYTES = _env_int("SEGY_MAX_BYTES", 2 * 1024 ** 3)
    # A volume job (slice=volume): at most this many samples (inlines x crosslines x samples), and
    # this many lines computed at once (the batcher or Ray's replicas get their tiles together).
    VOLUME_MAX_SAMPLES = _env_int("VOLUME_MAX_SAMPLES", 500_000_000)
    VOLUME_LINES_IN_FLIGHT = _env_int("VOLUME_LINES_IN_FLIGHT", 2)
    #: Largest decoded image in pixels (decompression-bomb guard, HTTP 413 above it).
    MAX_IMAGE_PIXELS = _env_int("MAX_IMAGE_PIXELS", 25_000_000)
    #: Where inputs and result pictures are kept (outside ``static/``); ``None`` = instance/uploads.
    UPLOAD_FOLDER = os.environ.get("UPLOAD_FOLDER")
    #: Torch CPU threads for inference in a serving process (0 = PyTorch default).
    TORCH_THREADS = _env_int("TORCH_THREADS", 0)
    #: An API key's last use is written at most this often (seconds): not one database write per request.
    KEY_LAST_USED_EVERY_S = float(os.environ.get("KEY_LAST_USED_EVERY_S", "60"))
    #: Seconds between checks that every model's batcher thread runs (a dead one is restarted).
    BATCHER_WATCH_S = float(os.environ.get("BATCHER_WATCH_S", "2"))
    #: Days a prediction's stored files are kept (0 = forever); pruned at start-up and by `flask prune-uploads`.
    UPLOAD_RETENTION_DAYS = _env_int("UPLOAD_RETENTION_DAYS", 30)
    #: Accounts (app.accounts): with AUTH_REQUIRED every page and API call needs a signed-in user
    #: or an API key (``Authorization: Bearer``), and users see only their own data; off, requests
    #: act as the ``anonymous`` account and the pages say so. On in production, off in the demo.
    AUTH_REQUIRED = os.environ.get("AUTH_REQUIRED", "1") == "1"
    #: ``/metrics`` for Prometheus: with a token, ``Authorization: Bearer METRICS_TOKEN`` (or an admin)
    #: is needed; without one it is open when AUTH_REQUIRED is off and admins-only when it is on.
    METRICS_TOKEN = os.environ.get("METRICS_TOKEN") or None
    #: A bootstrap admin API key for the admin API (an admin account's key does the same); unset: none.
    ADMIN_TOKEN = os.environ.get("ADMIN_TOKEN") or None
    #: Where galleries live; ``None`` = instance/gallery.
    GALLERY_FOLDER = os.environ.get("GALLERY_FOLDER")
    #: Shared store of uploads, results and galleries for several front ends (fsspec URL, e.g.
    #: s3://bucket/prefix); None = the local folders above are the store. See app/storage.py.
    STORAGE_URL = os.environ.get("STORAGE_URL") or None
    #: JSON object of the store's filesystem arguments, e.g. {"endpoint_url": "http://minio:9000"}.
    STORAGE_OPTIONS = os.environ.get("STORAGE_OPTIONS") or "{}"
    #: Seconds between checks of the shared store for a new gallery version.
    GALLERY_POLL_S = float(os.environ.get("GALLERY_POLL_S", "5"))
    #: Seconds between looks for queued jobs of any front end (0 = only the jobs this process queued).
    JOB_POLL_S = float(os.environ.get("JOB_POLL_S", "5"))
    # Task-specific keys (WHALES_DUPLICATE_DISTANCE, ...) are the handlers' ``config_defaults``.
    HISTORY_PER_PAGE = 25
    WTF_CSRF_TIME_LIMIT = None


class DevelopmentConfig(Config):
    """The ``make run`` demo: served by gunicorn like production, so Flask's debugger stays off
    (``DEBUG`` would also re-raise errors past the JSON/HTML error handlers); no sign-in unless
    ``AUTH_REQUIRED=1`` (the pages say that everything is visible to everyone)."""

    AUTH_REQUIRED = os.environ.get("AUTH_REQUIRED", "0") == "1"


class TestingConfig(Config):
    TESTING = True
    AUTH_REQUIRED = False   # tests of accounts switch it on
    WTF_CSRF_ENABLED = False
    SQLALCHEMY_DATABASE_URI = "sqlite://"
    MAX_BATCH_DELAY_MS = 5
    JOB_POLL_S = 0.0      # tests call JobRunner.claim_queued themselves


class ProductionConfig(Config):
    DEBUG = False
    SESSION_COOKIE_SECURE = os.environ.get("SESSION_COOKIE_SECURE", "0") == "1"


CONFIGS = {"development": DevelopmentConfig, "testing": TestingConfig, "production": ProductionConfig}


def config_from_env() -> type[Config]:
    """The config class named by ``APP_CONFIG`` (default ``production``)."""
    return CONFIGS[os.environ.get("APP_CONFIG", "production")]
