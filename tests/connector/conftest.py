"""Fixtures of the connector tests: a connection, a client whose sleeps are recorded, scripted HTTP, live runners."""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from responses.registries import OrderedRegistry

from connector import Connection, RunnerClient
from runner.clock import SystemClock
from runner.config import Settings
from runner.runtime import Runtime
from runner.services import tenancy
from tests.processes import RunnerProcess

# Where the scripted (unit-test) runner lives; nothing listens there.
SCRIPTED_URL = "http://runner.test"
SCRIPTED_FIELDS = {"environment": "eu-qa", "api_token": "rbm_test_token", "workspace": "acme", "base_url": SCRIPTED_URL}


@pytest.fixture
def connection() -> Connection:
    """A connection to the scripted runner in EU QA."""
    return Connection.from_fields(SCRIPTED_FIELDS)


@pytest.fixture
def sleeps() -> list[float]:
    """Every delay the client asked to sleep, in order (nothing actually waits)."""
    return []


@pytest.fixture
def runner_client(connection: Connection, sleeps: list[float]) -> RunnerClient:
    return RunnerClient(connection, sleep=sleeps.append)


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    """Scripted HTTP: answers are given in registration order; an unscripted request fails."""
    with responses.RequestsMock(registry=OrderedRegistry, assert_all_requests_are_fired=True) as rsps:
        yield rsps


@dataclass
class LiveRunner:
    """A real runner process serving one environment, with workspace ``acme`` and an owner token."""

    process: RunnerProcess
    token: str
    environment: str

    @property
    def url(self) -> str:
        return self.process.url

    def fields(self, **overrides: Any) -> dict[str, Any]:
        """The connector connection fields that target this runner."""
        return {"environment": self.environment, "base_url": self.url, "api_token": self.token, "workspace": "acme", **overrides}

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Call the runner's API directly (as an operator would), in workspace ``acme``."""
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        url = path if path.startswith("/api/") else f"/api/v1/ws/acme{path}"
        return requests.request(method, self.url + url, headers=headers, timeout=10, **kwargs)

    def runbook(self, body: dict[str, Any]) -> str:
        """Create and publish a runbook; return its key."""
        created = self.api("POST", "/runbooks", json=body)
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        published = self.api("POST", f"/runbooks/{key}/publish")
        assert published.status_code == 200, published.text
        return key


def _start(workdir: Path, template: Path, environment: str) -> LiveRunner:
    workdir.mkdir(parents=True)
    database = workdir / "runner.db"
    shutil.copy(template, database)
    url = f"sqlite:///{database}"
    rt = Runtime.from_settings(Settings.from_env({}, database_url=url, var_dir=str(workdir / "var")), clock=SystemClock())
    tenancy.create_workspace(rt, "acme")
    token, _ = tenancy.create_token(rt, "acme", role="owner", subject="olivia")
    rt.db.dispose()
    process = RunnerProcess(workdir, url, env={"RUNBOOK_MANAGER_ENVIRONMENT": environment}).start()
    return LiveRunner(process, token, environment)


@pytest.fixture
def start_runner(tmp_path: Path, migrated_template: Path) -> Iterator[Callable[[str], LiveRunner]]:
    """Start a runner of an environment (its own SQLite file); every one started is killed after the test."""
    started: list[LiveRunner] = []

    def start(environment: str) -> LiveRunner:
        runner = _start(tmp_path / f"{environment}-{len(started)}", migrated_template, environment)
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.process.kill()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, migrated_template: Path) -> Iterator[LiveRunner]:
    """One EU QA runner shared by a test module; each test makes its own runbooks."""
    runner = _start(tmp_path_factory.mktemp("live") / "eu-qa", migrated_template, "eu-qa")
    yield runner
    runner.process.kill()
