"""``runbook-manager``: the command line for operators and deployers."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .auth import Actor, Role
from .config import Settings
from .errors import RunnerError
from .jsonbody import loads
from .runtime import Runtime

__all__ = ["main"]


def _runtime() -> Runtime:
    try:
        return Runtime.from_settings(Settings.from_env())
    except RunnerError as exc:
        raise click.ClickException(exc.detail) from exc


def _local_actor(rt: Runtime, slug: str) -> Actor:
    """Whoever runs the CLI on the server acts as a workspace owner."""
    from .services import tenancy

    workspace = tenancy.get_workspace(rt, slug)
    return Actor(workspace.id, slug, "cli", Role.OWNER, source="cli")


def _fail(exc: RunnerError) -> click.ClickException:
    lines = [exc.detail] + [f"  {e.get('field')}: {e.get('message')}" for e in exc.errors]
    return click.ClickException("\n".join(lines))


workspace_option = click.option(
    "--workspace", "-w", envvar="RUNBOOK_MANAGER_WORKSPACE", default=lambda: Settings.from_env().demo_workspace,
    show_default="RUNBOOK_MANAGER_WORKSPACE or the demo workspace", help="Workspace slug.",
)


@click.group()
def main() -> None:
    """Runbook Manager: store, run and schedule runbooks that call runbooks."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--demo", is_flag=True, help="Create the demo workspace, runbooks and an owner token, and print them.")
@click.option("--no-scheduler", is_flag=True, help="Do not fire cron schedules from this process.")
@click.option("--no-worker", is_flag=True, help="Serve the API only; run `runbook-manager worker` elsewhere.")
@click.option("--workers", type=int, default=None, help="API processes (default RUNBOOK_MANAGER_WEB_WORKERS).")
def serve(host: str, port: int, demo: bool, no_scheduler: bool, no_worker: bool, workers: int | None) -> None:
    """Serve the API, plus (unless told not to) the job and delivery workers and the scheduler in a child process."""
    _share_metrics()
    from . import doorbell
    from .app import create_app
    from .background import BackgroundProcess
    from .migrate import upgrade
    from .server import serve_api

    rt = _runtime()
    settings = rt.settings
    if rt.db.is_sqlite:
        upgrade(rt.db)
    else:
        _require_current_schema(rt)
    lines = [f"Runbook Manager runner for {settings.environment_label} ({settings.environment})",
             f"  URL:       http://{host}:{port}/api/v1", f"  console:   http://{host}:{port}/console",
             f"  database:  {rt.db.url.render_as_string(hide_password=True)}"]
    if demo:
        from .demo import bootstrap

        slug, token = bootstrap(rt)
        lines += [f"  workspace: {slug}", f"  token:     {token}",
                  f"  try:       curl -H 'Authorization: Bearer {token}' http://{host}:{port}/api/v1/ws/{slug}/runbooks"]
    rt.db.dispose()
    background = None if no_worker else BackgroundProcess(scheduler=not no_scheduler)

    def ready() -> None:
        if background is not None:
            background.start()
        click.echo("\n".join(lines), err=False)
        sys.stdout.flush()

    def stop() -> None:
        if background is not None:
            background.stop()

    if background is not None:
        doorbell.install()
    serve_api(lambda: create_app(Settings.from_env()), host=host, port=port, workers=workers or settings.api_processes,
              threads=settings.web_threads, on_ready=ready, on_exit=stop)


def _share_metrics() -> None:
    """Let /metrics add up the counters of every process serve starts (gunicorn workers and the background child)."""
    import os
    import shutil

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    directory = Path(Settings.from_env().var_dir).resolve() / "metrics"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def _require_current_schema(rt: Runtime) -> None:
    from .migrate import current_revision, head_revision

    current, head = current_revision(rt.db.engine), head_revision()
    if current != head:
        raise click.ClickException(f"the database schema is at {current!r}, this code needs {head!r}; run 'runbook-manager db upgrade' first")


@main.command()
@click.option("--with-scheduler", is_flag=True, help="Also fire cron schedules from this process.")
@click.option("--parent-pid", type=int, default=None, hidden=True, help="Exit when this process is gone (used by serve).")
def worker(with_scheduler: bool, parent_pid: int | None) -> None:
    """Run job steps and webhook deliveries (scale-out role; serve runs one itself on SQLite)."""
    _run_roles(jobs=True, deliveries=True, scheduler=with_scheduler, parent_pid=parent_pid)


def _run_roles(*, jobs: bool, deliveries: bool, scheduler: bool, parent_pid: int | None) -> None:
    """Run background roles until SIGTERM/SIGINT (or until the parent process is gone)."""
    from .background import run_roles

    _require_current_schema(_runtime())
    run_roles(jobs=jobs, deliveries=deliveries, scheduler=scheduler, parent_pid=parent_pid)


@main.command()
def scheduler() -> None:
    """Fire cron schedules (scale-out role; on PostgreSQL only the advisory-lock holder fires)."""
    _run_roles(jobs=False, deliveries=False, scheduler=True, parent_pid=None)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from .migrate import current_revision, upgrade

    rt = _runtime()
    upgrade(rt.db, revision)
    click.echo(f"database at revision {current_revision(rt.db.engine)}")


@main.group()
def workspace() -> None:
    """Workspaces."""


@workspace.command("create")
@click.argument("slug")
@click.option("--name", default=None, help="Display name (defaults to the slug).")
def workspace_create(slug: str, name: str | None) -> None:
    """Create workspace SLUG."""
    from .services import tenancy

    try:
        created = tenancy.create_workspace(_runtime(), slug, name=name)
    except RunnerError as exc:
        raise _fail(exc) from exc
    click.echo(created.slug)


@main.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.option("--workspace", "-w", required=True, help="Workspace slug.")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--subject", default=None, help="Who the token acts as (runbook ownership is matched against it).")
def token_create(workspace: str, role: str, subject: str | None) -> None:
    """Create a token and print only the token."""
    from .services import tenancy

    try:
        secret, _ = tenancy.create_token(_runtime(), workspace, role=role, subject=subject)
    except RunnerError as exc:
        raise _fail(exc) from exc
    click.echo(secret)


@main.group()
def runbook() -> None:
    """Runbooks: export and import bundles to promote them between environments."""


@runbook.command("export")
@click.argument("key")
@workspace_option
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File to write (default stdout).")
def runbook_export(key: str, workspace: str, output: Path | None) -> None:
    """Export runbook KEY (or name) as a JSON bundle."""
    from .services import runbooks

    rt = _runtime()
    try:
        bundle = runbooks.export_bundle(rt, _local_actor(rt, workspace), key)
    except RunnerError as exc:
        raise _fail(exc) from exc
    text = json.dumps(bundle, indent=2, default=str) + "\n"
    if output:
        output.write_text(text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@runbook.command("import")
@click.argument("file", type=click.File("r"))
@workspace_option
def runbook_import(file: Any, workspace: str) -> None:
    """Import a bundle FILE (or - for stdin): a new draft, or a new version of the runbook with the same name."""
    from .services import runbooks

    try:
        bundle = loads(file.read())
    except ValueError as exc:  # not JSON, or JSON the runner refuses (runner.jsonbody)
        raise click.ClickException(f"{file.name} is not JSON: {exc}") from exc
    rt = _runtime()
    try:
        result = runbooks.import_runbook(rt, _local_actor(rt, workspace), {"bundle": bundle})
    except RunnerError as exc:
        raise _fail(exc) from exc
    click.echo(f"{result['key']} {result['name']} version {result['version']} ({result['status']})")


# Exit codes of `job run --watch`, by how the job ended.
JOB_EXIT_CODES = {"succeeded": 0, "failed": 1, "stopped": 3, "cancelled": 4}
# Exit code when --timeout passes before the job ends.
JOB_EXIT_STILL_RUNNING = 5
# Exit code when the job could not be started at all (unknown runbook, bad parameters, ...).
JOB_EXIT_NOT_STARTED = 6


class NotStarted(click.ClickException):
    exit_code = JOB_EXIT_NOT_STARTED


def _parse_params(pairs: tuple[str, ...], schema: dict[str, Any]) -> dict[str, Any]:
    """Turn k=v pairs into values: strings for string parameters, JSON (or else the text) otherwise."""
    properties = (schema or {}).get("properties", {})
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--param")
        declared = properties.get(name)
        if isinstance(declared, dict) and declared.get("type") == "string":
            values[name] = raw
            continue
        try:
            values[name] = loads(raw)
        except ValueError:  # not JSON, or JSON the runner refuses (runner.jsonbody, e.g. NaN): the schema check says why
            values[name] = raw
    return values


@main.group()
def job() -> None:
    """Jobs."""


@job.command("run")
@click.argument("key")
@workspace_option
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE", help="A parameter value (repeatable).")
@click.option("--watch", is_flag=True, help="Show each step live until the job ends; the exit code says how it ended.")
@click.option("--timeout", type=float, default=None, help="With --watch: give up watching after this many seconds.")
def job_run(key: str, workspace: str, params: tuple[str, ...], watch: bool, timeout: float | None) -> None:
    """Start a job of runbook KEY (or name) as a person on this server, and optionally watch it.

    Exit codes with --watch: 0 succeeded, 1 failed, 3 stopped by the system,
    4 cancelled, 5 still running when --timeout passed; 6 when the job could
    not be started (unknown runbook, invalid parameters, ...).
    """
    from .engine import control
    from .services import runbooks

    rt = _runtime()
    try:
        actor = _local_actor(rt, workspace)
        schema = runbooks.get(rt, actor, key)["parameters"]
        started, _ = control.invoke(rt, actor, key, {"parameters": _parse_params(params, schema)}, idempotency_key=None,
                                    trigger_kind="person", require_callable=False)
    except RunnerError as exc:
        raise NotStarted(_fail(exc).message) from exc
    click.echo(started["uuid"])
    if not watch:
        return
    from .watch import watch_job

    status = watch_job(rt, actor, started["uuid"], timeout=timeout, echo=lambda line: click.echo(line, err=True))
    sys.exit(JOB_EXIT_CODES.get(status, JOB_EXIT_STILL_RUNNING))


def _register_groups() -> None:
    from .cli_connector import connector_group, manifest_group

    main.add_command(connector_group)
    main.add_command(manifest_group)


_register_groups()


if __name__ == "__main__":  # pragma: no cover
    main()
