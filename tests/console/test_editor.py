"""The Steps editor: every field round-trips, buttons reorder and delete, Save bumps the version, errors sit by their field."""
from __future__ import annotations

import html as htmllib
import json
import re

import pytest

from tests.console.conftest import form_fields, page
from tests.runner.helpers import create_runbook

FULL_STEPS = [
    {"title": "Announce the restart in #ops", "description": "Post **before** you start.", "owner_role": "operator",
     "est_minutes": 2, "verification": "The post is pinned", "rollback_note": "Post an all-clear", "requires_approval": False,
     "is_destructive": False, "idempotent": True, "timeout_seconds": 600, "action": {"type": "manual"}},
    {"title": "Drain the load balancer pool", "owner_role": "admin", "est_minutes": 1.5, "requires_approval": True,
     "is_destructive": True, "rollback_note": "Re-enable the pool",
     "action": {"type": "http", "method": "POST", "url": "https://lb.example.com/pools/{{ params.region }}/drain",
                "headers": {"X-Reason": "restart"}, "body": {"region": "{{ params.region }}", "force": True},
                "timeout_seconds": 5, "retries": 3, "backoff_seconds": 2, "backoff_factor": 3, "backoff_max_seconds": 30,
                "expected_status": [200, 202]}},
    {"title": "Let the connections close", "action": {"type": "wait", "seconds": 30}},
]
PARAMETERS = {"type": "object", "required": ["region"], "properties": {"region": {"type": "string"}}}


def _step_section(html: str, position: int) -> str:
    """The HTML of one step of the editor, up to the next step."""
    start = html.index(f'id="f-steps-{position}" data-step')
    following = re.compile(r'id="f-steps-\d+" data-step').search(html, start + 10)
    return htmllib.unescape(html[start:following.start() if following else html.index('id="step-template"')])


def _save_edited(console, api, changes: dict[str, str]) -> tuple[object, dict]:
    """Open a new runbook's editor, change some fields as a person would, press Save; return the answer and the runbook."""
    created = create_runbook(api)
    fields = form_fields(console.get(f"/runbooks/{created['key']}"), "editor")
    return console.post(f"/runbooks/{created['key']}", {**fields, **changes, "op": "save"}), created


def _version(api, created: dict) -> int:
    return api.get(f"/runbooks/{created['key']}").get_json()["version"]


def test_saving_unchanged_fields_keeps_every_step_field(console, api):
    created = create_runbook(api, steps=FULL_STEPS, parameters=PARAMETERS, max_duration_seconds=3600,
                             environments=["eu-qa"], callable=True)
    fields = form_fields(console.get(f"/runbooks/{created['key']}"), "editor")

    answer = console.post(f"/runbooks/{created['key']}", {**fields, "op": "save"})

    assert answer.status_code == 303, page(answer).text
    v1 = api.get(f"/runbooks/{created['key']}/versions/1").get_json()["body"]
    v2 = api.get(f"/runbooks/{created['key']}/versions/2").get_json()["body"]
    assert v2 == v1


def test_adding_steps_with_every_field_saves_a_new_version(console, api):
    target = create_runbook(api, "Flush the CDN cache", status="published", callable=True)
    created = create_runbook(api, steps=[], parameters=PARAMETERS)
    fields = form_fields(console.get(f"/runbooks/{created['key']}"), "editor")
    fields.update({
        "steps-0-title": "Page the on-call engineer", "steps-0-description": "Use `send_email`.", "steps-0-owner_role": "operator",
        "steps-0-est_minutes": "2.5", "steps-0-verification": "They acknowledged", "steps-0-rollback_note": "Page again",
        "steps-0-requires_approval": "on", "steps-0-timeout_seconds": "900", "steps-0-action-type": "manual",
        "steps-1-title": "Call the health endpoint of {{ params.region }}", "steps-1-action-type": "http", "steps-1-action-method": "GET",
        "steps-1-action-url": "https://{{ params.region }}.example.com/health", "steps-1-action-headers": "Accept: application/json",
        "steps-1-action-body": "", "steps-1-action-retries": "2", "steps-1-action-expected_status": "200, 204", "steps-1-is_destructive": "on",
        "steps-2-title": "Flush the cache", "steps-2-action-type": "runbook", "steps-2-action-runbook": target["name"],
        "steps-2-action-parameters": "{}", "steps-2-action-wait": "on",
        "steps-3-title": "Wait for DNS", "steps-3-action-type": "wait", "steps-3-action-seconds": "60",
    })

    answer = console.post(f"/runbooks/{created['key']}", {**fields, "op": "save"})

    assert answer.status_code == 303, page(answer).text
    saved = api.get(f"/runbooks/{created['key']}").get_json()
    assert saved["version"] == 2
    first, http, child, wait = saved["steps"]
    assert (first["owner_role"], first["est_minutes"], first["requires_approval"], first["timeout_seconds"]) == ("operator", 2.5, True, 900)
    assert (first["verification"], first["rollback_note"], first["action"]) == ("They acknowledged", "Page again", {"type": "manual"})
    assert http["is_destructive"] is True
    assert http["action"] == {"type": "http", "method": "GET", "url": "https://{{ params.region }}.example.com/health",
                              "headers": {"Accept": "application/json"}, "retries": 2, "expected_status": [200, 204],
                              "backoff_seconds": 1.0, "backoff_factor": 2.0, "backoff_max_seconds": 60.0}
    assert child["action"] == {"type": "runbook", "runbook": target["name"], "parameters": {}, "wait": True}
    assert wait["action"] == {"type": "wait", "seconds": 60}


def test_move_up_reorders_in_the_editor_and_save_stores_the_order(console, api):
    created = create_runbook(api, steps=FULL_STEPS, parameters=PARAMETERS)
    fields = form_fields(console.get(f"/runbooks/{created['key']}"), "editor")

    moved = console.post(f"/runbooks/{created['key']}", {**fields, "op": "up-1"})

    assert moved.status_code == 200
    assert api.get(f"/runbooks/{created['key']}").get_json()["version"] == 1
    reordered = form_fields(moved, "editor")
    assert [reordered[f"steps-{i}-title"] for i in range(3)] == [FULL_STEPS[1]["title"], FULL_STEPS[0]["title"], FULL_STEPS[2]["title"]]
    saved = console.post(f"/runbooks/{created['key']}", {**reordered, "op": "save"})
    assert saved.status_code == 303
    body = api.get(f"/runbooks/{created['key']}").get_json()
    assert body["version"] == 2
    assert [s["title"] for s in body["steps"]] == [FULL_STEPS[1]["title"], FULL_STEPS[0]["title"], FULL_STEPS[2]["title"]]
    assert body["steps"][0]["action"]["url"] == FULL_STEPS[1]["action"]["url"]


def test_move_down_and_delete_then_save(console, api):
    created = create_runbook(api, steps=FULL_STEPS, parameters=PARAMETERS)
    fields = form_fields(console.get(f"/runbooks/{created['key']}"), "editor")
    fields = form_fields(console.post(f"/runbooks/{created['key']}", {**fields, "op": "down-0"}), "editor")
    fields = form_fields(console.post(f"/runbooks/{created['key']}", {**fields, "op": "delete-2"}), "editor")

    console.post(f"/runbooks/{created['key']}", {**fields, "op": "save"})

    body = api.get(f"/runbooks/{created['key']}").get_json()
    assert body["version"] == 2
    assert [s["title"] for s in body["steps"]] == [FULL_STEPS[1]["title"], FULL_STEPS[0]["title"]]


def test_add_step_shows_a_blank_step_without_saving(console, api):
    created = create_runbook(api)
    fields = form_fields(console.get(f"/runbooks/{created['key']}"), "editor")

    answer = console.post(f"/runbooks/{created['key']}", {**fields, "op": "add"})

    added = form_fields(answer, "editor")
    assert added["steps-2-title"] == ""
    assert added["steps-2-action-type"] == "manual"
    assert api.get(f"/runbooks/{created['key']}").get_json()["version"] == 1


def test_parameters_metaschema_error_is_shown_next_to_the_field(console, api):
    answer, created = _save_edited(console, api, {"parameters": json.dumps({"type": "object", "properties": {"region": {"type": "strng"}}})})

    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    errors = re.search(r'<ul class="field-error" id="f-parameters-error">(.*?)</ul>', html, re.S)
    assert errors and "properties.region.type" in errors.group(1) and "is not valid under any of the given schemas" in errors.group(1)
    assert page(answer).has("textarea", id="f-parameters", aria_invalid="true", aria_describedby="f-parameters-error")
    assert "strng" in form_fields(answer, "editor")["parameters"]
    assert _version(api, created) == 1


def test_parameters_that_are_not_json_are_shown_next_to_the_field(console, api):
    answer, created = _save_edited(console, api, {"parameters": '{"type": "object",'})

    assert answer.status_code == 422
    assert re.search(r'id="f-parameters-error"><li>not valid JSON', answer.get_data(as_text=True))
    assert _version(api, created) == 1


def test_a_step_field_error_is_shown_in_its_step(console, api):
    answer, created = _save_edited(console, api, {"steps-1-title": "  "})

    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert re.search(r'id="f-steps-1-title-error"><li>must not be blank', html)
    assert "must not be blank" not in _step_section(html, 0)
    assert _version(api, created) == 1


@pytest.mark.parametrize(("field", "text"), [
    ("steps-1-est_minutes", "1_000"), ("steps-1-est_minutes", "\u0661"), ("steps-0-timeout_seconds", "\uff11\uff12"),
    ("max_duration_seconds", "nan"),
])
def test_a_number_field_holding_no_number_as_json_writes_one_is_shown_next_to_it(console, api, field, text):
    """Python's int() and float() would read "1_000", other scripts' digits and "nan"; the editor does not."""
    answer, created = _save_edited(console, api, {field: text})

    assert answer.status_code == 422
    assert f'id="f-{field}-error"><li>not a number: {text!r}' in htmllib.unescape(answer.get_data(as_text=True))
    assert _version(api, created) == 1


@pytest.mark.parametrize(("field", "text"), [
    ("steps-0-owner_role", "superuser"), ("steps-0-action-type", "teleport"),
])
def test_a_choice_no_option_offers_is_marked_invalid_next_to_its_select(console, api, field, text):
    answer, created = _save_edited(console, api, {field: text})

    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert re.search(rf'<select id="f-{field}" name="{field}"[^>]* aria-invalid="true" aria-describedby="f-{field}-error"', html)
    assert f'id="f-{field}-error"><li>' in html
    assert _version(api, created) == 1


def test_an_http_method_no_option_offers_is_shown_next_to_its_select(console, api):
    created = create_runbook(api, steps=[{"title": "Call", "action": {"type": "http", "url": "https://api.example/health"}}])
    fields = form_fields(console.get(f"/runbooks/{created['key']}"), "editor")

    answer = console.post(f"/runbooks/{created['key']}", {**fields, "steps-0-action-method": "BREW", "op": "save"})

    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert re.search(r'<select id="f-steps-0-action-method" name="steps-0-action-method" aria-invalid="true"', html)
    assert 'id="f-steps-0-action-method-error"><li>' in html
    assert _version(api, created) == 1


def test_decimal_numbers_as_people_type_them_are_taken(console, api):
    answer, created = _save_edited(console, api, {"steps-0-est_minutes": ".5", "steps-1-est_minutes": "2.", "steps-0-timeout_seconds": "090"})

    assert answer.status_code == 303, page(answer).text
    steps = api.get(f"/runbooks/{created['key']}").get_json()["steps"]
    assert (steps[0]["est_minutes"], steps[1]["est_minutes"], steps[0]["timeout_seconds"]) == (0.5, 2.0, 90)


def test_a_nul_character_in_a_field_is_refused_and_saves_nothing(console, api):
    answer, created = _save_edited(console, api, {"steps-0-title": "Drain\x00 the pool"})

    assert answer.status_code == 400
    assert "the request's form.steps-0-title holds a NUL character" in htmllib.unescape(answer.get_data(as_text=True))
    assert _version(api, created) == 1


def test_an_undeclared_placeholder_is_shown_in_its_step(console, api):
    answer, created = _save_edited(console, api, {"steps-1-description": "Use {{ params.nope }} here"})

    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert "declares no parameter 'nope'" in _step_section(html, 1)
    assert "declares no parameter 'nope'" not in _step_section(html, 0)
    assert _version(api, created) == 1


def test_saving_over_a_newer_version_is_a_conflict_shown_on_the_page(console, api):
    created = create_runbook(api)
    fields = form_fields(console.get(f"/runbooks/{created['key']}"), "editor")
    assert api.patch(f"/runbooks/{created['key']}", json={"title": "Edited over the API"}).status_code == 200
    fields["title"] = "Edited in the console"

    answer = console.post(f"/runbooks/{created['key']}", {**fields, "op": "save"})

    assert answer.status_code == 409
    assert "is at version 2, not 1" in page(answer).text
    assert form_fields(answer, "editor")["title"] == "Edited in the console"
    assert api.get(f"/runbooks/{created['key']}").get_json()["title"] == "Edited over the API"


def test_saving_mine_over_the_newer_version_after_a_conflict(console, api):
    created = create_runbook(api)
    fields = form_fields(console.get(f"/runbooks/{created['key']}"), "editor")
    api.patch(f"/runbooks/{created['key']}", json={"title": "Edited over the API"})
    fields["title"] = "Edited in the console"
    console.post(f"/runbooks/{created['key']}", {**fields, "op": "save"})

    answer = console.post(f"/runbooks/{created['key']}", {**fields, "overwrite_version": "2"})

    assert answer.status_code == 303
    body = api.get(f"/runbooks/{created['key']}").get_json()
    assert (body["version"], body["title"]) == (3, "Edited in the console")


def test_lint_warnings_are_shown_beside_the_steps_they_concern(console, api):
    steps = [{"title": "Drain traffic from the primary database"},
             {"title": "Restart the database and then check the replicas"}]
    created = create_runbook(api, steps=steps, parameters={"type": "object", "properties": {"unused": {"type": "string"}}})

    html = console.get(f"/runbooks/{created['key']}").get_data(as_text=True)

    assert "does several things" in _step_section(html, 1)
    assert "does several things" not in _step_section(html, 0)
    assert "parameter 'unused' is declared but no step uses it" in htmllib.unescape(html[:html.index('id="editor"')])


def test_new_runbook_form_creates_a_draft(console, api):
    answer = console.post("/runbooks/new", {"title": "Rotate the gateway key", "description": "Yearly.", "category": "security"})

    assert answer.status_code == 303
    key = answer.headers["Location"].rsplit("/", 1)[1]
    created = api.get(f"/runbooks/{key}").get_json()
    assert (created["title"], created["category"], created["status"], created["version"]) == ("Rotate the gateway key", "security", "draft", 1)


def test_new_runbook_without_a_title_is_refused_next_to_the_field(console, api):
    answer = console.post("/runbooks/new", {"title": " ", "name": "Bad Name"})

    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert re.search(r'id="f-title-error"><li>must not be blank', html)
    assert re.search(r'id="f-name-error"><li>lowercase letters', html)
    assert api.get("/runbooks").get_json()["items"] == []


def test_lifecycle_buttons_publish_unpublish_and_archive(console, api):
    created = create_runbook(api)
    statuses = []
    for action in ("publish", "unpublish", "archive"):
        answer = console.post(f"/runbooks/{created['key']}/{action}")
        assert answer.status_code == 303
        statuses.append(api.get(f"/runbooks/{created['key']}").get_json()["status"])

    assert statuses == ["published", "draft", "archived"]


def test_publishing_twice_shows_the_conflict(console, api):
    published = create_runbook(api, status="published")

    answer = console.post(f"/runbooks/{published['key']}/publish")

    assert answer.status_code == 409
    assert "it is published" in page(answer).text
