"""Signing in and out, the session cookie, and CSRF protection of every POST."""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import stat
import zlib
from pathlib import Path

import pytest

from runner import create_app
from runner.auth import hash_token
from runner.runtime import Runtime
from runner.services import tenancy
from tests.console.conftest import Console, page
from tests.runner.helpers import create_runbook


def _cookie(response) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("rbm_console=")]
    assert cookies, response.headers
    return cookies[-1]


def _payload(cookie_header: str) -> dict:
    """Decode the signed cookie's payload (it is signed, not encrypted)."""
    value = cookie_header.split(";", 1)[0].split("=", 1)[1]
    compressed = value.startswith(".")
    data = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    return json.loads(zlib.decompress(raw) if compressed else raw)


def test_sign_in_with_a_bad_token_is_refused(make_console):
    console = make_console(sign_in=False)
    console.get("/console/sign-in")

    answer = console.post("/console/sign-in", {"token": "rbm_not-a-token"})

    assert answer.status_code == 401
    assert "unknown, revoked or expired" in page(answer).text
    assert console.get("/runbooks").status_code == 303


def test_sign_in_opens_the_tokens_workspace(make_console):
    console = make_console(sign_in=False)
    console.get("/console/sign-in")

    answer = console.post("/console/sign-in", {"token": console.token})

    assert answer.status_code == 303
    assert answer.headers["Location"] == "/console/ws/acme/runbooks"
    assert console.get("/runbooks").status_code == 200


def test_pages_need_a_sign_in_and_come_back_after_it(make_console):
    console = make_console(sign_in=False)

    answer = console.get("/runbooks?status=draft")

    assert answer.status_code == 303
    assert answer.headers["Location"].startswith("/console/sign-in?next=")
    signed = console.post("/console/sign-in", {"token": console.token, "next": "/console/ws/acme/runbooks?status=draft"})
    assert signed.headers["Location"] == "/console/ws/acme/runbooks?status=draft"


def test_sign_in_never_redirects_off_the_console(make_console):
    console = make_console(sign_in=False)
    console.get("/console/sign-in")

    answer = console.post("/console/sign-in", {"token": console.token, "next": "https://evil.example.com/console/"})

    assert answer.headers["Location"] == "/console/ws/acme/runbooks"


def test_sign_out_ends_the_session(console):
    answer = console.post("/console/sign-out")

    assert answer.status_code == 303
    assert console.get("/runbooks").status_code == 303


def test_a_revoked_token_ends_the_console_session(console, rt):
    tokens = tenancy.list_tokens(rt, tenancy.authenticate(rt, console.token, "acme"))
    tenancy.revoke_token(rt, tenancy.authenticate(rt, console.token, "acme"), tokens[-1]["id"])

    answer = console.get("/runbooks")

    assert answer.status_code == 303
    assert "ended=1" in answer.headers["Location"]


def test_session_cookie_is_http_only_and_same_site_lax(make_console):
    console = make_console(sign_in=False)
    console.get("/console/sign-in")

    cookie = _cookie(console.post("/console/sign-in", {"token": console.token}))

    flags = [part.strip() for part in cookie.split(";")]
    assert "HttpOnly" in flags
    assert "SameSite=Lax" in flags
    assert "Path=/console" in flags
    assert "Secure" not in flags


def test_session_cookie_holds_the_token_hash_never_the_token(make_console):
    console = make_console(sign_in=False)
    console.get("/console/sign-in")

    cookie = _cookie(console.post("/console/sign-in", {"token": console.token}))

    assert console.token not in cookie
    assert console.token[4:] not in json.dumps(_payload(cookie))
    assert _payload(cookie)["token"] == hash_token(console.token)


def test_session_cookie_is_secure_when_configured(rt, workspace):
    secure = create_app(runtime=Runtime(dataclasses.replace(rt.settings, console_secure_cookies=True), rt.db, rt.clock))
    token, _ = tenancy.create_token(rt, workspace, role="member")
    console = Console(secure.test_client(), workspace, token)
    console.get("/console/sign-in")

    cookie = _cookie(console.post("/console/sign-in", {"token": token}))

    assert "Secure" in [part.strip() for part in cookie.split(";")]


def test_session_key_is_generated_once_and_kept_private(rt):
    first = create_app(runtime=rt)
    second = create_app(runtime=rt)

    path = Path(rt.settings.var_dir) / "console-secret-key"
    assert first.secret_key == second.secret_key == path.read_text().strip()
    assert len(first.secret_key) >= 40
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_configured_session_key_is_used_and_nothing_written(rt, tmp_path):
    settings = dataclasses.replace(rt.settings, console_secret_key="k" * 48, var_dir=str(tmp_path / "elsewhere"))

    app = create_app(runtime=Runtime(settings, rt.db, rt.clock))

    assert app.secret_key == "k" * 48
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("csrf", [None, "wrong-token", "wr\u00f6ng"], ids=["missing", "wrong", "non-ascii"])
def test_post_without_the_right_csrf_token_is_refused_and_changes_nothing(console, api, csrf):
    draft = create_runbook(api)
    data = {} if csrf is None else {"csrf_token": csrf}

    answer = console.post(f"/runbooks/{draft['key']}/publish", data, csrf=False)

    assert answer.status_code == 400
    assert "CSRF" in page(answer).text
    assert api.get(f"/runbooks/{draft['key']}").get_json()["status"] == "draft"


def test_csrf_token_of_another_session_is_refused(make_console, api):
    draft = create_runbook(api)
    alice, mallory = make_console("owner", subject="alice"), make_console("owner", subject="mallory")

    answer = alice.post(f"/runbooks/{draft['key']}/publish", {"csrf_token": mallory.csrf}, csrf=False)

    assert answer.status_code == 400
    assert api.get(f"/runbooks/{draft['key']}").get_json()["status"] == "draft"


def test_sign_in_itself_needs_the_csrf_token(make_console):
    console = make_console(sign_in=False)
    console.get("/console/sign-in")

    answer = console.post("/console/sign-in", {"token": console.token}, csrf=False)

    assert answer.status_code == 400
    assert console.get("/runbooks").status_code == 303


def test_pages_carry_security_headers(console):
    answer = console.get("/runbooks")

    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["Cache-Control"] == "no-store"
