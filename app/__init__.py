"""Flask application factory."""
from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from flask import Flask

from . import metrics, security
from .config import DEFAULT_SECRET_KEY, ROOT, WEAK_SECRET_KEYS, Config, config_from_env


def create_app(config: type[Config] | dict | None = None, wait_for_models: bool = False) -> Flask:
    """Build the app: config, extensions, blueprints, error handlers, CLI commands.

    Args:
        config: a config class, or a dict of overrides on top of the environment's class.
        wait_for_models: block until every model is loaded (tests, CLI); otherwise the
            models load in a background thread and ``/api/v1/ready`` says when.
    Without ``SECRET_KEY`` in the environment a random key is generated once and
    kept in the instance folder.
    Raises:
        RuntimeError: outside testing/debug, when SECRET_KEY is a default or weak value.
    """
    app = Flask(__name__, instance_relative_config=True, template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "static"))
    if isinstance(config, dict):
        app.config.from_object(config_from_env())
        app.config.update(config)
    else:
        app.config.from_object(config or config_from_env())
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{Path(app.instance_path) / 'app.db'}"
    check_secret_key(app)

    register_request_limits(app)   # before CSRF, which reads the form
    register_extensions(app, wait_for_models)
    register_blueprints(app)
    security.init_app(app)
    metrics.init_app(app)
    register_commands(app)
    return app


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


#: Endpoints that take SEG-Y volumes: their request bodies may reach ``SEGY_MAX_BYTES`` +
#: ``MAX_CONTENT_LENGTH`` (room for form fields); each file is then held to its own limit
#: (``segy_too_large`` / ``payload_too_large``, 413) by ``app.salt.service.read_salt_files``.
SEGY_ENDPOINTS = {"salt.upload", "api.salt_segment"}


def register_request_limits(app: Flask) -> None:
    from flask import request

    @app.before_request
    def allow_large_segy_uploads():
        if request.endpoint in SEGY_ENDPOINTS:
            request.max_content_length = ((app.config.get("MAX_CONTENT_LENGTH") or 0)
                                          + (app.config.get("SEGY_MAX_BYTES") or 0)) or None


def register_extensions(app: Flask, wait_for_models: bool) -> None:
    from . import gallery
    from .extensions import csrf, db, engine, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    csrf.init_app(app)
    engine.init_app(app, wait=wait_for_models)
    gallery.init_app(app)


def register_blueprints(app: Flask) -> None:
    from . import admin, api, errors, main, rocks, salt, similarity, whales
    from .extensions import csrf

    app.register_blueprint(errors.bp)
    app.register_blueprint(main.bp)
    app.register_blueprint(salt.bp)
    app.register_blueprint(rocks.bp)
    app.register_blueprint(similarity.bp)
    app.register_blueprint(whales.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)
    csrf.exempt(api.bp)  # the JSON API is for programs, not browser forms
    csrf.exempt(admin.bp)  # token-authenticated, no cookies


def register_commands(app: Flask) -> None:
    from . import commands, uploads
    from .salt import commands as salt_commands
    from .similarity import commands as gallery_commands

    commands.init_app(app)
    gallery_commands.init_app(app)
    salt_commands.init_app(app)
    uploads.init_app(app)
