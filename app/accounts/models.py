"""Accounts and API keys: who asked, and what they may see.

Passwords are hashed with Werkzeug's ``generate_password_hash`` (scrypt, salted: the default of
Werkzeug 3); an API key is 32 random bytes (``secrets.token_urlsafe``) shown once and kept as its
SHA-256 (a key has the entropy a password lacks, so a fast hash is the usual choice: GitHub's
and Stripe's keys are stored the same way), found by its public prefix.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db

#: The owner of what was answered without an account (the demo mode, rows older than accounts).
ANONYMOUS = "anonymous"
ROLES = ("user", "admin")
KEY_PREFIX = "gv_"


def _now() -> datetime:
    return datetime.now(UTC)


class Account(UserMixin, db.Model):
    """A user: ``name`` (unique login), ``role`` (user or admin), a password hash (None: cannot
    sign in with a password, e.g. ``anonymous``), and whether it is ``active``."""

    __tablename__ = "account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    role: Mapped[str] = mapped_column(String(16), default="user")
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    keys: Mapped[list[ApiKey]] = relationship(back_populates="account", order_by="ApiKey.id")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_active(self) -> bool:   # Flask-Login: an inactive account cannot sign in
        return bool(self.active)

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)   # scrypt, salted

    def check_password(self, password: str) -> bool:
        return bool(self.password_hash) and check_password_hash(self.password_hash, password)

    def __repr__(self) -> str:
        return f"<Account {self.name} ({self.role})>"


class ApiKey(db.Model):
    """A key of an account for programs (``Authorization: Bearer gv_<prefix>_<secret>``):
    only the SHA-256 of the whole key is kept; revoked keys stay listed with ``revoked_at``."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True, index=True)
    key_sha256: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    account: Mapped[Account] = relationship(back_populates="keys")

    @staticmethod
    def digest(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def issue(cls, account: Account, label: str = "") -> tuple[ApiKey, str]:
        """A new key row for ``account`` (added to the session, not committed) and the key itself,
        ``gv_<8 hex>_<43 url-safe characters>``: shown once, never stored."""
        prefix = secrets.token_hex(4)
        key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        row = cls(account=account, prefix=prefix, key_sha256=cls.digest(key), label=label[:64])
        db.session.add(row)
        return row, key

    def revoke(self) -> None:
        self.revoked_at = self.revoked_at or _now()

    def __repr__(self) -> str:
        return f"<ApiKey {self.prefix} of {self.account_id}>"
