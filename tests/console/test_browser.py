"""The console in a real browser against a live runner: author, publish, execute, act, watch it finish; abort; diff."""
from __future__ import annotations

import base64
import json

import pytest
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.console.conftest import SCREENSHOTS, LiveRunner

pytestmark = pytest.mark.slow

# Longest a page may take to show what the test waits for (the run view polls every 1.5 s).
WAIT_SECONDS = 30
PARAMETERS = {"type": "object", "required": ["region"], "properties": {"region": {"type": "string", "description": "Region to restart"}}}


class _Patient(WebDriverWait):
    """Wait, looking again when the element looked at was replaced meanwhile.

    The run view swaps its parts in as they change, and a page that navigates
    replaces them all: an element found a moment ago may be gone. Chromedriver
    says so with a StaleElementReferenceException or, when the node went away
    while it was being read, with an inspector error that names no type of its own.
    """

    def until(self, method, message: str = ""):  # noqa: ANN001, ANN201 - as WebDriverWait.until
        def looking_again(driver):  # noqa: ANN001, ANN202
            try:
                return method(driver)
            except WebDriverException as exc:
                if "does not belong to the document" in str(exc):
                    return False
                raise

        return super().until(looking_again, message)


def _wait(driver, seconds: float = WAIT_SECONDS) -> WebDriverWait:
    return _Patient(driver, seconds, ignored_exceptions=(StaleElementReferenceException,))


def _shot(driver, name: str) -> None:
    """Save the whole page (not only the window) as tests/console/screenshots/<name>."""
    SCREENSHOTS.mkdir(exist_ok=True)
    size = driver.execute_script("return [document.documentElement.clientWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True, "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}})
    (SCREENSHOTS / name).write_bytes(base64.b64decode(shot["data"]))


def _sign_in(driver, runner: LiveRunner, role: str = "owner") -> None:
    driver.delete_all_cookies()
    driver.get(runner.url + "/console/sign-in")
    field = driver.find_element(By.ID, "token")
    field.send_keys(runner.tokens[role])
    field.send_keys(Keys.ENTER)
    _wait(driver).until(ec.url_contains("/console/ws/acme/runbooks"))


def _click(driver, element_id: str) -> None:
    def press(d) -> bool:
        button = d.find_element(By.ID, element_id)
        if not (button.is_displayed() and button.is_enabled()):
            return False
        _press(d, button)
        return True

    _wait(driver).until(press)


def _press(driver, element) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def _status(driver) -> str:
    return driver.find_element(By.ID, "job-status").text


def _fill_step(driver, position: int, **fields: str) -> None:
    for name, value in fields.items():
        element = driver.find_element(By.ID, f"f-steps-{position}-{name}")
        if element.tag_name == "select":
            Select(element).select_by_value(value)
        elif element.get_attribute("type") == "checkbox":
            if element.is_selected() != (value == "on"):
                element.click()
        else:
            element.clear()
            element.send_keys(value)


def _published_runbook(runner: LiveRunner, title: str, steps: list[dict]) -> dict:
    api = runner.api()
    created = api.post(runner.api_url("/runbooks"), json={"title": title, "parameters": PARAMETERS, "steps": steps}, timeout=10)
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert api.post(runner.api_url(f"/runbooks/{key}/publish"), timeout=10).status_code == 200
    return created.json()


def _execute(driver, runner: LiveRunner, key: str, region: str) -> str:
    driver.get(f"{runner.url}/console/ws/acme/runbooks/{key}/execute")
    driver.find_element(By.ID, "f-param-region").send_keys(region)
    _click(driver, "start")
    _wait(driver).until(ec.presence_of_element_located((By.ID, "job-status")))
    driver.execute_script("window.__sameDocument = 'yes'")
    return driver.current_url.rsplit("/", 1)[1]


def test_author_publish_execute_approve_and_watch_the_run_complete(browser, live_runner):
    driver, runner = browser, live_runner
    _sign_in(driver, runner)

    _click(driver, "new-runbook")
    driver.find_element(By.ID, "f-title").send_keys("Restart the orders API")
    driver.find_element(By.ID, "f-description").send_keys("Restart **every** pod of the orders API in one region.")
    driver.find_element(By.ID, "f-category").send_keys("deployments")
    _click(driver, "create")
    _wait(driver).until(ec.presence_of_element_located((By.ID, "editor")))
    parameters = driver.find_element(By.ID, "f-parameters")
    parameters.send_keys(json.dumps(PARAMETERS))
    for _ in range(4):
        _click(driver, "add-step")
    _fill_step(driver, 0, title="Drain traffic from {{ params.region }}", est_minutes="5", owner_role="operator")
    _fill_step(driver, 1, title="Scratch step")
    _fill_step(driver, 2, title="Restart the pods in {{ params.region }}", est_minutes="10", owner_role="admin",
               requires_approval="on", is_destructive="on", rollback_note="Roll back the deployment")
    _fill_step(driver, 3, title="Check the error rate", est_minutes="3")
    _press(driver, driver.find_element(By.CSS_SELECTOR, '#f-steps-1 button[data-op="delete"]'))
    _click(driver, "save")
    _wait(driver).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".flash"), "Saved version 2"))
    _click(driver, "publish")
    _wait(driver).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".flash"), "is now published"))
    key = driver.current_url.rsplit("/", 1)[1]
    saved = runner.api().get(runner.api_url(f"/runbooks/{key}"), timeout=10).json()
    assert [s["title"] for s in saved["steps"]] == ["Drain traffic from {{ params.region }}", "Restart the pods in {{ params.region }}",
                                                     "Check the error rate"]
    assert saved["steps"][1]["requires_approval"] is True and saved["parameters"] == PARAMETERS

    job_uuid = _execute(driver, runner, key, "eu-west-1")
    _click(driver, "step-1-done")
    _wait(driver).until(ec.presence_of_element_located((By.ID, "step-2-approve")))
    _shot(driver, "run-view.png")
    _click(driver, "step-2-approve")
    _wait(driver).until(ec.alert_is_present()).accept()
    _click(driver, "step-2-done")
    _click(driver, "step-3-done")
    _wait(driver).until(lambda d: _status(d) == "Succeeded")

    assert driver.execute_script("return window.__sameDocument") == "yes", "the run view reloaded"
    assert driver.find_element(By.ID, "run-step-2").get_attribute("data-status") == "done"
    assert "Destructive" in driver.find_element(By.ID, "run-step-2").text
    job = runner.api().get(runner.api_url(f"/jobs/{job_uuid}"), timeout=10).json()
    assert (job["status"], job["parameters"], job["triggered_by"]) == ("succeeded", {"region": "eu-west-1"}, "person")
    assert job["steps"][1]["approved_by"] == "owner-person"
    runner.api().post(runner.api_url("/runbooks"), json={"title": "Rotate the gateway key", "category": "security",
                                                         "description": "Yearly, or at once when the key *leaked*."}, timeout=10)
    driver.get(f"{runner.url}/console/ws/acme/runbooks")
    _shot(driver, "runbooks-list.png")


def test_the_run_view_picks_up_changes_made_elsewhere(browser, live_runner):
    driver, runner = browser, live_runner
    runbook = _published_runbook(runner, "Flush the edge cache", [{"title": "Purge {{ params.region }}"}, {"title": "Warm the cache"}])
    _sign_in(driver, runner, "operator")
    job_uuid = _execute(driver, runner, runbook["key"], "us-east-1")
    _wait(driver).until(ec.presence_of_element_located((By.ID, "step-1-done")))

    done = runner.api("operator").post(runner.api_url(f"/jobs/{job_uuid}/steps/1/done"), json={}, timeout=10)

    assert done.status_code == 200
    _wait(driver).until(lambda d: d.find_element(By.ID, "run-step-1").get_attribute("data-status") == "done")
    _wait(driver).until(ec.presence_of_element_located((By.ID, "step-2-done")))
    assert driver.execute_script("return window.__sameDocument") == "yes"


def test_aborting_a_run_shows_it_cancelled(browser, live_runner):
    driver, runner = browser, live_runner
    runbook = _published_runbook(runner, "Rotate the gateway key", [{"title": "Create a new key for {{ params.region }}",
                                                                     "rollback_note": "Delete the new key"}])
    _sign_in(driver, runner, "operator")
    job_uuid = _execute(driver, runner, runbook["key"], "eu-central-1")
    _wait(driver).until(ec.presence_of_element_located((By.ID, "step-1-done")))

    _click(driver, "job-abort")
    _wait(driver).until(ec.alert_is_present()).accept()

    _wait(driver).until(lambda d: _status(d) == "Cancelled")
    assert "Cancelled by operator-person" in driver.find_element(By.ID, "end-banner").text
    assert driver.find_elements(By.ID, "job-abort") == []
    assert driver.execute_script("return window.__sameDocument") == "yes"
    assert runner.api().get(runner.api_url(f"/jobs/{job_uuid}"), timeout=10).json()["status"] == "cancelled"


def test_history_compares_two_versions(browser, live_runner):
    driver, runner = browser, live_runner
    runbook = _published_runbook(runner, "Fail over the database", [
        {"title": "Announce the fail-over in #ops", "description": "Post in #ops.\nLink the incident."},
        {"title": "Promote the replica in {{ params.region }}"},
        {"title": "Update the old status page"},
    ])
    edit = {"steps": [
        {"title": "Announce the fail-over in #ops", "description": "Post in #ops.\nLink the change request."},
        {"title": "Promote the replica in {{ params.region }}"},
        {"title": "Check replication lag in {{ params.region }}"},
    ]}
    assert runner.api().patch(runner.api_url(f"/runbooks/{runbook['key']}"), json=edit, timeout=10).status_code == 200
    _sign_in(driver, runner)
    driver.get(f"{runner.url}/console/ws/acme/runbooks/{runbook['key']}/history")

    driver.find_element(By.ID, "from-1").click()
    driver.find_element(By.ID, "to-2").click()
    _click(driver, "compare")

    diff = _wait(driver).until(ec.presence_of_element_located((By.CSS_SELECTOR, "section.diff")))
    assert "- Link the incident." in diff.text and "+ Link the change request." in diff.text
    assert "+ Check replication lag in {{ params.region }}" in diff.text
    assert "- Update the old status page" in diff.text
    _shot(driver, "diff.png")


def test_the_run_view_fits_a_narrow_screen(browser, live_runner):
    driver, runner = browser, live_runner
    runbook = _published_runbook(runner, "Restart a very-long-named-service-in-a-narrow-window", [
        {"title": "Drain https://load-balancer.example.com/pools/{{ params.region }}/members/all-of-them-please",
         "description": "A long line: " + "x" * 120, "is_destructive": True, "rollback_note": "Re-add the members"}])
    _sign_in(driver, runner)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 375, "height": 812, "deviceScaleFactor": 1, "mobile": True})
    try:
        _execute(driver, runner, runbook["key"], "ap-southeast-2")
        _wait(driver).until(ec.presence_of_element_located((By.ID, "step-1-done")))

        width = driver.execute_script("return window.innerWidth")
        scroll = driver.execute_script("return document.documentElement.scrollWidth")
        _shot(driver, "run-view-narrow.png")
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    assert width == 375
    assert scroll <= width, f"the run view is {scroll}px wide on a {width}px screen"


def test_keyboard_alone_signs_in_and_focus_is_visible(browser, live_runner):
    driver, runner = browser, live_runner
    driver.delete_all_cookies()
    driver.get(runner.url + "/console/sign-in")
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)

    focused = [driver.switch_to.active_element.get_attribute("class")]
    for _ in range(10):
        if driver.switch_to.active_element.get_attribute("id") == "token":
            break
        driver.switch_to.active_element.send_keys(Keys.TAB)
    token = driver.switch_to.active_element
    reached = token.get_attribute("id")
    outline = driver.execute_script("return getComputedStyle(arguments[0]).outlineStyle", token)
    token.send_keys(runner.tokens["member"], Keys.ENTER)

    _wait(driver).until(ec.url_contains("/console/ws/acme/runbooks"))
    assert focused == ["skip-link"]
    assert reached == "token"
    assert outline != "none"
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
