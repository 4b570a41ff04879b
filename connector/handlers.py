"""One handler per operation the manifest names. Each takes a RunnerClient and the operation's input."""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from webhooks.signing import VerificationError, verify

from .client import ENVIRONMENT_HEADER, RunnerClient, segment
from .errors import ConfigurationError, FatalError, VerificationFailed
from .outputs import invocation_output, invoked_output, job_output, stopped_output

__all__ = ["HANDLERS"]

Handler = Callable[[RunnerClient, Mapping[str, Any]], Any]
HANDLERS: dict[str, Handler] = {}

INVOKED = "runbook.invoked"
STOPPED = "job.stopped_by_system"
# Longest a waiting invocation may wait (the runner's own limit).
MAX_WAIT_SECONDS = 300
# Seconds an invocation with wait waits when timeout_seconds is not given.
DEFAULT_WAIT_SECONDS = 60.0
# Tolerance for the timestamp of an incoming delivery.
DELIVERY_TOLERANCE_SECONDS = 300


def handler(name: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of manifest operation ``name``."""

    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


def _require(data: Mapping[str, Any], *names: str) -> None:
    missing = [n for n in names if data.get(n) in (None, "", [])]
    if missing:
        raise ConfigurationError(f"missing input: {', '.join(missing)}")


# --- connection ------------------------------------------------------------------------

@handler("connection.test")
def test_connection(client: RunnerClient, data: Mapping[str, Any]) -> dict[str, Any]:
    """Check the URL answers, serves the connection's environment, and accepts the token for the workspace."""
    _, environment = client.request("GET", client.url("/api/v1/environment"))
    if environment.get("id") != client.connection.environment:
        raise FatalError(f"{client.connection.base_url} serves {environment.get('label')} ({environment.get('id')}), "
                         f"not {client.connection.label} ({client.connection.environment})")
    _, workspace = client.request("GET", client.ws(""))
    return {"ok": True, "environment": {"id": environment["id"], "label": environment["label"]},
            "workspace": workspace["slug"], "subject": workspace["subject"], "role": workspace["role"]}


# --- shared trigger operations -------------------------------------------------------------

@handler("subscription.unsubscribe")
def unsubscribe(client: RunnerClient, data: Mapping[str, Any]) -> dict[str, Any]:
    """Remove a trigger's subscription (an already removed one counts as removed)."""
    _require(data, "id")
    try:
        client.request("DELETE", client.ws(f"/hooks/{segment(data['id'])}"))
    except FatalError as exc:
        if exc.status != 404:
            raise
    return {"id": data["id"], "unsubscribed": True}


@handler("subscription.renew")
def renew(client: RunnerClient, data: Mapping[str, Any]) -> dict[str, Any]:
    """Move a subscription's expiry forward."""
    _require(data, "id", "expires_at")
    _, sub = client.request("PATCH", client.ws(f"/hooks/{segment(data['id'])}"), json={"expires_at": data["expires_at"]})
    return {"id": sub["id"], "expires_at": sub["expires_at"], "status": sub["status"]}


def _subscribe(client: RunnerClient, events: list[str], runbooks: list[str], data: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"events": events, "runbooks": runbooks, "target_url": data["target_url"]}
    if data.get("expires_at"):
        body["expires_at"] = data["expires_at"]
    _, sub = client.request("POST", client.ws("/hooks"), json=body)
    return {"id": sub["id"], "secret": sub["secret"], "runbooks": sub["runbooks"], "expires_at": sub.get("expires_at")}


def _receive(client: RunnerClient, data: Mapping[str, Any], event_type: str) -> dict[str, Any]:
    _require(data, "secret", "headers")
    body = data["body"] if isinstance(data.get("body"), bytes) else str(data.get("body", "")).encode()
    headers = {k.lower(): v for k, v in data["headers"].items()}
    try:
        verify(data["secret"], headers, body, tolerance=DELIVERY_TOLERANCE_SECONDS)
    except VerificationError as exc:
        raise VerificationFailed(f"refused the delivery: {exc}") from exc
    sent_from = headers.get(ENVIRONMENT_HEADER.lower())
    if sent_from != client.connection.environment:
        raise VerificationFailed(f"refused the delivery: it comes from environment {sent_from!r}, "
                                 f"but this connection is for {client.connection.label} ({client.connection.environment})")
    message = json.loads(body)
    if message.get("type") != event_type:
        raise VerificationFailed(f"refused the delivery: expected a {event_type} event, got {message.get('type')!r}")
    return message["data"]


def _poll(client: RunnerClient, data: Mapping[str, Any], event_type: str, runbooks: list[str],
          shape: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    params = {"type": event_type, "runbooks": ",".join(runbooks), "limit": data.get("limit", 100)}
    if data.get("cursor"):
        params["after"] = data["cursor"]
    _, page = client.request("GET", client.ws("/events"), params=params)
    return {"items": [shape(item["data"]) for item in page["items"]], "cursor": page["next_cursor"]}


# --- trigger: Runbook Action ------------------------------------------------------------------

@handler("runbook_action.subscribe")
def runbook_action_subscribe(client: RunnerClient, data: Mapping[str, Any]) -> dict[str, Any]:
    """Make the runbook callable with the trigger's parameter schema (creating it if needed) and send its jobs to the flow."""
    _require(data, "runbook", "parameters", "target_url")
    if not isinstance(data["parameters"], dict):
        raise ConfigurationError("parameters must be a JSON Schema object")
    ref = data["runbook"]
    try:
        _, runbook = client.request("GET", client.ws(f"/runbooks/{segment(ref)}"))
    except FatalError as exc:
        if exc.status != 404:
            raise
        _, runbook = client.request("POST", client.ws("/runbooks"), json={
            "name": ref, "title": data.get("title") or ref, "callable": True, "parameters": data["parameters"],
            "description": data.get("description", "Runs as an iPaaS flow (Runbook Action trigger)."),
        })
    else:
        if runbook["parameters"] != data["parameters"] or not runbook["callable"]:
            _, runbook = client.request("PATCH", client.ws(f"/runbooks/{segment(runbook['key'])}"),
                                        json={"parameters": data["parameters"], "callable": True})
    if runbook["status"] == "draft":
        _, runbook = client.request("POST", client.ws(f"/runbooks/{segment(runbook['key'])}/publish"))
    return {**_subscribe(client, [INVOKED], [runbook["key"]], data), "runbook": runbook["key"]}


@handler("runbook_action.receive")
def runbook_action_receive(client: RunnerClient, data: Mapping[str, Any]) -> dict[str, Any]:
    """Verify a delivery to the flow and give the trigger's output: parameters, job UUID, lineage."""
    return invoked_output(_receive(client, data, INVOKED))


@handler("runbook_action.poll")
def runbook_action_poll(client: RunnerClient, data: Mapping[str, Any]) -> dict[str, Any]:
    """Polling fallback: invocations of the runbook after the cursor."""
    _require(data, "runbook")
    return _poll(client, data, INVOKED, [data["runbook"]], invoked_output)


# --- trigger: Runbook Stopped by System ----------------------------------------------------------

def _runbook_list(data: Mapping[str, Any]) -> list[str]:
    runbooks = data.get("runbooks")
    if not isinstance(runbooks, list) or not runbooks or not all(isinstance(r, str) and r for r in runbooks):
        raise ConfigurationError("runbooks must list at least one runbook key or name")
    return runbooks


@handler("runbook_stopped_by_system.subscribe")
def stopped_subscribe(client: RunnerClient, data: Mapping[str, Any]) -> dict[str, Any]:
    """Send system stops of the listed runbooks to the flow (a person's abort never fires it)."""
    _require(data, "target_url")
    return _subscribe(client, [STOPPED], _runbook_list(data), data)


@handler("runbook_stopped_by_system.receive")
def stopped_receive(client: RunnerClient, data: Mapping[str, Any]) -> dict[str, Any]:
    """Verify a stop delivery and give the trigger's output."""
    return stopped_output(_receive(client, data, STOPPED))


@handler("runbook_stopped_by_system.poll")
def stopped_poll(client: RunnerClient, data: Mapping[str, Any]) -> dict[str, Any]:
    """Polling fallback: system stops of the listed runbooks after the cursor."""
    return _poll(client, data, STOPPED, _runbook_list(data), stopped_output)


# --- action: Runbook Action ---------------------------------------------------------------------

@handler("runbook_action.pick_list")
def callable_runbooks(client: RunnerClient, data: Mapping[str, Any]) -> list[dict[str, str]]:
    """The published, callable runbooks a flow may invoke."""
    choices, cursor = [], None
    while True:
        params = {"status": "published", "callable": "true", "limit": 200, **({"cursor": cursor} if cursor else {})}
        _, page = client.request("GET", client.ws("/runbooks"), params=params)
        choices += [{"value": r["key"], "label": f"{r['title']} ({r['key']})"} for r in page["items"]]
        cursor = page.get("next_cursor")
        if not cursor:
            return choices


@handler("runbook_action.parameters_schema")
def parameters_schema(client: RunnerClient, data: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema of the chosen runbook's parameters (the action's dynamic input)."""
    _require(data, "runbook_action")
    _, runbook = client.request("GET", client.ws(f"/runbooks/{segment(data['runbook_action'])}"))
    return runbook["parameters"] or {"type": "object", "properties": {}}


def _wait_seconds(given: Any) -> float:
    """The seconds an invocation waits for its job: the timeout_seconds input (past the runner's longest wait, that), else 60."""
    if given is None or given == "":
        return DEFAULT_WAIT_SECONDS
    try:
        seconds = math.nan if isinstance(given, bool) else float(given)
    except (TypeError, ValueError, OverflowError):
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ConfigurationError(f"timeout_seconds must be a positive number of seconds (at most {MAX_WAIT_SECONDS} are waited), "
                                 f"got {given!r}")
    return seconds


@handler("runbook_action.execute")
def invoke(client: RunnerClient, data: Mapping[str, Any]) -> dict[str, Any]:
    """Invoke a callable runbook; return its job UUID at once, or wait for its end up to the timeout."""
    _require(data, "runbook_action")
    body: dict[str, Any] = {"parameters": data.get("parameters") or {}}
    if data.get("wait"):
        body["wait"] = min(_wait_seconds(data.get("timeout_seconds")), MAX_WAIT_SECONDS)
    key = data.get("idempotency_key") or client.new_idempotency_key()
    status, answer = client.request("POST", client.ws(f"/runbooks/{segment(data['runbook_action'])}/jobs"), json=body,
                                    idempotency_key=key, timeout=30 + body.get("wait", 0))
    return invocation_output(answer["job"], finished=status == 200)


# --- action: Get Job ---------------------------------------------------------------------------------

@handler("get_job.execute")
def get_job(client: RunnerClient, data: Mapping[str, Any]) -> dict[str, Any]:
    """A job's status, step timeline and stop message."""
    _require(data, "job_uuid")
    _, job = client.request("GET", client.ws(f"/jobs/{segment(data['job_uuid'])}"))
    return job_output(job)
