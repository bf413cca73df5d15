"""Accounts (Flask-Login): users and admins, API keys, and the owner of every recorded row.

:mod:`app.accounts.auth` says who asks and what they may see; :mod:`app.accounts.views` holds the
sign-in, key and user pages; :mod:`app.accounts.commands` the ``flask users`` commands.
"""
from __future__ import annotations

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from .auth import (
    admin_allowed,
    anonymous_account,
    can_see,
    current_account,
    current_owner_id,
    is_admin,
    login_manager,
    require_login,
    visible,
)
from .models import ANONYMOUS, Account, ApiKey

__all__ = ["ANONYMOUS", "Account", "ApiKey", "admin_allowed", "anonymous_account", "can_see", "current_account",
           "current_owner_id", "init_app", "is_admin", "visible"]


def init_app(app: Flask) -> None:
    from . import commands, views

    login_manager.init_app(app)
    app.register_blueprint(views.bp)
    # sign-in attempts per address (Flask-Limiter; counters in RATELIMIT_STORAGE_URI, memory:// = this process)
    limiter = Limiter(get_remote_address, app=app, storage_uri=app.config.get("RATELIMIT_STORAGE_URI", "memory://"))
    app.view_functions["accounts.login"] = limiter.limit(lambda: app.config["LOGIN_RATE_LIMIT"], methods=["POST"])(
        app.view_functions["accounts.login"])
    app.before_request(require_login)
    app.cli.add_command(commands.users)
    app.context_processor(lambda: {"current_account": current_account,
                                   "auth_required": bool(app.config.get("AUTH_REQUIRED"))})
