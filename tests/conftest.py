"""Fixtures shared by every test: a migrated store, the app, tokens, and an API helper."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from runner import create_app
from runner.clock import ManualClock
from runner.config import Settings
from runner.db import Database
from runner.migrate import upgrade
from runner.runtime import Runtime
from runner.services import tenancy

# Settings every test runner gets unless a test overrides them.
TEST_SETTINGS: dict[str, Any] = {
    "outbound_allowlist": "127.0.0.1,::1,localhost",
    "token_cache_seconds": 0.0,
    "lease_seconds": 5.0,
    "poll_interval": 0.05,
}


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per test process, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database (started if it is not answering), copied for each test that runs on PostgreSQL."""
    from tests import pg

    pg.ensure_server()
    name = pg.create_database(prefix="rbm_template")
    db = Database(pg.url_of(name))
    upgrade(db)
    db.dispose()
    yield name
    pg.drop_database(name)


@pytest.fixture
def db_path(tmp_path: Path, migrated_template: Path) -> Path:
    path = tmp_path / "runner.db"
    shutil.copy(migrated_template, path)
    return path


@pytest.fixture
def settings(db_path: Path, tmp_path: Path) -> Settings:
    return Settings.from_env({}, database_url=f"sqlite:///{db_path}", var_dir=str(tmp_path / "var"), **TEST_SETTINGS)


@pytest.fixture
def clock() -> ManualClock:
    """A clock that starts at the real time (so signatures verify) and moves only when told."""
    from runner.clock import utcnow

    return ManualClock(utcnow().replace(microsecond=0))


@pytest.fixture
def rt(settings: Settings, clock: ManualClock) -> Iterator[Runtime]:
    runtime = Runtime.from_settings(settings, clock=clock)
    yield runtime
    runtime.db.dispose()


@pytest.fixture
def app(rt: Runtime):
    return create_app(runtime=rt)


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


class Api:
    """A test client bound to one workspace and token: ``api.post("/runbooks", json=…)``."""

    def __init__(self, client: FlaskClient, slug: str, token: str, headers: dict[str, str] | None = None) -> None:
        self.client, self.slug, self.token = client, slug, token
        self.headers = {"Authorization": f"Bearer {token}", **(headers or {})}

    def url(self, path: str) -> str:
        return path if path.startswith("/api/") or not path.startswith("/") else f"/api/v1/ws/{self.slug}{path}"

    def request(self, method: str, path: str, **kwargs: Any):
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.open(self.url(path), method=method, headers=headers, **kwargs)

    def get(self, path: str, **kw: Any):
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any):
        return self.request("POST", path, **kw)

    def patch(self, path: str, **kw: Any):
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any):
        return self.request("DELETE", path, **kw)


@pytest.fixture
def workspace(rt: Runtime) -> str:
    return tenancy.create_workspace(rt, "acme").slug


@pytest.fixture
def make_api(rt: Runtime, client: FlaskClient, workspace: str):
    """Build an Api helper for a new token: ``make_api("operator", subject="olga")``."""

    def build(role: str = "owner", *, subject: str | None = None, slug: str | None = None) -> Api:
        slug = slug or workspace
        secret, _ = tenancy.create_token(rt, slug, role=role, subject=subject or f"{role}-user")
        return Api(client, slug, secret)

    return build


@pytest.fixture
def api(make_api) -> Api:
    """An owner of workspace ``acme``."""
    return make_api("owner", subject="olivia")


def problem(response) -> dict[str, Any]:
    """Assert the response is problem+json and return its body."""
    assert response.mimetype == "application/problem+json", (response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == response.status_code
    return body


@pytest.fixture
def server():
    """A local counting HTTP server (127.0.0.1 is allow-listed for tests)."""
    from tests.servers import CountingServer

    with CountingServer() as srv:
        yield srv


@pytest.fixture
def worker(rt: Runtime):
    """A job worker driven by the test: ``worker.run_until_idle()``."""
    from runner.engine import JobWorker

    return JobWorker(rt, worker_id="test-worker", threads=1)
