"""The ``runbook-manager`` command line: schema, workspaces, tokens, bundles, and ``serve --demo``."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner, Result
from sqlalchemy import inspect

from runner import create_app
from runner.cli import main
from runner.config import Settings
from runner.migrate import current_revision, head_revision, objects_of
from runner.models import Base
from runner.runtime import Runtime
from runner.services import tenancy
from tests.conftest import Api
from tests.processes import RunnerProcess, wait_until
from tests.runner.helpers import create_runbook

# Longest a `serve` process may take to print its token.
SERVE_START_SECONDS = 30.0


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment of every command: its own SQLite file and var directory."""
    return {"RUNBOOK_MANAGER_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "RUNBOOK_MANAGER_VAR_DIR": str(tmp_path / "var")}


@pytest.fixture
def cli(cli_env: dict[str, str]) -> Callable[..., Result]:
    """Run one command in-process: ``cli("workspace", "create", "acme")``."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), env=cli_env, catch_exceptions=False)

    return invoke


@pytest.fixture
def upgraded(cli) -> Callable[..., Result]:
    """The ``cli`` of a migrated database."""
    assert cli("db", "upgrade").exit_code == 0
    return cli


@pytest.fixture
def store(cli_env: dict[str, str]) -> Iterator[Runtime]:
    """The runtime a server on the CLI's database would have, to check what the commands did."""
    runtime = Runtime.from_settings(Settings.from_env(cli_env))
    yield runtime
    runtime.db.dispose()


def _api(runtime: Runtime, slug: str, token: str | None = None) -> Api:
    """An Api helper on an app serving the CLI's database (an owner token unless one is given)."""
    token = token or tenancy.create_token(runtime, slug, role="owner", subject="olivia")[0]
    return Api(create_app(runtime=runtime).test_client(), slug, token)


def _failed(result: Result) -> str:
    """Assert the command failed and return what it said."""
    assert result.exit_code != 0, result.output
    return result.output


def test_db_upgrade_brings_the_schema_to_head(cli, store):
    result = cli("db", "upgrade")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"database at revision {head_revision()}"
    assert current_revision(store.db.engine) == head_revision()


def test_migrations_match_the_models_on_sqlite(upgraded, store):
    """What autogenerate would add is nothing: an index kept for PostgreSQL only is not asked of SQLite."""
    with store.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"include_object": objects_of("sqlite")}), Base.metadata)
    assert diff == []


def test_workspace_create_prints_the_slug(upgraded, store):
    result = upgraded("workspace", "create", "acme", "--name", "Acme Corp")

    assert result.exit_code == 0, result.output
    assert result.stdout == "acme\n"
    assert tenancy.get_workspace(store, "acme").name == "Acme Corp"


def test_duplicate_workspace_fails_with_a_clear_message(upgraded):
    upgraded("workspace", "create", "acme")

    output = _failed(upgraded("workspace", "create", "acme"))

    assert "workspace 'acme' already exists" in output
    assert "Traceback" not in output


def test_invalid_workspace_slug_fails_naming_it(upgraded):
    output = _failed(upgraded("workspace", "create", "Not A Slug"))

    assert "'Not A Slug'" in output


def test_token_create_prints_only_a_token_that_authenticates(upgraded, store):
    upgraded("workspace", "create", "acme")

    result = upgraded("token", "create", "--workspace", "acme", "--role", "operator", "--subject", "otto")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("rbm_")
    me = _api(store, "acme", lines[0]).get("/api/v1/ws/acme")
    assert me.status_code == 200
    assert (me.get_json()["subject"], me.get_json()["role"]) == ("otto", "operator")


def test_token_for_an_unknown_workspace_fails(upgraded):
    output = _failed(upgraded("token", "create", "--workspace", "nowhere", "--role", "member"))

    assert "workspace 'nowhere' not found" in output


@pytest.fixture
def two_workspaces(upgraded, store) -> tuple[Api, Api]:
    """Workspaces ``qa`` (holding RB-00001 ``restart-db``) and an empty ``prod``, as owners."""
    upgraded("workspace", "create", "qa")
    upgraded("workspace", "create", "prod")
    qa = _api(store, "qa")
    create_runbook(qa, name="restart-db", status="published")
    return qa, _api(store, "prod")


def test_exported_runbook_imports_into_another_workspace(upgraded, two_workspaces, tmp_path):
    qa, prod = two_workspaces
    bundle = tmp_path / "restart-db.json"

    exported = upgraded("runbook", "export", "RB-00001", "-w", "qa", "-o", str(bundle))
    imported = upgraded("runbook", "import", str(bundle), "-w", "prod")

    assert exported.exit_code == 0, exported.output
    assert imported.exit_code == 0, imported.output
    assert imported.stdout == "RB-00001 restart-db version 1 (draft)\n"
    original = qa.get("/runbooks/restart-db").get_json()
    copy = prod.get("/runbooks/restart-db").get_json()
    assert copy["steps"] == original["steps"]
    assert (copy["title"], copy["category"], copy["status"]) == (original["title"], original["category"], "draft")


def test_export_to_stdout_prints_the_bundle(upgraded, two_workspaces):
    result = upgraded("runbook", "export", "restart-db", "-w", "qa")

    assert result.exit_code == 0, result.output
    bundle = json.loads(result.stdout)
    assert bundle["format"] == "runbook-manager.bundle"
    assert bundle["exported_from"]["key"] == "RB-00001"
    assert bundle["runbook"]["name"] == "restart-db"


def test_export_of_an_unknown_runbook_fails(upgraded, two_workspaces):
    output = _failed(upgraded("runbook", "export", "RB-00077", "-w", "qa"))

    assert "'RB-00077' not found" in output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("Restart the database, then check it.\n", "is not JSON"),
        ("[1, 2, 3]\n", "not a runbook bundle"),
        ('{"title": "Restart the database"}\n', "bundle.format must be 'runbook-manager.bundle'"),
        ('{"format": "runbook-manager.bundle", "format_version": 1, "runbook": {"steps": []}}\n', "bundle.runbook.title"),
        ('{"format": "runbook-manager.bundle", "format_version": 1, "runbook": {"title": "\\ud800"}}\n', "lone UTF-16 surrogate"),
        ('{"format": "runbook-manager.bundle", "format_version": NaN}\n', "NaN is not a JSON number"),
    ],
)
def test_importing_a_file_that_is_not_a_bundle_fails_clearly(upgraded, two_workspaces, tmp_path, content, message):
    _, prod = two_workspaces
    path = tmp_path / "not-a-bundle.json"
    path.write_text(content)

    output = _failed(upgraded("runbook", "import", str(path), "-w", "prod"))

    assert message in output
    assert "Traceback" not in output
    assert prod.get("/runbooks").get_json()["items"] == []


# --- serve --demo --------------------------------------------------------------------------------


def _printed_token(runner: RunnerProcess) -> str:
    """Wait (bounded) for the token line `serve --demo` prints."""

    def token() -> str | None:
        for line in runner.log.read_text(errors="replace").splitlines():
            if line.strip().startswith("token:"):
                return line.split(":", 1)[1].strip()
        return None

    return wait_until(token, timeout=SERVE_START_SECONDS, interval=0.1, what="the demo token")


def _get(runner: RunnerProcess, token: str, path: str) -> Any:
    response = requests.get(f"{runner.url}/api/v1/ws/demo{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.slow
def test_serve_demo_creates_the_demo_once_and_prints_a_usable_token_on_every_start(tmp_path):
    database_url = f"sqlite:///{tmp_path / 'serve.db'}"
    demo = ["--demo", "--no-worker"]

    with RunnerProcess(tmp_path, database_url, args=demo) as first:
        token = _printed_token(first)
        assert token.startswith("rbm_")
        runbook = _get(first, token, "/runbooks/incident-response-database")
        first.stop()
    assert runbook["status"] == "published"
    assert [s["title"] for s in runbook["steps"]] == [
        "Page the on-call engineer via send_email",
        "Snapshot the database logs to the data store",
        "Run a diagnostic web_fetch against /health",
        "Post a status update to #incidents on Slack",
    ]
    assert first.process is not None and first.process.returncode is not None

    with RunnerProcess(tmp_path, database_url, args=demo) as second:
        token = _printed_token(second)
        found = _get(second, token, "/runbooks?q=incident-response-database&include_archived=true")["items"]

    assert [r["name"] for r in found] == ["incident-response-database"]
    assert found[0]["key"] == runbook["key"]


def test_a_store_at_the_first_revision_upgrades_keeping_its_data(cli, store):
    assert cli("db", "upgrade", "--revision", "0001").exit_code == 0
    assert cli("workspace", "create", "acme", "--name", "Acme Corp").exit_code == 0

    result = cli("db", "upgrade")

    assert result.exit_code == 0, result.output
    assert current_revision(store.db.engine) == head_revision()
    assert "ix_deliveries_job_id_event_type" in {index["name"] for index in inspect(store.db.engine).get_indexes("deliveries")}
    assert cli("workspace", "create", "acme", "--name", "Acme Corp").exit_code != 0  # still there
