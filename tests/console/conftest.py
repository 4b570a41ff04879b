"""Console fixtures: a signed-in browser-like client per person, and an HTML reader for assertions."""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from runner.clock import SystemClock
from runner.config import Settings
from runner.migrate import upgrade
from runner.runtime import Runtime
from runner.services import tenancy
from tests.processes import RunnerProcess

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


class Console:
    """One person's console session: ``console.get("/runbooks")``, ``console.post(path, data={…})`` (CSRF added)."""

    def __init__(self, client: FlaskClient, slug: str, token: str) -> None:
        self.client, self.slug, self.token = client, slug, token
        self.csrf: str | None = None

    def url(self, path: str) -> str:
        return path if path.startswith("/console") else f"/console/ws/{self.slug}{path}"

    def _remember_csrf(self, response: Any) -> Any:
        found = CSRF_META.search(response.get_data(as_text=True)) if response.mimetype == "text/html" else None
        if found:
            self.csrf = found.group(1)
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self._remember_csrf(self.client.get(self.url(path), **kwargs))

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True, **kwargs: Any) -> Any:
        form = dict(data or {})
        if csrf:
            if self.csrf is None:
                self.get("/console/sign-in")
            form.setdefault("csrf_token", self.csrf)
        return self._remember_csrf(self.client.post(self.url(path), data=form, **kwargs))

    def post_json(self, path: str, data: dict[str, Any] | None = None) -> Any:
        """Post as the page's script does: CSRF in the X-CSRF-Token header, JSON wanted back."""
        return self.client.post(self.url(path), data=data or {}, headers={"X-CSRF-Token": self.csrf, "Accept": "application/json"})

    def sign_in(self) -> Any:
        self.get("/console/sign-in")
        response = self.post("/console/sign-in", {"token": self.token})
        assert response.status_code == 303, response.get_data(as_text=True)
        self.get(response.headers["Location"])
        return response


@pytest.fixture
def make_console(app: Flask, rt, workspace: str):
    """Sign a new person in: ``make_console("operator", subject="olga")``; each gets a client (cookie jar) of their own."""

    def build(role: str = "owner", *, subject: str | None = None, slug: str | None = None, sign_in: bool = True) -> Console:
        slug = slug or workspace
        token, _ = tenancy.create_token(rt, slug, role=role, subject=subject or f"{role}-user")
        console = Console(app.test_client(), slug, token)
        if sign_in:
            console.sign_in()
        return console

    return build


@pytest.fixture
def console(make_console) -> Console:
    """The owner of workspace ``acme``, signed in."""
    return make_console("owner", subject="olivia")


class Page(HTMLParser):
    """The parts of an HTML page the tests look at: elements with their attributes, and the text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text_parts: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str | None]]:
        """Elements of ``tag`` whose attributes have these values (``class_`` for class; True means present)."""
        found = []
        for name, have in self.elements:
            if tag is not None and name != tag:
                continue
            wanted = {k.rstrip("_").replace("_", "-") if k != "class_" else "class": v for k, v in attrs.items()}
            if all((k in have) if v is True else have.get(k) == v for k, v in wanted.items()):
                found.append(have)
        return found

    def has(self, tag: str | None = None, **attrs: str) -> bool:
        return bool(self.find(tag, **attrs))


def page(response: Any) -> Page:
    """Parse an HTML response."""
    assert response.mimetype == "text/html", (response.status_code, response.mimetype)
    return Page(response.get_data(as_text=True))


class FormReader(HTMLParser):
    """What a browser would submit from one form of a page (without pressing any named button)."""

    def __init__(self, html: str, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.skip_depth = 0
        self.fields: list[tuple[str, str]] = []
        self._textarea: str | None = None
        self._text: list[str] = []
        self._select: str | None = None
        self._first_option: str | None = None
        self._selected = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and a.get("id") == self.form_id:
            self.inside = True
        if tag == "template":
            self.skip_depth += 1
        if not self.inside or self.skip_depth:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.fields.append((name, a.get("value") or "on"))
            elif kind not in ("submit", "button"):
                self.fields.append((name, a.get("value") or ""))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []
        elif tag == "select" and name:
            self._select, self._first_option, self._selected = name, None, False
        elif tag == "option" and self._select:
            value = a.get("value") or ""
            if "selected" in a and not self._selected:
                self._selected = True
                self.fields.append((self._select, value))
            elif self._first_option is None:
                self._first_option = value

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "template":
            self.skip_depth -= 1
        if tag == "form" and self.inside:
            self.inside = False
        if tag == "textarea" and self._textarea is not None:
            text = "".join(self._text)
            self.fields.append((self._textarea, text[1:] if text.startswith("\n") else text))
            self._textarea = None
        if tag == "select" and self._select:
            if not self._selected:
                self.fields.append((self._select, self._first_option or ""))
            self._select = None


def form_fields(response: Any, form_id: str) -> dict[str, Any]:
    """The fields of form ``form_id`` as a browser would post them: ``{name: value}`` (lists for repeated names)."""
    reader = FormReader(response.get_data(as_text=True), form_id)
    fields: dict[str, Any] = {}
    for name, value in reader.fields:
        if name in fields:
            fields[name] = fields[name] if isinstance(fields[name], list) else [fields[name]]
            fields[name].append(value)
        else:
            fields[name] = value
    return fields


# --- browser tests: a live runner and Debian's headless Chromium driven by Selenium -----------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run")
# Where the browser tests leave their screenshots (committed, linked from the README).
SCREENSHOTS = Path(__file__).parent / "screenshots"


@dataclass
class LiveRunner:
    """A ``runbook-manager serve`` process with workspace ``acme`` and a token per role."""

    url: str
    tokens: dict[str, str]

    def api(self, role: str = "owner") -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return session

    def api_url(self, path: str) -> str:
        return f"{self.url}/api/v1/ws/acme{path}"


@pytest.fixture(scope="module")
def live_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRunner]:
    workdir = tmp_path_factory.mktemp("console-runner")
    database_url = f"sqlite:///{workdir / 'runner.db'}"
    rt = Runtime.from_settings(Settings.from_env({}, database_url=database_url, var_dir=str(workdir / "var")), clock=SystemClock())
    upgrade(rt.db)
    tenancy.create_workspace(rt, "acme")
    tokens = {role: tenancy.create_token(rt, "acme", role=role, subject=f"{role}-person")[0] for role in ("owner", "operator", "member")}
    rt.db.dispose()
    with RunnerProcess(workdir, database_url) as runner:
        yield LiveRunner(runner.url, tokens)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium at 1280×800; skipped when it is not installed, failed instead in CI."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = f"{CHROMIUM} and {CHROMEDRIVER} are needed: apt-get install chromium chromium-driver (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in CHROMIUM_ARGS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument("--window-size=1280,800")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_window_size(1280, 800)
    try:
        yield driver
    finally:
        driver.quit()
