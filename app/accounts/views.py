"""Pages of accounts: sign in and out, one's own API keys, and the admin's user page."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, PasswordField, StringField, SubmitField
from wtforms.validators import EqualTo, InputRequired, Length, Regexp

from ..extensions import db
from .auth import current_account, is_admin
from .models import ANONYMOUS, Account, ApiKey

bp = Blueprint("accounts", __name__)
NAME_RULE = Regexp(r"^[A-Za-z0-9_.@-]{2,64}$", message="2-64 letters, digits or _ . @ -")


class LoginForm(FlaskForm):
    name = StringField("User name", validators=[InputRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[InputRequired()])
    submit = SubmitField("Sign in")


class KeyForm(FlaskForm):
    label = StringField("Label (what the key is for)", validators=[Length(max=64)])
    account = HiddenField()
    submit = SubmitField("New API key")


class RevokeForm(FlaskForm):
    prefix = HiddenField(validators=[InputRequired()])
    submit = SubmitField("Revoke")


class ActiveForm(FlaskForm):
    account = HiddenField(validators=[InputRequired()])
    submit = SubmitField("Deactivate or activate")


class UserForm(FlaskForm):
    name = StringField("User name", validators=[InputRequired(), NAME_RULE])
    password = PasswordField("Password", validators=[InputRequired(), Length(min=8, message="8 characters or more")])
    confirm = PasswordField("Password again", validators=[EqualTo("password", message="the passwords differ")])
    admin = BooleanField("Admin (sees every user's data, manages users and galleries)")
    submit = SubmitField("Create user")


def _safe_next(target: str | None) -> str:
    """Only a path of this site (no scheme, no host) is followed after signing in."""
    parts = urlsplit(target or "")
    if not target or parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("main.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        account = db.session.scalar(db.select(Account).where(Account.name == form.name.data.strip()))
        if account is not None and account.is_active and account.check_password(form.password.data):
            login_user(account)
            return redirect(_safe_next(request.args.get("next")))
        form.password.errors.append("wrong user name or password")
        status = 401
    elif request.method == "POST":
        status = 400
    return render_template("accounts/login.html", form=form), status


@bp.post("/logout")
def logout():
    logout_user()
    flash("signed out", "ok")
    return redirect(url_for("accounts.login"))


def _issue_key(account: Account, label: str) -> None:
    _, key = ApiKey.issue(account, label)
    db.session.commit()
    flash(f"New API key for {account.name} (shown once, copy it now): {key}", "key")


def _revoke(prefix: str, owner: Account | None) -> None:
    row = db.session.scalar(db.select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None or (owner is not None and row.account_id != owner.id):
        abort(404)
    row.revoke()
    db.session.commit()
    flash(f"key {row.prefix} of {row.account.name} revoked", "ok")


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account():
    """The signed-in user's API keys: create one (shown once), revoke one."""
    me = current_account()
    key_form, revoke_form = KeyForm(prefix="key"), RevokeForm(prefix="revoke")
    if key_form.submit.data and key_form.validate_on_submit():
        _issue_key(me, key_form.label.data or "")
        return redirect(url_for("accounts.account"))
    if revoke_form.submit.data and revoke_form.validate_on_submit():
        _revoke(revoke_form.prefix.data, me)
        return redirect(url_for("accounts.account"))
    return render_template("accounts/account.html", me=me, key_form=key_form, revoke_form=revoke_form)


@bp.route("/admin/users", methods=["GET", "POST"])
@login_required
def users():
    """Admins: every account with its keys; create a user, issue or revoke a key, (de)activate."""
    if not is_admin():
        abort(403)
    user_form, key_form, revoke_form = UserForm(prefix="user"), KeyForm(prefix="key"), RevokeForm(prefix="revoke")
    active_form = ActiveForm(prefix="active")
    status = 200
    if user_form.submit.data:
        if user_form.validate_on_submit():
            name = user_form.name.data.strip()
            if name == ANONYMOUS or db.session.scalar(db.select(Account).where(Account.name == name)):
                user_form.name.errors.append("this name is taken")
                status = 400
            else:
                user = Account(name=name, role="admin" if user_form.admin.data else "user")
                user.set_password(user_form.password.data)
                db.session.add(user)
                db.session.commit()
                flash(f"user {name} created", "ok")
                return redirect(url_for("accounts.users"))
        else:
            status = 400
    elif key_form.submit.data and key_form.validate_on_submit():
        target = db.session.get(Account, int(key_form.account.data or 0)) or abort(404)
        _issue_key(target, key_form.label.data or "")
        return redirect(url_for("accounts.users"))
    elif revoke_form.submit.data and revoke_form.validate_on_submit():
        _revoke(revoke_form.prefix.data, None)
        return redirect(url_for("accounts.users"))
    elif active_form.submit.data and active_form.validate_on_submit():
        _toggle_active(db.session.get(Account, int(active_form.account.data or 0)) or abort(404))
        return redirect(url_for("accounts.users"))
    accounts = db.session.scalars(db.select(Account).where(Account.name != ANONYMOUS).order_by(Account.name)).all()
    return render_template("accounts/users.html", accounts=accounts, user_form=user_form, key_form=key_form,
                           revoke_form=revoke_form, active_form=active_form, me=current_account()), status


def _toggle_active(target: Account) -> None:
    """Deactivate an active account (no sign-in, none of its keys works; its data stays) or
    activate an inactive one; an admin cannot deactivate their own account."""
    if target.id == current_account().id:
        flash("you cannot deactivate your own account", "error")
        return
    target.active = not target.active
    db.session.commit()
    flash(f"{target.name} {'activated' if target.active else 'deactivated'}", "ok")
