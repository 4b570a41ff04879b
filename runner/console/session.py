"""The console's signed session cookie: its key, where it is opened, and the CSRF token it carries."""
from __future__ import annotations

import hmac
import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path

from flask import Flask, Request, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from ..config import Settings
from ..errors import MalformedRequest

__all__ = ["configure", "csrf_token", "check_csrf", "sign_in", "PREFIX", "CSRF_FIELD", "CSRF_HEADER"]

log = logging.getLogger(__name__)

PREFIX = "/console"
SECRET_FILE = "console-secret-key"
COOKIE_NAME = "rbm_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# How long a console sign-in lasts without signing in again (about one on-call shift).
SESSION_HOURS = 12


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Open the signed cookie session on console pages only, so API requests never pay for it."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.path.startswith(PREFIX):
            return None
        return super().open_session(app, request)


def _stored_key(path: Path) -> str:
    """Read the key kept in ``path``, creating it first (atomically, so racing processes agree)."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:
        pass  # another process created it first: use theirs
    finally:
        draft.unlink()
    return path.read_text().strip()


def secret_key(settings: Settings) -> str:
    """Return the key that signs console sessions: the setting, else the one kept under ``var_dir``."""
    if settings.console_secret_key:
        return settings.console_secret_key
    path = Path(settings.var_dir) / SECRET_FILE
    try:
        return _stored_key(path)
    except OSError as exc:
        log.warning("cannot keep the console key in %s (%s); console sign-ins last until this process restarts", path, exc)
        return secrets.token_urlsafe(48)


def configure(app: Flask, settings: Settings) -> None:
    """Give the app its session key, cookie flags and the console-only session interface."""
    app.secret_key = secret_key(settings)
    app.session_interface = ConsoleSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_PATH=PREFIX,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.console_secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
    )


def csrf_token() -> str:
    """Return this session's CSRF token, making one on first use."""
    token = session.get(CSRF_FIELD)
    if not token:
        token = session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Refuse a POST whose form field or header does not carry this session's CSRF token."""
    expected = session.get(CSRF_FIELD)
    given = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD)
    # Compared as bytes: a header or form field may hold any character, and compare_digest refuses non-ASCII str.
    if not expected or not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise MalformedRequest(
            "the form's security token is missing or out of date (CSRF check); reload the page and try again",
            errors=[{"field": CSRF_FIELD, "message": "missing or wrong", "value": None}],
        )


def sign_in(token_hash: str) -> None:
    """Start a fresh session for a verified token: keep only its hash and a new CSRF token."""
    session.clear()
    session.permanent = True
    session["token"] = token_hash
    csrf_token()
