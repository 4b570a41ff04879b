"""PostgreSQL fixtures: a migrated template database per test process, a copy of it per test."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import create_app
from runner.config import Settings
from runner.runtime import Runtime
from runner.services import tenancy
from tests import pg
from tests.conftest import TEST_SETTINGS, Api

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    name = pg.create_database(template=pg_template)
    yield pg.url_of(name)
    pg.drop_database(name)


@pytest.fixture
def pg_settings(pg_url: str, tmp_path: Path) -> Settings:
    return Settings.from_env({}, database_url=pg_url, var_dir=str(tmp_path / "var"), **TEST_SETTINGS)


@pytest.fixture
def pg_rt(pg_settings: Settings, clock) -> Iterator[Runtime]:
    runtime = Runtime.from_settings(pg_settings, clock=clock)
    yield runtime
    runtime.db.dispose()


@pytest.fixture
def pg_api(pg_rt: Runtime) -> Api:
    tenancy.create_workspace(pg_rt, "acme")
    secret, _ = tenancy.create_token(pg_rt, "acme", role="owner", subject="olivia")
    return Api(create_app(runtime=pg_rt).test_client(), "acme", secret)
