"""Runbook markdown is rendered, and nothing a runbook author writes can run in an operator's browser."""
from __future__ import annotations

import pytest

from runner.console.markdown import render_markdown
from tests.console.conftest import Page, page
from tests.runner.helpers import create_runbook

MALICIOUS = (
    "<script>alert('runbook')</script>\n\n"
    "<img src=x onerror=alert(1)>\n\n"
    "[x](javascript:alert(1)) and [y](JaVaScRiPt:alert(2)) and ![z](javascript:alert(3))\n\n"
    "<a href=\"javascript:alert(4)\" onclick=\"alert(5)\">raw link</a>\n\n"
    "[ok](https://status.example.com) **bold**"
)
CONSOLE_SCRIPT = "/console/static/console.js"


def _executable(html: str) -> list[str]:
    """Everything in a page that could run script, apart from the console's own script file."""
    found = []
    for tag, attrs in Page(html).elements:
        if tag == "script" and attrs.get("src") != CONSOLE_SCRIPT:
            found.append(f"<script {attrs}>")
        for name, value in attrs.items():
            if name.startswith("on"):
                found.append(f"<{tag} {name}={value!r}>")
            if name in ("href", "src", "action", "formaction") and value and value.strip().lower().startswith(("javascript:", "data:text", "vbscript:")):
                found.append(f"<{tag} {name}={value!r}>")
    return found


def test_render_markdown_keeps_formatting_and_drops_everything_executable():
    html = str(render_markdown(MALICIOUS))

    assert _executable(html) == []
    assert '<a href="https://status.example.com" rel="noopener noreferrer nofollow">ok</a>' in html
    assert "<strong>bold</strong>" in html
    assert "&lt;script&gt;" in html


@pytest.fixture
def malicious(api) -> dict:
    steps = [{"title": "Open the dashboard", "description": MALICIOUS, "rollback_note": "<script>alert(6)</script>",
              "verification": "<img src=x onerror=alert(7)>"}]
    return create_runbook(api, "Restart <script>alert(8)</script>", status="published", description=MALICIOUS, steps=steps)


@pytest.mark.parametrize("path", ["/runbooks", "/runbooks/{key}", "/runbooks/{key}/history?from=1&to=1", "/runbooks/{key}/api",
                                  "/runbooks/{key}/execute"])
def test_no_script_from_a_runbook_reaches_its_pages(console, malicious, path):
    answer = console.get(path.format(key=malicious["key"]))

    assert answer.status_code == 200
    assert _executable(answer.get_data(as_text=True)) == []


@pytest.mark.parametrize("path", ["/runbooks", "/runbooks/{key}"])
def test_descriptions_are_rendered_as_markdown(console, malicious, path):
    answer = console.get(path.format(key=malicious["key"]))

    assert page(answer).has("a", href="https://status.example.com", rel="noopener noreferrer nofollow")
    assert "<strong>bold</strong>" in answer.get_data(as_text=True)


def test_no_script_from_a_runbook_reaches_the_run_view(console, malicious, worker):
    started = console.post(f"/runbooks/{malicious['key']}/execute", {})
    job_path = started.headers["Location"].removeprefix("/console/ws/acme")
    worker.run_until_idle()
    console.post(f"{job_path}/steps/1/fail", {"note": "<script>alert(9)</script>"})

    run = console.get(job_path)
    live = console.client.get(f"/console/ws/acme{job_path}/live").get_json()["html"]

    assert _executable(run.get_data(as_text=True)) == []
    assert _executable(live) == []
    assert "<strong>bold</strong>" in run.get_data(as_text=True)
    assert "&lt;script&gt;alert(9)" in run.get_data(as_text=True)


def test_read_only_steps_render_markdown_for_a_member(make_console, malicious):
    member = make_console("member")

    answer = member.get(f"/runbooks/{malicious['key']}")

    assert _executable(answer.get_data(as_text=True)) == []
    assert page(answer).has("a", href="https://status.example.com")
