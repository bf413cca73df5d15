"""Flask application factory."""
from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import click
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import accounts, metrics, security, tasks
from .config import CONFIGS, DEFAULT_SECRET_KEY, ROOT, WEAK_SECRET_KEYS, Config, config_from_env
from .tasks import TaskHandler


def create_app(config: type[Config] | dict | None = None, wait_for_models: bool = False,
               task_handlers: list[TaskHandler] | None = None) -> Flask:
    """Build the app: config, extensions, tasks, blueprints, error handlers, CLI commands.

    Args:
        config: a config class, or a dict of overrides on top of the environment's class (or of
            the class it names as ``APP_CONFIG``: the tests' ``testing``, without the job poller
            threads); a dict (or the environment) may name the instance folder as ``INSTANCE_PATH``
            (default: ``instance/`` of the checkout).
        wait_for_models: block until every model is loaded (tests); otherwise the models load
            in a background thread and ``/api/v1/ready`` says when; under the ``flask`` CLI they
            load when a command first needs them (``flask db upgrade`` loads none).
        task_handlers: the served tasks (default :func:`default_tasks`).
    Without ``SECRET_KEY`` in the environment a random key is generated once and
    kept in the instance folder.
    Raises:
        RuntimeError: outside testing/debug, when SECRET_KEY is a default or weak value.
    """
    instance_path = (config.get("INSTANCE_PATH") if isinstance(config, dict) else None) or os.environ.get("INSTANCE_PATH")
    app = Flask(__name__, instance_relative_config=True, template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "static"), instance_path=instance_path)
    if isinstance(config, dict):
        app.config.from_object(CONFIGS[config["APP_CONFIG"]] if "APP_CONFIG" in config else config_from_env())
        app.config.update(config)
    else:
        app.config.from_object(config or config_from_env())
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{Path(app.instance_path) / 'app.db'}"
    configure_database(app)
    check_secret_key(app)
    if app.config.get("TRUSTED_PROXIES"):
        hops = int(app.config["TRUSTED_PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    tasks.init_app(app, task_handlers if task_handlers is not None else default_tasks())
    register_extensions(app, wait_for_models)   # after tasks: their request limits precede CSRF
    accounts.init_app(app)
    register_blueprints(app)
    security.init_app(app)
    metrics.init_app(app)
    register_commands(app)
    return app


def default_tasks() -> list[TaskHandler]:
    """The handlers of the served models, in menu order: registering a task is one line here."""
    from .rocks.handler import handler as rocks
    from .salt.handler import handler as salt
    from .similarity.handler import handler as similarity
    from .whales.handler import handler as whales

    return [salt, rocks, similarity, whales]


def configure_database(app: Flask) -> None:
    """PostgreSQL URLs (``postgres://``, ``postgresql://``) go through psycopg 3, with a pool that
    checks connections before use (``pool_pre_ping``) and ``DB_POOL_SIZE`` / ``DB_MAX_OVERFLOW``."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix):]
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    if url.startswith("postgresql"):
        app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {
            "pool_pre_ping": True, "pool_size": int(app.config.get("DB_POOL_SIZE", 10)),
            "max_overflow": int(app.config.get("DB_MAX_OVERFLOW", 20))})


def check_secret_key(app: Flask) -> None:
    """Use a generated key when none is set; refuse to serve with a default or weak one."""
    key = app.config.get("SECRET_KEY") or ""
    if app.testing or app.debug:
        return
    if key == DEFAULT_SECRET_KEY and "SECRET_KEY" not in os.environ:
        app.config["SECRET_KEY"] = _instance_secret_key(Path(app.instance_path))
    elif key in WEAK_SECRET_KEYS or len(key) < 16:
        raise RuntimeError("refusing to start: SECRET_KEY is a default or weak value (use 16+ random characters)")


def _instance_secret_key(instance: Path) -> str:
    """A random key kept in ``instance/secret_key`` (0600), so no default key is ever served."""
    path = instance / "secret_key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
        logging.getLogger(__name__).warning("SECRET_KEY not set: generated one in %s", path)
    return path.read_text().strip()


def register_extensions(app: Flask, wait_for_models: bool) -> None:
    from . import gallery, jobrunner, storage
    from .extensions import csrf, db, engine, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    csrf.init_app(app)
    # The flask CLI creates the app inside a click context: its commands load the models on demand.
    lazy = click.get_current_context(silent=True) is not None
    engine.init_app(app, wait=wait_for_models, on_batch=metrics.observe_batch, lazy=lazy)
    storage.init_app(app)
    gallery.init_app(app)
    jobrunner.init_app(app)


def register_blueprints(app: Flask) -> None:
    from . import admin, api, errors, main, openapi, task_pages, v2
    from .extensions import csrf

    app.register_blueprint(errors.bp)
    app.register_blueprint(main.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(v2.bp)
    app.register_blueprint(openapi.bp)
    csrf.exempt(v2.bp)   # the Open Inference Protocol: programs, no cookies
    app.register_blueprint(admin.bp)
    app.register_blueprint(task_pages.bp)   # the generic page of tasks without pages of their own
    csrf.exempt(api.bp)  # the JSON API is for programs, not browser forms
    csrf.exempt(admin.bp)  # token-authenticated, no cookies


def register_commands(app: Flask) -> None:
    from . import commands, uploads

    commands.init_app(app)
    uploads.init_app(app)
