"""``flask users ...``: accounts and API keys for operators (and tests).

    flask users create NAME [--admin]    the password is asked twice (read as two lines from
                                         standard input when it is not a terminal)
    flask users key NAME [--label L]     prints a new API key as its last line
    flask users revoke PREFIX            revokes a key (its prefix: the 8 characters after gv_)
    flask users disable|enable NAME      an inactive account can neither sign in nor use its keys
    flask users list                     accounts, roles and their keys
"""
from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from ..extensions import db
from .models import ANONYMOUS, Account, ApiKey

users = AppGroup("users", help="Accounts and API keys.")


def _account(name: str) -> Account:
    account = db.session.scalar(db.select(Account).where(Account.name == name))
    if account is None or name == ANONYMOUS:
        raise click.ClickException(f"no user {name!r}")
    return account


def read_password() -> str:
    """The new password, typed twice: hidden prompts on a terminal, else two lines of standard input."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    first, second = sys.stdin.readline().rstrip("\r\n"), sys.stdin.readline().rstrip("\r\n")
    if first != second:
        raise click.ClickException("the two passwords differ")
    return first


@users.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="the admin role: every user's data, users, galleries, reloads")
def create(name: str, admin: bool) -> None:
    """Create user NAME; the password is read twice (at least 8 characters)."""
    if name == ANONYMOUS or db.session.scalar(db.select(Account).where(Account.name == name)):
        raise click.ClickException(f"the name {name!r} is taken")
    if not 2 <= len(name) <= 64:
        raise click.ClickException("a user name has 2-64 characters")
    password = read_password()
    if len(password) < 8:
        raise click.ClickException("the password needs 8 characters or more")
    account = Account(name=name, role="admin" if admin else "user")
    account.set_password(password)
    db.session.add(account)
    db.session.commit()
    click.echo(f"created {account.role} {name}")


@users.command("key")
@click.argument("name")
@click.option("--label", default="", help="what the key is for")
def key(name: str, label: str) -> None:
    """Print a new API key of NAME (last line; shown once, only its hash is kept)."""
    _, secret = ApiKey.issue(_account(name), label)
    db.session.commit()
    click.echo(f"API key of {name} (send it as 'Authorization: Bearer <key>'):")
    click.echo(secret)


@users.command("revoke")
@click.argument("prefix")
def revoke(prefix: str) -> None:
    """Revoke the key whose prefix (the 8 characters after gv_) is PREFIX."""
    row = db.session.scalar(db.select(ApiKey).where(ApiKey.prefix == prefix.removeprefix("gv_")[:8]))
    if row is None:
        raise click.ClickException(f"no key {prefix!r}")
    row.revoke()
    db.session.commit()
    click.echo(f"revoked key {row.prefix} of {row.account.name}")


@users.command("disable")
@click.argument("name")
def disable(name: str) -> None:
    """Deactivate NAME: no sign-in, no API key works; its data stays."""
    _account(name).active = False
    db.session.commit()
    click.echo(f"disabled {name}")


@users.command("enable")
@click.argument("name")
def enable(name: str) -> None:
    """Activate NAME again."""
    _account(name).active = True
    db.session.commit()
    click.echo(f"enabled {name}")


@users.command("list")
def list_users() -> None:
    """Accounts, roles, and their keys (prefix, label, revoked or last use)."""
    for account in db.session.scalars(db.select(Account).order_by(Account.name)):
        click.echo(f"{account.name}\t{account.role}\t{'active' if account.active else 'inactive'}")
        for k in account.keys:
            state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else (
                f"last used {k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never used")
            click.echo(f"  gv_{k.prefix}_...\t{k.label}\t{state}")
