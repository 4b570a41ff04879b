"""The Runbooks list with its filter chips, and the History tab's diff."""
from __future__ import annotations

import html as htmllib
import re

from tests.console.conftest import page
from tests.runner.helpers import create_runbook


def _listed(console, query: str = "") -> list[str]:
    return [row["data-key"] for row in page(console.get(f"/runbooks{query}")).find("li", class_="card runbook-row")]


def _three(api) -> tuple[dict, dict, dict]:
    draft = create_runbook(api, "Rotate the gateway key", category="security")
    published = create_runbook(api, "Restart the orders API", status="published", category="deployments")
    archived = create_runbook(api, "Retire the old queue", status="archived", category="deployments")
    return draft, published, archived


def test_list_shows_active_runbooks_by_default(console, api):
    draft, published, _archived = _three(api)

    assert _listed(console) == [draft["key"], published["key"]]


def test_status_chip_filters_the_list(console, api):
    _draft, _published, archived = _three(api)

    assert _listed(console, "?status=archived") == [archived["key"]]


def test_category_chip_filters_the_list(console, api):
    draft, _published, _archived = _three(api)

    assert _listed(console, "?category=security") == [draft["key"]]
    chips = [a["href"] for a in page(console.get("/runbooks")).find("a", class_="chip")]
    assert "/console/ws/acme/runbooks?category=deployments" in chips
    assert "/console/ws/acme/runbooks?category=security" in chips


def test_list_rows_show_steps_status_and_last_outcome(console, api):
    published = create_runbook(api, status="published", callable=True)
    job = api.post(f"/runbooks/{published['key']}/jobs", json={}).get_json()
    api.post(f"/jobs/{job['job']['uuid']}/abort", json={})

    html = console.get("/runbooks").get_data(as_text=True)
    row = html[html.index(f'data-key="{published["key"]}"'):]
    row = re.sub(r"\s+", " ", htmllib.unescape(row[:row.index("</li>")]))

    assert "<dt>Steps</dt><dd>2</dd>" in row
    assert 'class="badge badge-published">Published' in row
    assert 'class="badge badge-cancelled">Cancelled' in row
    assert "<dt>Last executed</dt><dd>—</dd>" not in row


def test_an_unknown_status_filter_is_an_error_page(console):
    answer = console.get("/runbooks?status=deleted")

    assert answer.status_code == 422
    assert "status must be among archived, draft, published, got 'deleted'" in page(answer).text


def test_history_diff_marks_added_removed_and_changed_lines(console, api):
    steps = [{"title": "Announce the restart", "description": "Post in #ops.\nMention the ticket."},
             {"title": "Restart the pods"},
             {"title": "Update the old status page"}]
    created = create_runbook(api, steps=steps)
    edited = [{"title": "Announce the restart", "description": "Post in #ops.\nMention the change."},
              {"title": "Restart the pods"},
              {"title": "Check the error rate"}]
    api.patch(f"/runbooks/{created['key']}", json={"steps": edited})

    answer = console.get(f"/runbooks/{created['key']}/history?from=1&to=2")

    html = htmllib.unescape(answer.get_data(as_text=True))
    assert answer.status_code == 200
    assert '<span class="line ctx">  Post in #ops.</span>' in html
    assert '<span class="line del">- Mention the ticket.</span>' in html
    assert '<span class="line ins">+ Mention the change.</span>' in html
    assert '<span class="line ins">+ Check the error rate</span>' in html
    assert '<span class="line del">- Update the old status page</span>' in html
    changes = [li["data-change"] for li in page(answer).find("li", data_change=True)]
    assert sorted(changes) == ["added", "changed", "removed", "unchanged"]


def test_history_lists_versions_with_from_and_to_radios(console, api):
    created = create_runbook(api)
    api.patch(f"/runbooks/{created['key']}", json={"title": "Restart the primary database now"})

    versions = page(console.get(f"/runbooks/{created['key']}/history"))

    assert "checked" in versions.find("input", type="radio", name="from", value="1")[0]
    assert "checked" not in versions.find("input", type="radio", name="from", value="2")[0]
    assert "checked" in versions.find("input", type="radio", name="to", value="2")[0]
    assert not versions.has("section", class_="diff")


def test_history_with_a_missing_version_is_a_not_found_page(console, api):
    created = create_runbook(api)

    answer = console.get(f"/runbooks/{created['key']}/history?from=1&to=7")

    assert answer.status_code == 404
    assert "has no version 7" in page(answer).text
