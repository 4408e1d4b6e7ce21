"""`make test-ui`: what an approver does, in Debian's headless Chromium against a real Airflow:
log in, trigger a day from the trigger form, open Required Actions and the approval request, open
every evidence link (Data Docs, drift report, the day's reports: served by the freshrec plugin behind
the same login), approve. Screenshots of each step go to .run/ui-screenshots/ (FRESHREC_UI_SHOTS);
a broken link fails the test."""

from __future__ import annotations

import shutil
import time

import pytest

from tests.conftest import DAY1
from tests.ui.conftest import SHOTS

pytestmark = [pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def _pending(stack, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = stack.rest("GET", "/api/v2/dags/freshrec_daily/dagRuns/~/hitlDetails?response_received=false")
        if r.get("hitl_details"):
            return r["hitl_details"][0]
        failed = stack.rest("GET", "/api/v2/dags/freshrec_daily/dagRuns?state=failed")["dag_runs"]
        manual = [d for d in failed if d["run_type"] == "manual"]
        assert not manual, f"the run failed before its approval{stack.tails()}"
        time.sleep(5)
    raise TimeoutError(f"no approval request within {timeout}s{stack.tails()}")


def _run_state(stack, run_id: str, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = stack.rest("GET", f"/api/v2/dags/freshrec_daily/dagRuns/{run_id}")["state"]
        if state in ("success", "failed"):
            return state
        time.sleep(3)
    raise TimeoutError(f"run {run_id} did not finish{stack.tails()}")


def test_an_approver_triggers_reviews_the_evidence_and_approves_in_the_browser(stack):
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:
        pytest.fail("needs Debian's chromium on PATH: `make test-ui` installs it")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(f"{stack.url}/")  # not logged in: Airflow's login page
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", stack.password)
        page.keyboard.press("Enter")
        page.wait_for_url(lambda url: "/auth/" not in url)  # logged in: back in the UI
        page.get_by_test_id("trigger-dag-button").or_(page.get_by_text("Dags")).first.wait_for()
        page.wait_for_load_state("networkidle")

        page.get_by_role("link", name="freshrec reports").or_(page.get_by_text("freshrec reports")).first.click()
        page.wait_for_url(lambda url: "/plugin/freshrec-reports" in url)  # the sidebar entry opens the index
        frame = page.frame_locator("iframe").first
        frame.get_by_role("heading", name="freshrec reports").wait_for()  # inside the UI, behind the same login
        _shot(page, "0-sidebar-reports")

        page.goto(f"{stack.url}/dags/freshrec_daily")  # trigger the day from the form, as the docs say
        page.get_by_test_id("trigger-dag-button").click()
        page.fill("#element_day", DAY1)
        _shot(page, "1-trigger-form")
        page.get_by_role("dialog").get_by_role("button", name="Trigger").last.click()
        request = _pending(stack)
        run_id = request["task_instance"]["dag_run_id"]

        page.goto(f"{stack.url}/required_actions")
        subject = page.get_by_text(f"freshrec: promote the challenger for {DAY1}?")
        subject.first.wait_for()
        _shot(page, "2-required-actions")
        subject.first.click()
        page.get_by_text("Candidate version").first.wait_for()
        _shot(page, "3-approval-request")

        links = sorted({a.get_attribute("href") for a in page.locator("a[href*='/freshrec/reports/']").all()})
        assert len(links) >= 5, links  # Data Docs, the drift report, the evaluation, the benchmark, the index
        assert any(h.endswith("/evaluation") for h in links) and any(h.endswith("/benchmark") for h in links)
        for i, href in enumerate(links):  # each opens in the browser, through the plugin, with the same login
            tab = context.new_page()  # the same browser session: the login's cookie
            response = tab.goto(href)
            assert response is not None and response.status == 200, (href, response and response.status)
            assert "not authenticated" not in tab.content().lower()
            _shot(tab, f"4-evidence-{i}")
            tab.close()

        page.locator("#element_reason").fill("gate passed; p99 within budget")  # the Reason field (optional here)
        page.get_by_role("button", name="Approve").first.click()
        assert _run_state(stack, run_id) == "success"
        browser.close()
    ti = stack.rest("GET", f"/api/v2/dags/freshrec_daily/dagRuns/{run_id}/taskInstances/promote_champion")
    assert ti["state"] == "success"
    hitl = stack.rest(
        "GET", f"/api/v2/dags/freshrec_daily/dagRuns/{run_id}/taskInstances/approve_promotion/-1/hitlDetails"
    )
    assert hitl["chosen_options"] == ["Approve"] and hitl["responded_by_user"]["name"] == "admin"
    assert (hitl.get("params_input") or {}).get("reason") == "gate passed; p99 within budget", hitl
    # "Unpause on trigger" also started yesterday's scheduled run, outside the replay's data window:
    # it stops at its first task, skipped (not red), and its log says why
    runs = stack.rest("GET", "/api/v2/dags/freshrec_daily/dagRuns?run_type=scheduled")["dag_runs"]
    for run in runs:
        assert _run_state(stack, run["dag_run_id"]) == "success", run
        first = stack.rest(
            "GET", f"/api/v2/dags/freshrec_daily/dagRuns/{run['dag_run_id']}/taskInstances/wait_for_landing"
        )
        assert first["state"] == "skipped", first
