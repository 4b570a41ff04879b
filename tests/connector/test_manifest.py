"""The shipped manifest: valid, fully documented, wired to the handlers both ways, and declaring what the help page promises."""
from __future__ import annotations

import ast
import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import connector
from connector.spec import MANIFEST_PATH, load_manifest, validate_manifest
from runner.cli import main
from tests.connector.helpers import is_of_type, operation

CONNECTOR_DIR = Path(connector.__file__).resolve().parent


def _manifest() -> dict[str, Any]:
    return copy.deepcopy(load_manifest())


def _named_handlers(node: Any) -> Iterator[str]:
    """Every handler name anywhere in the manifest: ``handler`` keys and the values of ``operations``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "handler" and isinstance(value, str):
                yield value
            elif key == "operations" and isinstance(value, dict):
                yield from value.values()
            else:
                yield from _named_handlers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _named_handlers(item)


def _fields(fields: list[dict[str, Any]], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for field in fields:
        path = f"{where}.{field['name']}"
        yield path, field
        yield from _fields(field.get("properties", []), path)


def _all_inputs() -> list[tuple[str, dict[str, Any]]]:
    manifest = load_manifest()
    found = list(_fields(manifest["connection"]["fields"], "connection"))
    for kind in ("triggers", "actions"):
        for item in manifest[kind]:
            found += _fields(item["input"], f"{kind}.{item['id']}.input")
    return found


def _all_outputs() -> list[tuple[str, dict[str, Any]]]:
    manifest = load_manifest()
    return [pair for kind in ("triggers", "actions") for item in manifest[kind]
            for pair in _fields(item["output"], f"{kind}.{item['id']}.output")]


def _field(kind: str, op_id: str, section: str, dotted: str) -> dict[str, Any] | None:
    fields = operation(kind, op_id)[section]
    found = None
    for part in dotted.split("."):
        found = next((f for f in fields if f["name"] == part), None)
        if found is None:
            return None
        fields = found.get("properties", [])
    return found


def test_shipped_manifest_validates() -> None:
    assert validate_manifest(_manifest(), handlers=set(connector.HANDLERS)) == []


def test_every_handler_the_manifest_names_is_implemented() -> None:
    missing = sorted(set(_named_handlers(load_manifest())) - set(connector.HANDLERS))
    assert not missing, f"named in the manifest but missing from connector.HANDLERS: {missing}"


def test_every_implemented_handler_is_reachable_from_the_manifest() -> None:
    unreachable = sorted(set(connector.HANDLERS) - set(_named_handlers(load_manifest())))
    assert not unreachable, f"in connector.HANDLERS but named by no manifest operation: {unreachable}"


@pytest.mark.parametrize(("path", "field"), _all_inputs() + _all_outputs(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_field_has_a_title_and_a_description(path: str, field: dict[str, Any]) -> None:
    for key in ("title", "description"):
        assert isinstance(field.get(key), str) and field[key].strip(), f"{path} has no {key}"


@pytest.mark.parametrize(("path", "field"), _all_outputs(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_output_has_a_sample_of_its_declared_type(path: str, field: dict[str, Any]) -> None:
    assert "sample" in field, f"{path} has no sample"
    assert is_of_type(field["sample"], field["type"]), f"{path}: sample {field['sample']!r} is not of type {field['type']}"


@pytest.mark.parametrize(("path", "field"), [(p, f) for p, f in _all_outputs() if f.get("properties")],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_object_output_samples_have_exactly_the_declared_properties(path: str, field: dict[str, Any]) -> None:
    assert set(field["sample"]) == {p["name"] for p in field["properties"]}, path


def test_connection_offers_eu_production_and_eu_qa_each_with_a_base_url() -> None:
    connection = load_manifest()["connection"]
    environments = {e["id"]: e for e in connection["environments"]}
    assert {k: e["label"] for k, e in environments.items()} == {"eu-production": "EU Production", "eu-qa": "EU QA"}
    assert all(e["default_base_url"].startswith(("http://", "https://")) for e in environments.values())
    assert len({e["default_base_url"] for e in environments.values()}) == 2, "each environment needs its own runner URL"
    options = next(f for f in connection["fields"] if f["name"] == "environment")["options"]
    assert {o["value"]: o["label"] for o in options} == {k: e["label"] for k, e in environments.items()}


@pytest.mark.parametrize(("name", "expected"), [
    ("environment", {"type": "string", "required": True}),
    ("api_token", {"type": "string", "required": True, "secret": True}),
    ("workspace", {"type": "string", "required": True}),
    ("base_url", {"type": "string", "required": False}),
])
def test_connection_declares_its_fields(name: str, expected: dict[str, Any]) -> None:
    field = next((f for f in load_manifest()["connection"]["fields"] if f["name"] == name), None)
    assert field is not None, f"the connection has no {name!r} field"
    assert {k: field.get(k, False) for k in expected} == expected


def test_manifest_declares_exactly_the_triggers_and_actions_of_the_help_page() -> None:
    manifest = load_manifest()
    assert sorted(t["id"] for t in manifest["triggers"]) == ["runbook_action", "runbook_stopped_by_system"]
    assert sorted(a["id"] for a in manifest["actions"]) == ["get_job", "runbook_action"]


@pytest.mark.parametrize(("kind", "op_id", "name", "expected"), [
    ("triggers", "runbook_action", "parameters", {"type": "object", "required": True}),
    ("triggers", "runbook_stopped_by_system", "runbooks", {"type": "array", "required": True, "min_items": 1}),
    ("actions", "runbook_action", "runbook_action", {"type": "string", "required": True}),
    ("actions", "runbook_action", "parameters", {"type": "object"}),
    ("actions", "runbook_action", "wait", {"type": "boolean", "required": False}),
    ("actions", "runbook_action", "timeout_seconds", {"type": "number", "required": False}),
    ("actions", "get_job", "job_uuid", {"type": "string", "required": True}),
])
def test_operation_declares_its_input(kind: str, op_id: str, name: str, expected: dict[str, Any]) -> None:
    field = _field(kind, op_id, "input", name)
    assert field is not None, f"{kind}.{op_id} has no input {name!r}"
    assert {k: field.get(k, False) for k in expected} == expected


def test_runbook_action_input_picks_from_a_list_of_callable_runbooks() -> None:
    field = _field("actions", "runbook_action", "input", "runbook_action")
    assert field["pick_list"]["handler"] in connector.HANDLERS


def test_runbook_action_parameters_follow_the_chosen_runbooks_schema() -> None:
    field = _field("actions", "runbook_action", "input", "parameters")
    assert field["dynamic_schema"]["handler"] in connector.HANDLERS
    assert field["dynamic_schema"]["depends_on"] == ["runbook_action"]


@pytest.mark.parametrize(("kind", "op_id", "dotted", "type_"), [
    ("triggers", "runbook_action", "parameters", "object"),
    ("triggers", "runbook_action", "job.uuid", "string"),
    ("triggers", "runbook_action", "lineage.parent_job_uuid", "string"),
    ("triggers", "runbook_action", "lineage.root_job_uuid", "string"),
    ("triggers", "runbook_action", "lineage.depth", "integer"),
    ("triggers", "runbook_stopped_by_system", "job.uuid", "string"),
    ("triggers", "runbook_stopped_by_system", "message", "string"),
    ("triggers", "runbook_stopped_by_system", "stop_reason", "string"),
    ("triggers", "runbook_stopped_by_system", "runbook.key", "string"),
    ("triggers", "runbook_stopped_by_system", "runbook.version", "integer"),
    ("triggers", "runbook_stopped_by_system", "stopped_at", "string"),
    ("triggers", "runbook_stopped_by_system", "step", "object"),
    ("triggers", "runbook_stopped_by_system", "environment", "string"),
    ("triggers", "runbook_stopped_by_system", "lineage.parent_job_uuid", "string"),
    ("triggers", "runbook_stopped_by_system", "lineage.root_job_uuid", "string"),
    ("triggers", "runbook_stopped_by_system", "lineage.depth", "integer"),
    ("actions", "runbook_action", "job.uuid", "string"),
    ("actions", "runbook_action", "status", "string"),
    ("actions", "runbook_action", "finished", "boolean"),
    ("actions", "runbook_action", "message", "string"),
    ("actions", "get_job", "job.uuid", "string"),
    ("actions", "get_job", "status", "string"),
    ("actions", "get_job", "steps", "array"),
    ("actions", "get_job", "message", "string"),
    ("actions", "get_job", "lineage.root_job_uuid", "string"),
])
def test_operation_declares_its_output(kind: str, op_id: str, dotted: str, type_: str) -> None:
    field = _field(kind, op_id, "output", dotted)
    assert field is not None, f"{kind}.{op_id} declares no output {dotted!r}"
    assert field["type"] == type_


def test_cli_validates_the_shipped_manifest() -> None:
    result = CliRunner().invoke(main, ["manifest", "validate"])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output and str(MANIFEST_PATH) in result.output


def _broken_copy(tmp_path: Path, break_it: Any) -> Path:
    manifest = _manifest()
    break_it(manifest)
    path = tmp_path / "connector.json"
    path.write_text(json.dumps(manifest))
    return path


def _schema_problems(manifest: dict[str, Any]) -> None:
    manifest["version"] = "one"
    del manifest["connection"]["fields"][0]["description"]
    manifest["triggers"][0]["delivery"] = "carrier-pigeon"
    manifest["actions"][1]["output"][0]["type"] = "uuid"


def _semantic_problems(manifest: dict[str, Any]) -> None:
    manifest["actions"][0]["operations"]["execute"] = "runbook_action.teleport"
    manifest["actions"][1]["output"][1]["sample"] = 42
    manifest["actions"].append(copy.deepcopy(manifest["actions"][1]))


def _mixed_problems(manifest: dict[str, Any]) -> None:
    del manifest["connection"]["fields"][0]["description"]
    manifest["actions"][0]["operations"]["execute"] = "runbook_action.teleport"
    manifest["actions"][1]["output"][1]["sample"] = 42


@pytest.mark.parametrize(("break_it", "expected"), [
    (_schema_problems, ["version", "description", "carrier-pigeon", "uuid"]),
    (_semantic_problems, ["runbook_action.teleport", "42", "'get_job' is declared twice"]),
    (_mixed_problems, ["description", "runbook_action.teleport", "42"]),
], ids=["schema", "semantic", "schema-and-semantic"])
def test_cli_reports_every_problem_of_a_broken_manifest_at_once(tmp_path: Path, break_it: Any, expected: list[str]) -> None:
    path = _broken_copy(tmp_path, break_it)
    result = CliRunner().invoke(main, ["manifest", "validate", str(path)])
    assert result.exit_code == 1, result.output
    problems = [line for line in result.output.splitlines() if line.startswith("  - ")]
    assert len(problems) >= len(expected), result.output
    for needle in expected:
        assert any(needle in line for line in problems), f"{needle!r} is not reported:\n{result.output}"


def test_connector_package_imports_nothing_from_the_runner() -> None:
    offending = []
    for source in sorted(CONNECTOR_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offending += [f"{source.name}:{node.lineno} imports {n}" for n in names if n == "runner" or n.startswith("runner.")]
    assert not offending, offending


def test_connector_works_with_nothing_of_the_runner_installed() -> None:
    """Import the connector and run an operation in a Python where ``runner`` cannot be imported."""
    program = (
        "import sys; sys.modules['runner'] = None\n"
        "import connector\n"
        "try:\n"
        "    connector.run('runbook_stopped_by_system.subscribe', "
        "{'environment': 'eu-qa', 'api_token': 't', 'workspace': 'acme'}, {'target_url': 'http://x', 'runbooks': []})\n"
        "except connector.ConfigurationError as exc:\n"
        "    print('refused:', exc)\n"
        "print(len(connector.HANDLERS))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=CONNECTOR_DIR.parent, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["refused: runbooks must list at least one runbook key or name", str(len(connector.HANDLERS))]
