"""Parameters (schema, placeholders, values), lint advice, version diffs and text import."""
from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from runner.demo import DEMO_RUNBOOKS
from runner.errors import InvalidInput
from runner.schemas.runbook import RunbookBodySchema
from runner.services.diff import diff_bodies
from runner.services.lint import MAX_STEPS, lint
from runner.services.params import check_schema, validate_values
from runner.services.textimport import parse_procedure
from tests.conftest import problem
from tests.runner.helpers import CLEAN_STEPS, create_runbook, runbook_body


def _body(steps: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """A loaded runbook body (orders and defaults filled in) as the services see it."""
    return RunbookBodySchema().load({"title": "Lint subject", "steps": steps, **fields})


# --- the parameters schema -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"type": "object", "properties": {"x": {"type": "strnig"}}}, "parameters.properties.x.type"),
        ({"type": "object", "required": "x"}, "parameters.required"),
        ({"type": "string"}, "parameters.type"),
        ({"type": "array", "items": {"type": "string"}}, "parameters.type"),
        ({"type": "object", "properties": {"bad-name": {"type": "string"}}}, "parameters.properties"),
        ({"type": "object", "properties": {"x": {"type": "string", "pattern": "["}}}, "parameters.properties.x.pattern"),
        ({"type": "object", "properties": {"x": {"type": "string", "pattern": "a{99999999999}"}}}, "parameters.properties.x.pattern"),
        ({"type": "object", "$ref": "#", "properties": {"x": {"type": "string"}}}, "parameters"),
        ({"type": "object", "not": {"$ref": "#"}}, "parameters"),
        ({"type": "object", "if": {"$ref": "#"}}, "parameters"),
        ({"type": "object", "properties": {"x": {"$ref": "#/properties/x"}}}, "parameters"),
        ({"type": "object", "properties": {"x": {"type": "string"}, "y": {"$ref": "#/properties/x/type"}}}, "parameters"),
        ({"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}}, "parameters"),
        ({"type": "object", "properties": {"x": {"$ref": "https://example.com/x"}}}, "parameters"),
        ("not a schema", "parameters"),
    ],
)
def test_invalid_parameters_schema_is_refused(api, parameters, field):
    response = api.post("/runbooks", json=runbook_body(parameters=parameters))

    body = problem(response)
    assert response.status_code == 422
    assert field in [e["field"] for e in body["errors"]], body["errors"]
    assert api.get("/runbooks").get_json()["items"] == []


def test_valid_parameters_schema_is_stored(api):
    schema = {"type": "object", "required": ["service"], "properties": {"service": {"type": "string", "minLength": 1}}}

    created = create_runbook(api, parameters=schema, steps=[{"title": "Restart {{ params.service }}"}])

    assert api.get(f"/runbooks/{created['key']}").get_json()["parameters"] == schema


@pytest.mark.parametrize("pattern", ["a{99999999999}", "(unclosed"])
def test_a_value_of_format_regex_that_does_not_compile_is_refused_naming_it(pattern):
    with pytest.raises(InvalidInput) as refused:
        validate_values({"type": "object", "properties": {"p": {"type": "string", "format": "regex"}}}, {"p": pattern})

    assert refused.value.errors == [{"field": "parameters.p", "message": f"{pattern!r} is not a 'regex'", "value": pattern}]


def test_a_schema_for_a_tree_of_values_is_stored_and_checks_every_level():
    """A reference applied again to a part of the value is no loop: the check goes down the tree and ends."""
    tree = {"type": "object", "$defs": {"node": {"type": "object", "properties": {"name": {"type": "string"},
                                                                                  "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
            "properties": {"root": {"$ref": "#/$defs/node"}}}

    assert check_schema(tree) == []
    assert validate_values(tree, {"root": {"children": [{"children": [{"name": "leaf"}]}]}})["root"]["children"][0]["children"] == [{"name": "leaf"}]
    with pytest.raises(InvalidInput) as refused:
        validate_values(tree, {"root": {"children": [{"children": [{"name": 7}]}]}})
    assert [e["field"] for e in refused.value.errors] == ["parameters.root.children.0.children.0.name"]


@pytest.mark.parametrize(
    ("step", "order"),
    [
        ({"title": "Restart {{ params.region }}"}, 2),
        ({"title": "Restart the cache", "description": "in {{params.region}}"}, 2),
        ({"title": "Restart the cache", "verification": "{{ params.region }} answers"}, 2),
        ({"title": "Call the API", "action": {"type": "http", "url": "https://api.example/{{ params.region }}"}}, 2),
    ],
)
def test_placeholder_naming_an_undeclared_parameter_is_refused(api, step, order):
    steps = [{"title": "Page the on-call engineer"}, step]
    parameters = {"type": "object", "properties": {"service": {"type": "string"}}}

    response = api.post("/runbooks", json=runbook_body(steps=steps, parameters=parameters))

    body = problem(response)
    assert response.status_code == 422
    assert f"step {order}" in body["detail"]
    assert "'region'" in body["detail"]
    assert body["errors"] == [{"field": f"steps.{order - 1}", "message": body["errors"][0]["message"], "value": "region"}]


def test_edit_introducing_an_undeclared_placeholder_is_refused_and_changes_nothing(api):
    key = create_runbook(api)["key"]

    response = api.patch(f"/runbooks/{key}", json={"steps": [{"title": "Restart {{ params.node }}"}]})

    assert problem(response)["status"] == 422
    current = api.get(f"/runbooks/{key}").get_json()
    assert current["version"] == 1
    assert [s["title"] for s in current["steps"]] == [s["title"] for s in CLEAN_STEPS]


# --- parameter values ----------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "required": ["service", "replicas"],
    "additionalProperties": False,
    "properties": {
        "service": {"type": "string"},
        "replicas": {"type": "integer", "minimum": 1},
        "severity": {"type": "string", "enum": ["sev1", "sev2"], "default": "sev2"},
        "window": {"type": "object", "properties": {"minutes": {"type": "integer", "default": 30}}, "default": {}},
    },
}


def test_validate_values_lists_every_error_at_once():
    with pytest.raises(InvalidInput) as caught:
        validate_values(SCHEMA, {"replicas": 0, "severity": "sev9", "colour": "red"})

    fields = sorted(e["field"] for e in caught.value.errors)
    assert fields == ["parameters.colour", "parameters.replicas", "parameters.service", "parameters.severity"]
    for field in fields:
        assert field in caught.value.detail


def test_validate_values_applies_defaults_without_touching_the_input():
    given_values = {"service": "orders-db", "replicas": 2}

    completed = validate_values(SCHEMA, given_values)

    assert completed == {"service": "orders-db", "replicas": 2, "severity": "sev2", "window": {"minutes": 30}}
    assert given_values == {"service": "orders-db", "replicas": 2}


@pytest.mark.parametrize("schema", [{"$ref": "#/nowhere"}, {"type": "object", "properties": {"x": {"$ref": "https://example.com/x"}}},
                                    {"type": "object", "$ref": "#"},
                                    {"type": "object", "properties": {"x": {"type": "object", "properties": {"y": {"$ref": "#/properties/x/properties/y"}}}}},
                                    {"type": "object", "properties": {"x": {"type": "object", "properties": {"y": {"$ref": "#/properties/x/type"}}}}}],
                         ids=["pointer-to-nowhere", "remote-reference", "reference-to-itself", "reference-to-itself-deeper-in",
                              "reference-to-a-string"])
def test_validate_values_refuses_when_the_schema_cannot_be_applied(schema):
    with pytest.raises(InvalidInput) as refused:
        validate_values(schema, {"x": {"y": "orders-db"}})

    assert refused.value.errors == [{"field": "parameters", "message": "the runbook's parameters schema is unusable", "value": None}]


@pytest.mark.parametrize("values", [["service"], "service=orders-db", None, 3])
def test_validate_values_refuses_a_non_object(values):
    with pytest.raises(InvalidInput) as caught:
        validate_values(SCHEMA, values)

    assert caught.value.errors == [{"field": "parameters", "message": "not an object", "value": values}]


def test_validate_values_refuses_values_for_a_runbook_without_parameters():
    with pytest.raises(InvalidInput) as caught:
        validate_values({}, {"service": "orders-db"})

    assert caught.value.errors[0]["field"] == "parameters.service"
    assert validate_values({}, {}) == {}


# --- lint ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "code", "quoted"),
    [
        ({"title": "Restart the service and then verify it"}, "compound_step", "does several things"),
        ({"title": "Stop the writer, then flush the queue"}, "compound_step", "does several things"),
        ({"title": "Drain and cordon and reboot the node"}, "compound_step", "does several things"),
        ({"title": "Handle the problem"}, "vague_step", "vague"),
        ({"title": "Restart the workers as needed"}, "vague_step", "vague"),
        ({"title": "Make sure someone pages the database team"}, "ambiguous_owner", "who acts"),
        ({"title": "The cache must be flushed"}, "not_imperative", "imperative"),
        ({"title": "Open the status page", "description": "It is at https://status.example.com/db"}, "hard_coded_value", "'https://status.example.com/db'"),
        ({"title": "Resume writes at 2026-01-05 09:00"}, "hard_coded_value", "timestamp"),
        ({"title": "Wait until replication lag is below 500ms"}, "hard_coded_value", "'500ms'"),
        ({"title": "Scale out when CPU passes 80%"}, "hard_coded_value", "'80%'"),
        ({"title": "Drop the old partition", "is_destructive": True}, "destructive_without_rollback", "no rollback note"),
    ],
)
def test_lint_rule_fires_on_a_positive_example(step, code, quoted):
    warnings = lint(_body([CLEAN_STEPS[0], step]))

    matching = [w for w in warnings if w["code"] == code]
    assert len(matching) == 1, warnings
    assert matching[0]["step"] == 2
    assert quoted in matching[0]["message"]


def test_lint_warns_about_more_than_the_maximum_of_steps():
    steps = [{"title": f"Check replica {chr(65 + i)} of the cluster"} for i in range(MAX_STEPS + 1)]

    assert [w["code"] for w in lint(_body(steps))] == ["too_many_steps"]
    assert lint(_body(steps[:MAX_STEPS])) == []


def test_lint_warns_about_an_unused_parameter():
    parameters = {"type": "object", "properties": {"service": {"type": "string"}, "region": {"type": "string"}}}

    warnings = lint(_body([{"title": "Restart {{ params.service }}"}], parameters=parameters))

    assert warnings == [{"code": "unused_parameter", "step": None, "message": "parameter 'region' is declared but no step uses it"}]


@pytest.mark.parametrize("spec", DEMO_RUNBOOKS, ids=[s["name"] for s in DEMO_RUNBOOKS])
def test_lint_is_quiet_on_a_clean_runbook(spec):
    assert lint(RunbookBodySchema().load(spec)) == []


def test_lint_ignores_values_written_as_placeholders():
    parameters = {"type": "object", "properties": {"url": {"type": "string"}, "threshold": {"type": "string"}}}
    steps = [{"title": "Open {{ params.url }}", "description": "Wait until lag is below {{ params.threshold }}"}]

    assert lint(_body(steps, parameters=parameters)) == []


def test_lint_warnings_come_with_the_saved_runbook_and_never_refuse_it(api):
    response = api.post("/runbooks", json=runbook_body(steps=[{"title": "Handle the problem"}]))

    assert response.status_code == 201
    assert [(w["code"], w["step"]) for w in response.get_json()["lint"]] == [("vague_step", 1)]
    assert api.get(f"/runbooks/{response.get_json()['key']}").get_json()["lint"] == response.get_json()["lint"]


# --- diff_bodies ---------------------------------------------------------------------------------


def test_diff_of_identical_bodies_has_only_unchanged_steps():
    body = _body(CLEAN_STEPS)

    diff = diff_bodies(body, body)

    assert diff["summary"] == {"added": 0, "removed": 0, "changed": 0, "unchanged": 2}
    assert diff["runbook"] == {}
    assert all(e["fields"] == {} for e in diff["steps"])


def test_diff_of_an_inserted_step_keeps_the_others_unchanged():
    old = _body(CLEAN_STEPS)
    new = _body([CLEAN_STEPS[0], {"title": "Take a snapshot of the volume"}, CLEAN_STEPS[1]])

    diff = diff_bodies(old, new)

    assert [(e["change"], e["from_order"], e["to_order"]) for e in diff["steps"]] == [
        ("unchanged", 1, 1), ("added", None, 2), ("unchanged", 2, 3),
    ]
    assert diff["steps"][1]["step"]["title"] == "Take a snapshot of the volume"


def test_diff_of_a_removed_step_carries_the_removed_step():
    diff = diff_bodies(_body(CLEAN_STEPS), _body(CLEAN_STEPS[1:]))

    assert [(e["change"], e["from_order"], e["to_order"]) for e in diff["steps"]] == [("removed", 1, None), ("unchanged", 2, 1)]
    assert diff["steps"][0]["step"]["title"] == CLEAN_STEPS[0]["title"]


def test_diff_of_multi_line_text_marks_each_line():
    old = _body([{"title": "Restart the primary database", "description": "Stop writes\nRestart\nStart writes"}])
    new = _body([{"title": "Restart the primary database", "description": "Stop writes\nRestart with --safe\nStart writes"}])

    change = diff_bodies(old, new)["steps"][0]

    assert change["change"] == "changed"
    assert change["fields"]["description"]["lines"] == ["  Stop writes", "- Restart", "+ Restart with --safe", "  Start writes"]


def test_diff_reports_changed_runbook_fields_and_non_text_step_fields():
    old = _body(CLEAN_STEPS)
    new = _body([{**CLEAN_STEPS[0], "est_minutes": 8}, CLEAN_STEPS[1]], title="Lint subject, revised", callable=True)

    diff = diff_bodies(old, new)

    assert diff["runbook"]["title"]["lines"] == ["- Lint subject", "+ Lint subject, revised"]
    assert diff["runbook"]["callable"] == {"from": False, "to": True}
    assert diff["steps"][0]["fields"] == {"est_minutes": {"from": 5, "to": 8}}


# --- parse_procedure -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "title"),
    [
        ("# Rotate the TLS certificate", "Rotate the TLS certificate"),
        ("   ### Rotate the TLS certificate ###", "Rotate the TLS certificate"),
        ("## Rotate the TLS certificate   ", "Rotate the TLS certificate"),
        ("#\tRotate   the TLS certificate", "Rotate   the TLS certificate"),
        ("#Rotate the TLS certificate", None),  # no space after the #s: not a heading
        ("    # Rotate the TLS certificate", None),  # indented four spaces: not a heading
        ("# ###", None),
        # A long run of spaces between the text and the end took a cubic search (minutes for a few thousand).
        ("# a" + " " * 1_500 + "b" + " " * 1_500, "a" + " " * 1_500 + "b"),
    ],
)
def test_parse_procedure_takes_the_first_markdown_heading_as_the_title(heading, title):
    parsed = parse_procedure(heading + "\n\n1. Drain the node\n2. Reboot the node\n")

    assert parsed["title"] == title
    assert [s["title"] for s in parsed["steps"]] == ["Drain the node", "Reboot the node"]


@pytest.mark.parametrize(
    ("text", "titles"),
    [
        ("1. Page the on-call engineer. 2. Snapshot the logs. 3. Post a status update.",
         ["Page the on-call engineer", "Snapshot the logs", "Post a status update"]),
        ("1) Drain the node\n2) Reboot the node\n", ["Drain the node", "Reboot the node"]),
        ("Steps:\n  1. Drain the node\n  2. Reboot the node", ["Drain the node", "Reboot the node"]),
        ("1. Drain node 2. Wait for it\n2. Reboot node 2\n", ["Drain node 2. Wait for it", "Reboot node 2"]),
        ("- [ ] Drain the node\n- [x] Reboot the node\n* Verify the node", ["Drain the node", "Reboot the node", "Verify the node"]),
        ("In 2024 we had 3 outages. 1. Drain the node 2. Reboot it", ["Drain the node", "Reboot it"]),
    ],
)
def test_parse_procedure_finds_the_steps(text, titles):
    assert [s["title"] for s in parse_procedure(text)["steps"]] == titles


def test_parse_procedure_keeps_continuation_lines_as_the_description():
    parsed = parse_procedure("# Reboot a node\nWhen a node hangs.\n\n1. Drain the node\n   Use kubectl drain.\n2. Reboot it\n")

    assert parsed["title"] == "Reboot a node"
    assert parsed["description"] == "When a node hangs."
    assert parsed["steps"] == [{"title": "Drain the node", "description": "Use kubectl drain."}, {"title": "Reboot it", "description": ""}]


def test_parse_procedure_moves_an_overlong_first_line_into_the_description():
    line = "Restart " + "the very important service " * 10

    step = parse_procedure(f"1. {line}\n2. Verify it")["steps"][0]

    assert len(step["title"]) == 200
    assert step["title"].endswith("…")
    assert step["description"] == line.strip()


@pytest.mark.parametrize("text", ["", "   ", "Restart the database.", "2. Drain the node\n3. Reboot it", "# Only a heading"])
def test_parse_procedure_refuses_text_without_steps(text):
    with pytest.raises(InvalidInput) as caught:
        parse_procedure(text)

    assert caught.value.errors[0]["field"] == "text"


# One word of a title: no whitespace, no control or line-break characters; often a number
# marker such as "2." so titles like "Reboot node 2. Wait" come up.
_WORD = st.one_of(
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1, max_size=12),
    st.from_regex(r"\d{1,2}[.)]", fullmatch=True),
)
_TITLE = st.lists(_WORD, min_size=1, max_size=8).map(" ".join).filter(lambda t: not t.endswith("."))
_INLINE_MARKER = re.compile(r"(?:^|\s)\d{1,3}[.)]\s")


@given(st.lists(_TITLE, min_size=1, max_size=15))
def test_numbered_lines_parse_back_to_their_titles(titles):
    # A one-line text is read inline by design ("1. a 2. b" is two steps), so a lone
    # title that itself holds a " 2. " marker is ambiguous; one item a line is not.
    assume(len(titles) > 1 or not _INLINE_MARKER.search(titles[0]))
    text = "\n".join(f"{n}. {title}" for n, title in enumerate(titles, start=1))

    parsed = parse_procedure(text)

    assert [s["title"] for s in parsed["steps"]] == titles
    assert all(s["description"] == "" for s in parsed["steps"])
