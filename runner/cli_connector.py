"""``runbook-manager connector …`` and ``manifest validate``: exercise the connector from a shell."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

__all__ = ["connector_group", "manifest_group"]

_connection_options = [
    click.option("--environment", "-e", envvar="RUNBOOK_MANAGER_CONNECTOR_ENVIRONMENT", required=True,
                 help="Target environment (eu-production, eu-qa)."),
    click.option("--base-url", envvar="RUNBOOK_MANAGER_CONNECTOR_BASE_URL", default=None,
                 help="Runner URL; defaults to the environment's URL in the manifest."),
    click.option("--token", envvar="RUNBOOK_MANAGER_CONNECTOR_TOKEN", required=True, help="API token."),
    click.option("--workspace", "-w", envvar="RUNBOOK_MANAGER_CONNECTOR_WORKSPACE", required=True, help="Workspace slug."),
]


def connection_options(fn: Any) -> Any:
    """Add the connection's options (environment, base URL, token, workspace) to a command."""
    for option in reversed(_connection_options):
        fn = option(fn)
    return fn


def _run(operation: str, environment: str, base_url: str | None, token: str, workspace: str, data: dict[str, Any]) -> None:
    """Run an operation and print its output as the flow would receive it (JSON), or the error."""
    from connector import ConnectorError, run

    fields = {"environment": environment, "base_url": base_url, "api_token": token, "workspace": workspace}
    try:
        result = run(operation, fields, data)
    except ConnectorError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc.message}") from exc
    click.echo(json.dumps(result, indent=2, default=str))


def _json_option(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=name) from exc


@click.group("connector")
def connector_group() -> None:
    """Run the connector's operations from a shell; output is printed exactly as a flow receives it."""


@connector_group.command("test")
@connection_options
def connector_test(**conn: Any) -> None:
    """Test the connection: URL, environment, token and workspace."""
    _run("connection.test", **conn, data={})


@connector_group.command("invoke")
@click.argument("runbook")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE", help="A parameter (JSON value or text); repeatable.")
@click.option("--parameters", default=None, help="All parameters as a JSON object.")
@click.option("--wait", is_flag=True, help="Wait for the job to end and print its final status.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait with --wait (at most 300).")
@click.option("--idempotency-key", default=None, help="Reuse to get the same job back on a retry.")
@connection_options
def connector_invoke(runbook: str, params: tuple[str, ...], parameters: str | None, wait: bool, timeout: float,
                     idempotency_key: str | None, **conn: Any) -> None:
    """The Runbook Action action: invoke RUNBOOK and print job.uuid (and the final status with --wait)."""
    values = _json_option(parameters, "--parameters") or {}
    for pair in params:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--param")
        try:
            values[name] = json.loads(raw)
        except ValueError:
            values[name] = raw
    _run("runbook_action.execute", **conn, data={"runbook_action": runbook, "parameters": values, "wait": wait,
                                                   "timeout_seconds": timeout, "idempotency_key": idempotency_key})


@connector_group.command("get-job")
@click.argument("job_uuid")
@connection_options
def connector_get_job(job_uuid: str, **conn: Any) -> None:
    """The Get Job action: status, step timeline and stop message."""
    _run("get_job.execute", **conn, data={"job_uuid": job_uuid})


TRIGGERS = click.Choice(["runbook_action", "runbook_stopped_by_system"])


@connector_group.command("subscribe")
@click.argument("trigger", type=TRIGGERS)
@click.option("--target-url", required=True, help="The flow's webhook URL.")
@click.option("--runbook", "runbooks", multiple=True, required=True, help="Runbook key or name (repeat for the stop trigger).")
@click.option("--parameters-schema", default=None, help="runbook_action: JSON Schema of the parameters.")
@click.option("--title", default=None, help="runbook_action: title if the runbook is created.")
@click.option("--expires-at", default=None, help="ISO 8601 expiry of the subscription.")
@connection_options
def connector_subscribe(trigger: str, target_url: str, runbooks: tuple[str, ...], parameters_schema: str | None,
                        title: str | None, expires_at: str | None, **conn: Any) -> None:
    """Subscribe a flow URL to a trigger; prints the subscription id and its signing secret."""
    data: dict[str, Any] = {"target_url": target_url, "expires_at": expires_at}
    if trigger == "runbook_action":
        if len(runbooks) != 1:
            raise click.BadParameter("the Runbook Action trigger backs exactly one runbook", param_hint="--runbook")
        data.update(runbook=runbooks[0], title=title,
                    parameters=_json_option(parameters_schema, "--parameters-schema") or {"type": "object", "properties": {}})
    else:
        data["runbooks"] = list(runbooks)
    _run(f"{trigger}.subscribe", **conn, data=data)


@connector_group.command("unsubscribe")
@click.argument("subscription_id")
@connection_options
def connector_unsubscribe(subscription_id: str, **conn: Any) -> None:
    """Remove a trigger subscription by id."""
    _run("subscription.unsubscribe", **conn, data={"id": subscription_id})


@connector_group.command("poll")
@click.argument("trigger", type=TRIGGERS)
@click.option("--runbook", "runbooks", multiple=True, required=True, help="Runbook key or name (repeatable for the stop trigger).")
@click.option("--cursor", default=None, help="The cursor printed by the previous poll.")
@connection_options
def connector_poll(trigger: str, runbooks: tuple[str, ...], cursor: str | None, **conn: Any) -> None:
    """Polling fallback: print the trigger outputs after the cursor, and the next cursor."""
    data: dict[str, Any] = {"cursor": cursor}
    if trigger == "runbook_action":
        data["runbook"] = runbooks[0]
    else:
        data["runbooks"] = list(runbooks)
    _run(f"{trigger}.poll", **conn, data=data)


@click.group("manifest")
def manifest_group() -> None:
    """The connector manifest."""


@manifest_group.command("validate")
@click.argument("path", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def manifest_validate(path: Path | None) -> None:
    """Check the manifest (the shipped one by default) and report every error at once."""
    from connector import HANDLERS
    from connector.spec import MANIFEST_PATH, validate_manifest

    target = path or MANIFEST_PATH
    try:
        manifest = json.loads(target.read_text())
    except ValueError as exc:
        raise click.ClickException(f"{target} is not JSON: {exc}") from exc
    errors = validate_manifest(manifest, handlers=set(HANDLERS))
    if errors:
        click.echo(f"{target}: {len(errors)} problem{'s' if len(errors) != 1 else ''}", err=True)
        for error in errors:
            click.echo(f"  - {error}", err=True)
        sys.exit(1)
    counts = f"{len(manifest['triggers'])} triggers, {len(manifest['actions'])} actions"
    click.echo(f"{target}: valid ({counts})")
