"""Signing in with an API token, and out."""
from __future__ import annotations

from typing import Any

from flask import Response, redirect, render_template, request, session, url_for

from ..api.context import runtime
from ..auth import hash_token
from ..errors import Unauthorized
from ..services import tenancy
from .session import sign_in as start_session
from .web import bp, safe_next, see_other


@bp.get("/")
def index() -> Response:
    """Open the signed-in workspace's runbooks, or the sign-in page."""
    digest = session.get("token")
    if digest:
        try:
            who = tenancy.authenticate_hash(runtime(), digest, None)
        except Unauthorized:
            session.pop("token", None)
        else:
            return redirect(url_for("console.runbooks", ws=who.workspace_slug))
    return redirect(url_for("console.sign_in"))


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    """Ask for an API token; keep only its hash in the session."""
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        notice = "Your sign-in ended: the token was revoked or expired, or the session timed out." if request.args.get("ended") else None
        return render_template("console/signin.html", next=target, notice=notice)
    token = request.form.get("token", "").strip()
    try:
        if not token:
            raise Unauthorized("enter an API token")
        digest = hash_token(token)
        who = tenancy.authenticate_hash(runtime(), digest, None, source=request.remote_addr)
    except Unauthorized as exc:
        return render_template("console/signin.html", next=target, error=exc.detail), 401
    start_session(digest)
    return redirect(target or url_for("console.runbooks", ws=who.workspace_slug), 303)


@bp.post("/sign-out")
def sign_out() -> Response:
    """End the console session."""
    session.clear()
    return see_other("console.sign_in")
