"""Fixtures and builders the webhook tests share: runbooks, subscriptions, the delivery worker, received requests."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from runner.config import Settings
from runner.services import tenancy
from tests.conftest import Api
from tests.runner.helpers import create_runbook
from webhooks.delivery import DeliveryWorker

PARAMS = {"type": "object", "properties": {"x": {"type": "string"}}}
# One step that needs a person: the job waits (and emits no terminal event) until someone acts.
MANUAL = [{"title": "Confirm with the team"}]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "settings(**overrides): run the test on a runner with these settings changed")


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The shared test settings, changed by a ``@pytest.mark.settings(delivery_max_attempts=2)`` marker."""
    marker = request.node.get_closest_marker("settings")
    return dataclasses.replace(settings, **marker.kwargs) if marker else settings


@pytest.fixture
def deliverer(rt) -> DeliveryWorker:
    """A delivery worker driven by the test: ``deliverer.run_until_idle()``."""
    return DeliveryWorker(rt, worker_id="d")


@pytest.fixture
def stranger(rt, client) -> Api:
    """An owner of another workspace (``globex``)."""
    tenancy.create_workspace(rt, "globex")
    secret, _ = tenancy.create_token(rt, "globex", role="owner", subject="gus")
    return Api(client, "globex", secret)


def runbook(api: Api, title: str, steps: list[dict[str, Any]] | None = None, **fields: Any) -> str:
    """Create a published callable runbook taking ``x``; return its key."""
    body = {"callable": True, "parameters": PARAMS, "steps": MANUAL if steps is None else steps, **fields}
    return create_runbook(api, title, status="published", **body)["key"]


def http_step(url: str, title: str = "Call the service", **action: Any) -> dict[str, Any]:
    return {"title": title, "action": {"type": "http", "url": url, **action}}


def subscribe(api: Api, target: str, events: list[str], runbooks: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """Subscribe ``target`` and return the creating answer (with its secret)."""
    response = api.post("/hooks", json={"events": events, "target_url": target, **({"runbooks": runbooks} if runbooks else {}), **extra})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def start(api: Api, key: str, parameters: dict[str, Any] | None = None) -> str:
    response = api.post(f"/runbooks/{key}/jobs", json={"parameters": parameters or {}})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job"]["uuid"]


def get(api: Api, path: str, **query: Any) -> Any:
    """GET ``path`` expecting 200; return the body."""
    response = api.get(path, query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def deliveries(api: Api, sub_id: str) -> list[dict[str, Any]]:
    return get(api, f"/hooks/{sub_id}/deliveries")["items"]


def received(server: Any, path: str) -> list[dict[str, Any]]:
    """The requests ``server`` got on ``path``, oldest first, each with its JSON body parsed as ``json``."""
    return [{**r, "json": json.loads(r["body"])} for r in server.requests if r["path"] == path]


def lowered(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def drain(deliverer: DeliveryWorker, clock: Any, *, rounds: int = 10, step: float = 3600.0) -> int:
    """Deliver what is due, then move the clock past every backoff ``rounds`` times; return the attempts made."""
    made = deliverer.run_until_idle()
    for _ in range(rounds):
        clock.advance(step)
        made += deliverer.run_until_idle()
    return made
