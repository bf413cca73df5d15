"""Who is asking: sessions (Flask-Login) for the pages, API keys for programs, and what they may see.

With ``AUTH_REQUIRED`` on (the default in production), every route but the public ones
(:data:`PUBLIC_ENDPOINTS`: health, readiness, the sign-in page, static files, the OpenAPI
document) needs a signed-in account or an ``Authorization: Bearer`` API key: pages redirect to
the sign-in page, ``/api`` answers 401 ``unauthorized`` and ``/v2`` the protocol's error body.
With it off (the ``make run`` demo), a request without credentials acts as the ``anonymous``
account and the pages say so. Every recorded answer, job and SEG-Y volume has an owner; a user
sees their own, an admin everyone's (:func:`can_see`, :func:`visible`).
"""
from __future__ import annotations

import hmac
from datetime import UTC, datetime

from flask import current_app, g, has_request_context, redirect, request, url_for
from flask_login import LoginManager, current_user
from sqlalchemy.exc import IntegrityError

from ..errors import ApiError, ErrorCode
from ..extensions import db
from .models import ANONYMOUS, KEY_PREFIX, Account, ApiKey

login_manager = LoginManager()
login_manager.login_view = "accounts.login"
login_manager.login_message = "Sign in to use the models."

#: Endpoints anyone may call, signed in or not.
PUBLIC_ENDPOINTS = {"static", "accounts.login", "api.health", "api.ready", "v2.live", "v2.ready",
                    "v2.server_metadata", "openapi.openapi_json", "openapi.docs", "openapi.docs_asset", "metrics.metrics"}


@login_manager.user_loader
def _load_account(account_id: str) -> Account | None:
    account = db.session.get(Account, int(account_id))
    return account if account is not None and account.is_active else None


@login_manager.request_loader
def _load_from_key(req) -> Account | None:
    """The account of a valid, unrevoked ``Authorization: Bearer gv_...`` key (its last use is noted,
    at most every ``KEY_LAST_USED_EVERY_S`` seconds, default 60)."""
    key = req.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not key.startswith(KEY_PREFIX) or key.count("_") < 2:
        return None
    prefix = key[len(KEY_PREFIX):].split("_", 1)[0]
    row = db.session.scalar(db.select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_sha256, ApiKey.digest(key)):
        return None
    if not row.account.is_active:
        return None
    now, last = datetime.now(UTC), row.last_used_at
    if last is not None and last.tzinfo is None:   # SQLite hands back naive UTC datetimes
        last = last.replace(tzinfo=UTC)
    if last is None or (now - last).total_seconds() >= current_app.config.get("KEY_LAST_USED_EVERY_S", 60):
        row.last_used_at = now   # at most once a minute per key: not one database write per request
        db.session.commit()
    g.api_key = row
    return row.account


def _service_account(name: str, role: str) -> Account:
    """The inactive account ``name`` (no sign-in, no keys), created with ``role`` when missing; of
    concurrent first uses one inserts it, the others (a unique-name conflict) read that row."""
    account = db.session.scalar(db.select(Account).where(Account.name == name))
    if account is None:
        try:
            account = Account(name=name, role=role, active=False)
            db.session.add(account)
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            account = db.session.scalar(db.select(Account).where(Account.name == name))
    return account


def anonymous_account() -> Account:
    """The ``anonymous`` account (created by the migration; created here when missing)."""
    return _service_account(ANONYMOUS, "user")


#: The account that requests authorised by the bootstrap ``ADMIN_TOKEN`` act and record as: an admin
#: that cannot sign in or hold keys (inactive), so what the token did stays attributable.
TOKEN_ADMIN = "admin-token"


def token_account() -> Account:
    """The :data:`TOKEN_ADMIN` account (created on first use)."""
    return _service_account(TOKEN_ADMIN, "admin")


def current_account() -> Account | None:
    """The signed-in account (session or API key); the :data:`TOKEN_ADMIN` account for a request that
    :func:`admin_allowed` let in by the bootstrap token; else, with ``AUTH_REQUIRED`` off or outside
    a request (``flask`` commands: the operator), ``anonymous``; else None."""
    if not has_request_context():
        return anonymous_account()
    if current_user.is_authenticated:
        return current_user._get_current_object()
    if g.get("token_admin") is not None:
        return g.token_admin
    if not current_app.config.get("AUTH_REQUIRED"):
        return anonymous_account()
    return None


def current_owner_id() -> int:
    """Owner id of what this request records. Raises ApiError 401 when nobody is signed in."""
    account = current_account()
    if account is None:
        raise ApiError(ErrorCode.UNAUTHORIZED, "sign in, or send an API key as Authorization: Bearer", 401,
                       headers={"WWW-Authenticate": "Bearer"})
    return account.id


def is_admin() -> bool:
    account = current_account()
    return account is not None and account.is_admin


def admin_allowed(token: str | None = None) -> bool:
    """A signed-in admin (session, or an admin's API key), or ``token`` equal to the bootstrap
    ``ADMIN_TOKEN`` (compared in constant time; the request then acts as :data:`TOKEN_ADMIN`)."""
    if is_admin():
        return True
    configured = current_app.config.get("ADMIN_TOKEN")
    if bool(configured and token) and hmac.compare_digest(token.encode(), configured.encode()):
        g.token_admin = token_account()   # this request acts and records as the admin-token account
        return True
    return False


def can_see(owner_id: int | None) -> bool:
    """Whether the current requester may read a row owned by ``owner_id`` (admins read all)."""
    account = current_account()
    if account is None:
        return False
    return account.is_admin or owner_id == account.id


def visible(query, model):
    """``query`` restricted to the rows of ``model`` (with ``owner_id``) the requester may read."""
    account = current_account()
    if account is None:
        return query.where(db.false())
    return query if account.is_admin else query.where(model.owner_id == account.id)


def require_login():
    """``before_request``: with ``AUTH_REQUIRED`` on, refuse anonymous requests to non-public routes."""
    if not current_app.config.get("AUTH_REQUIRED") or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if request.blueprint == "admin":   # the admin API checks its own credentials (admin key or token)
        return None
    if current_user.is_authenticated:
        return None
    if request.path.startswith(("/api/", "/v2")):
        raise ApiError(ErrorCode.UNAUTHORIZED, "sign in, or send an API key as Authorization: Bearer", 401,
                       headers={"WWW-Authenticate": "Bearer"})
    return redirect(url_for("accounts.login", next=request.full_path if request.query_string else request.path))
