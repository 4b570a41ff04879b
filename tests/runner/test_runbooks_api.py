"""The runbook authoring API: create, list, read, edit, history, diff, lifecycle, import and export."""
from __future__ import annotations

import pytest

from runner.services import tenancy
from tests.conftest import problem
from tests.runner.helpers import audit_entries, create_runbook, runbook_body

INCIDENT_TEXT = (
    "1. Page the on-call engineer via send_email. 2. Snapshot the database logs to the data store. "
    "3. Run a diagnostic web_fetch against /health. 4. Post a status update to #incidents on Slack."
)
INCIDENT_TITLES = [
    "Page the on-call engineer via send_email",
    "Snapshot the database logs to the data store",
    "Run a diagnostic web_fetch against /health",
    "Post a status update to #incidents on Slack",
]


def _keys(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [item["key"] for item in response.get_json()["items"]]


# --- create ----------------------------------------------------------------------------------------


def test_create_answers_201_with_location_of_the_new_draft(api):
    response = api.post("/runbooks", json=runbook_body())

    assert response.status_code == 201
    body = response.get_json()
    assert body["key"] == "RB-00001"
    assert body["status"] == "draft"
    assert body["version"] == 1
    assert body["owner"] == "olivia"
    assert response.headers["Location"].endswith("/api/v1/ws/acme/runbooks/RB-00001")
    follow = api.get(response.headers["Location"])
    assert follow.status_code == 200
    assert follow.get_json()["title"] == "Restart the primary database"


def test_keys_count_up_per_workspace(api):
    first = create_runbook(api, "First runbook")
    second = create_runbook(api, "Second runbook")

    assert [first["key"], second["key"]] == ["RB-00001", "RB-00002"]


def test_key_of_an_archived_runbook_is_never_reused(api):
    create_runbook(api, "First runbook")
    create_runbook(api, "Second runbook", status="archived")

    third = create_runbook(api, "Third runbook")

    assert third["key"] == "RB-00003"


def test_duplicate_name_is_refused_with_409(api):
    create_runbook(api, name="restart-db")

    response = api.post("/runbooks", json=runbook_body(name="restart-db"))

    body = problem(response)
    assert response.status_code == 409
    assert "restart-db" in body["detail"]
    assert _keys(api.get("/runbooks")) == ["RB-00001"]


# --- list ------------------------------------------------------------------------------------------


@pytest.fixture
def catalogue(api):
    """Four runbooks: a published callable one, a draft, an archived one, one in another category."""
    return {
        "published": create_runbook(api, "Rotate the TLS certificate", status="published", callable=True, category="security")["key"],
        "draft": create_runbook(api, "Restart the cache cluster", category="maintenance")["key"],
        "archived": create_runbook(api, "Retire the legacy queue", status="archived", category="maintenance")["key"],
        "other": create_runbook(api, "Check disk usage", status="published", category="health",
                                description="Weekly look at the **disk** gauges")["key"],
    }


def test_list_hides_archived_runbooks_by_default(api, catalogue):
    keys = _keys(api.get("/runbooks"))

    assert catalogue["archived"] not in keys
    assert sorted(keys) == sorted([catalogue["published"], catalogue["draft"], catalogue["other"]])


def test_list_includes_archived_runbooks_when_asked(api, catalogue):
    keys = _keys(api.get("/runbooks?include_archived=true"))

    assert sorted(keys) == sorted(catalogue.values())


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=published", ["published", "other"]),
        ("status=draft", ["draft"]),
        ("status=archived", ["archived"]),
        ("status=draft,archived", ["draft", "archived"]),
        ("category=maintenance", ["draft"]),
        ("category=maintenance&include_archived=true", ["draft", "archived"]),
        ("callable=true", ["published"]),
        ("callable=false", ["draft", "other"]),
        ("q=tls", ["published"]),
        ("q=DISK", ["other"]),
        ("q=rb-00002", ["draft"]),
        ("q=nothing-matches-this", []),
    ],
)
def test_list_filters(api, catalogue, query, expected):
    keys = _keys(api.get(f"/runbooks?{query}"))

    assert sorted(keys) == sorted(catalogue[name] for name in expected)


def test_list_refuses_an_unknown_status(api, catalogue):
    response = api.get("/runbooks?status=retired")

    body = problem(response)
    assert response.status_code == 422
    assert "'retired'" in body["detail"]
    assert body["errors"][0]["field"] == "status"


def test_cursor_pagination_visits_every_runbook_exactly_once(api):
    created = [create_runbook(api, f"Runbook number {i}")["key"] for i in range(7)]
    seen: list[str] = []
    pages = 0
    cursor = None
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        response = api.get("/runbooks", query_string=query)
        assert response.status_code == 200
        page = response.get_json()
        seen += [item["key"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "pagination does not end"

    assert pages == 3
    assert seen == created


@pytest.mark.parametrize("cursor", ["zzz", "eyJhZnRlciI6LTF9", "eyJvdGhlciI6MX0", "%%%"])
def test_bad_cursor_is_a_400_naming_the_cursor(api, cursor):
    response = api.get("/runbooks", query_string={"cursor": cursor})

    body = problem(response)
    assert response.status_code == 400
    assert repr(cursor) in body["detail"]
    assert body["errors"] == [{"field": "cursor", "message": "not a valid cursor", "value": cursor}]


# --- read ------------------------------------------------------------------------------------------


def test_get_by_key_and_by_name_return_the_same_runbook(api):
    created = create_runbook(api, name="restart-db")

    by_key = api.get(f"/runbooks/{created['key']}")
    by_name = api.get("/runbooks/restart-db")

    assert by_key.status_code == by_name.status_code == 200
    assert by_key.get_json() == by_name.get_json()
    assert by_key.get_json()["step_count"] == 2
    assert by_key.get_json()["est_minutes"] == 15


def test_unknown_runbook_is_404_naming_it(api):
    response = api.get("/runbooks/RB-09999")

    body = problem(response)
    assert response.status_code == 404
    assert "RB-09999" in body["detail"]


# --- edit and versions ---------------------------------------------------------------------------


def test_patch_bumps_the_version_and_stores_the_whole_body(api):
    created = create_runbook(api)

    response = api.patch(f"/runbooks/{created['key']}", json={"title": "Restart the primary database safely"})

    assert response.status_code == 200
    assert response.get_json()["version"] == 2
    version = api.get(f"/runbooks/{created['key']}/versions/2").get_json()
    assert version["version"] == 2
    assert version["created_by"] == "olivia"
    assert version["body"]["title"] == "Restart the primary database safely"
    assert [s["title"] for s in version["body"]["steps"]] == [s["title"] for s in created["steps"]]
    assert version["body"]["category"] == "maintenance"
    assert api.get(f"/runbooks/{created['key']}/versions/1").get_json()["body"]["title"] == "Restart the primary database"


def test_patch_with_a_stale_base_version_is_a_409_and_changes_nothing(api):
    key = create_runbook(api)["key"]
    assert api.patch(f"/runbooks/{key}", json={"title": "Second title", "base_version": 1}).status_code == 200

    response = api.patch(f"/runbooks/{key}", json={"title": "Lost update", "base_version": 1})

    body = problem(response)
    assert response.status_code == 409
    assert body["current_version"] == 2
    current = api.get(f"/runbooks/{key}").get_json()
    assert (current["version"], current["title"]) == (2, "Second title")


def test_versions_are_listed_newest_first(api):
    key = create_runbook(api)["key"]
    api.patch(f"/runbooks/{key}", json={"category": "databases"})
    api.patch(f"/runbooks/{key}", json={"category": "storage"})

    response = api.get(f"/runbooks/{key}/versions")

    assert response.status_code == 200
    assert [v["version"] for v in response.get_json()["items"]] == [3, 2, 1]


def test_unknown_version_is_404(api):
    key = create_runbook(api)["key"]

    response = api.get(f"/runbooks/{key}/versions/7")

    body = problem(response)
    assert response.status_code == 404
    assert "version 7" in body["detail"]


# --- diff ------------------------------------------------------------------------------------------


@pytest.fixture
def two_versions(api):
    """RB-00001 at version 2: one step kept, one edited, one removed, one added."""
    key = create_runbook(api, steps=[
        {"title": "Announce the maintenance window"},
        {"title": "Restart the primary database"},
        {"title": "Compact the write-ahead log"},
    ])["key"]
    response = api.patch(f"/runbooks/{key}", json={"steps": [
        {"title": "Announce the maintenance window"},
        {"title": "Restart the primary database node"},
        {"title": "Email the customer success team"},
    ]})
    assert response.status_code == 200
    return key


def test_diff_lists_added_removed_and_changed_steps(api, two_versions):
    response = api.get(f"/runbooks/{two_versions}/diff?from=1&to=2")

    assert response.status_code == 200
    diff = response.get_json()
    changes = {(e["change"], e["title"]) for e in diff["steps"]}
    assert changes == {
        ("unchanged", "Announce the maintenance window"),
        ("changed", "Restart the primary database node"),
        ("removed", "Compact the write-ahead log"),
        ("added", "Email the customer success team"),
    }
    assert diff["summary"] == {"added": 1, "removed": 1, "changed": 1, "unchanged": 1}


def test_diff_marks_changed_text_line_by_line(api, two_versions):
    diff = api.get(f"/runbooks/{two_versions}/diff?from=1&to=2").get_json()

    changed = next(e for e in diff["steps"] if e["change"] == "changed")
    assert (changed["from_order"], changed["to_order"]) == (2, 2)
    assert changed["fields"]["title"]["lines"] == ["- Restart the primary database", "+ Restart the primary database node"]


def test_diff_from_an_unknown_version_is_404(api, two_versions):
    response = api.get(f"/runbooks/{two_versions}/diff?from=9&to=2")

    body = problem(response)
    assert response.status_code == 404
    assert body["errors"][0]["field"] == "from"


def test_diff_without_to_is_422(api, two_versions):
    response = api.get(f"/runbooks/{two_versions}/diff?from=1")

    body = problem(response)
    assert response.status_code == 422
    assert [e["field"] for e in body["errors"]] == ["to"]


# --- lifecycle -------------------------------------------------------------------------------------


def test_publish_unpublish_and_archive_move_the_runbook(api):
    key = create_runbook(api)["key"]

    published = api.post(f"/runbooks/{key}/publish")
    assert published.status_code == 200
    assert published.get_json()["status"] == "published"
    assert published.get_json()["published_at"] is not None
    unpublished = api.post(f"/runbooks/{key}/unpublish")
    assert unpublished.status_code == 200
    assert unpublished.get_json()["status"] == "draft"
    archived = api.post(f"/runbooks/{key}/archive")
    assert archived.status_code == 200
    assert archived.get_json()["archived_at"] is not None

    assert api.get(f"/runbooks/{key}").get_json()["status"] == "archived"
    actions = [e["action"] for e in audit_entries(api, target=key)]
    assert actions == ["runbook.create", "runbook.publish", "runbook.unpublish", "runbook.archive"]


@pytest.mark.parametrize(
    ("status", "action", "current"),
    [
        ("published", "publish", "published"),
        ("draft", "unpublish", "draft"),
        ("archived", "publish", "archived"),
        ("archived", "unpublish", "archived"),
        ("archived", "archive", "archived"),
    ],
)
def test_illegal_transition_is_a_409_naming_the_current_state(api, status, action, current):
    key = create_runbook(api, status=status)["key"]

    response = api.post(f"/runbooks/{key}/{action}")

    body = problem(response)
    assert response.status_code == 409
    assert body["current_status"] == current
    assert f"it is {current}" in body["detail"]
    assert api.get(f"/runbooks/{key}").get_json()["status"] == status


def test_editing_an_archived_runbook_is_a_409(api):
    key = create_runbook(api, status="archived")["key"]

    response = api.patch(f"/runbooks/{key}", json={"title": "Too late"})

    body = problem(response)
    assert response.status_code == 409
    assert body["current_status"] == "archived"
    assert "archived" in body["detail"]
    assert api.get(f"/runbooks/{key}").get_json()["version"] == 1


def test_publishing_a_runbook_without_steps_that_is_not_callable_is_refused(api):
    key = create_runbook(api, steps=[])["key"]

    response = api.post(f"/runbooks/{key}/publish")

    body = problem(response)
    assert response.status_code == 409
    assert "no steps" in body["detail"]
    assert api.get(f"/runbooks/{key}").get_json()["status"] == "draft"


def test_a_callable_runbook_without_steps_can_be_published(api):
    key = create_runbook(api, steps=[], callable=True)["key"]

    response = api.post(f"/runbooks/{key}/publish")

    assert response.status_code == 200
    assert response.get_json()["status"] == "published"


# --- import from text ------------------------------------------------------------------------------


def test_import_numbered_text_on_one_line_makes_one_step_per_number(api):
    response = api.post("/runbooks/import", json={"text": INCIDENT_TEXT, "title": "Incident response: database"})

    assert response.status_code == 201
    body = response.get_json()
    assert [s["title"] for s in body["steps"]] == INCIDENT_TITLES
    assert body["status"] == "draft"
    assert response.headers["Location"].endswith(f"/runbooks/{body['key']}")


def test_import_takes_the_name_from_a_called_clause(api):
    text = "Create a runbook called incident-response-database with these steps: " + INCIDENT_TEXT

    body = api.post("/runbooks/import", json={"text": text}).get_json()

    assert body["name"] == "incident-response-database"
    assert [s["title"] for s in body["steps"]] == INCIDENT_TITLES


def test_import_markdown_takes_the_heading_as_title_and_bullets_as_steps(api):
    text = "# Rotate the TLS certificate\n\nDo this before the certificate expires.\n\n- Issue a new certificate\n- Deploy it to the load balancer\n- Verify the served certificate\n"

    response = api.post("/runbooks/import", json={"text": text})

    assert response.status_code == 201
    body = response.get_json()
    assert body["title"] == "Rotate the TLS certificate"
    assert body["description"] == "Do this before the certificate expires."
    assert [s["title"] for s in body["steps"]] == ["Issue a new certificate", "Deploy it to the load balancer", "Verify the served certificate"]


def test_import_is_recorded_in_the_version_source_and_audit(api):
    key = api.post("/runbooks/import", json={"text": INCIDENT_TEXT}).get_json()["key"]

    assert api.get(f"/runbooks/{key}/versions/1").get_json()["source"] == "import:text"
    entry = audit_entries(api, target=key)[0]
    assert (entry["action"], entry["detail"]["imported_steps"]) == ("runbook.create", 4)


@pytest.mark.parametrize("text", ["Just restart the database and see.", "# A heading only\n\nsome prose\n", "   \n\t"])
def test_import_of_text_without_steps_is_422_and_creates_nothing(api, text):
    response = api.post("/runbooks/import", json={"text": text})

    body = problem(response)
    assert response.status_code == 422
    assert body["errors"][0]["field"] == "text"
    assert _keys(api.get("/runbooks")) == []


# --- save a version from an external step list -----------------------------------------------------


def test_external_step_list_saves_a_new_version_with_its_source(api):
    key = create_runbook(api)["key"]

    response = api.post(f"/runbooks/{key}/versions", json={"source": "CHG-1042", "steps": [
        {"title": "Fail over to the replica", "est_minutes": 4},
        {"title": "", "description": ""},
        {"title": "", "description": "Rebuild the old primary from the snapshot\nthen re-attach it"},
    ]})

    assert response.status_code == 201
    assert response.headers["Location"].endswith(f"/runbooks/{key}/versions/2")
    version = api.get(f"/runbooks/{key}/versions/2").get_json()
    assert version["source"] == "CHG-1042"
    assert [(s["order"], s["title"]) for s in version["body"]["steps"]] == [
        (1, "Fail over to the replica"),
        (2, "Rebuild the old primary from the snapshot"),
    ]
    entry = audit_entries(api, target=key)[-1]
    assert entry["action"] == "runbook.save_from_source"
    assert entry["actor"] == "olivia"
    assert entry["detail"] == {"version": 2, "source": "CHG-1042", "steps": 2}


def test_external_step_list_with_only_blank_steps_is_422_and_writes_no_version(api):
    key = create_runbook(api)["key"]

    response = api.post(f"/runbooks/{key}/versions", json={"source": "CHG-1043", "steps": [
        {"title": "  ", "description": ""}, {"title": "", "description": "\n"},
    ]})

    body = problem(response)
    assert response.status_code == 422
    assert "CHG-1043" in body["detail"]
    assert [v["version"] for v in api.get(f"/runbooks/{key}/versions").get_json()["items"]] == [1]
    assert "runbook.save_from_source" not in [e["action"] for e in audit_entries(api, target=key)]


# --- export and import bundles ---------------------------------------------------------------------


@pytest.fixture
def globex(rt, make_api):
    """An owner of a second workspace, ``globex``."""
    tenancy.create_workspace(rt, "globex")
    return make_api("owner", subject="gustav", slug="globex")


def test_exported_bundle_imports_as_a_new_draft_in_another_workspace(api, globex):
    source = create_runbook(api, name="restart-db", status="published")
    bundle = api.get(f"/runbooks/{source['key']}/export").get_json()

    response = globex.post("/runbooks/import", json={"bundle": bundle})

    assert response.status_code == 201
    imported = response.get_json()
    assert (imported["key"], imported["name"], imported["status"], imported["version"]) == ("RB-00001", "restart-db", "draft", 1)
    assert imported["owner"] == "gustav"
    assert imported["steps"] == source["steps"]
    assert globex.get("/runbooks/RB-00001/versions/1").get_json()["source"] == f"import:eu-qa/{source['key']}@v1"


def test_importing_a_bundle_again_saves_a_new_version_of_the_same_runbook(api, globex):
    key = create_runbook(api, name="restart-db")["key"]
    globex.post("/runbooks/import", json={"bundle": api.get(f"/runbooks/{key}/export").get_json()})
    api.patch(f"/runbooks/{key}", json={"steps": [{"title": "Restart the primary database with the runbook tool"}]})

    response = globex.post("/runbooks/import", json={"bundle": api.get(f"/runbooks/{key}/export").get_json()})

    assert response.status_code == 201
    again = response.get_json()
    assert (again["key"], again["version"]) == ("RB-00001", 2)
    assert [s["title"] for s in again["steps"]] == ["Restart the primary database with the runbook tool"]
    assert _keys(globex.get("/runbooks")) == ["RB-00001"]
    assert globex.get("/runbooks/RB-00001/versions/2").get_json()["source"] == f"import:eu-qa/{key}@v2"


@pytest.mark.parametrize(
    ("bundle", "field"),
    [
        ({"format": "something-else", "format_version": 1, "runbook": {"title": "x"}}, "bundle.format"),
        ({"format": "runbook-manager.bundle", "format_version": 1, "runbook": {"steps": []}}, "bundle.runbook.title"),
        ({"format": "runbook-manager.bundle", "format_version": 1, "runbook": {"title": "x"}, "exported_from": "qa"},
         "bundle.exported_from"),
    ],
)
def test_import_of_a_bad_bundle_is_422_naming_the_field(api, bundle, field):
    response = api.post("/runbooks/import", json={"bundle": bundle})

    body = problem(response)
    assert response.status_code == 422
    assert field in [e["field"] for e in body["errors"]]
    assert _keys(api.get("/runbooks")) == []
