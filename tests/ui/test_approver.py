"""`make test-ui`: what an approver does, in Debian's headless Chromium against a real Airflow:
log in, open the reports from the sidebar, trigger a day from the trigger form, open Required Actions
and the approval request, open every evidence link of the request and of the day's index (Data Docs,
drift report, evaluation, benchmark: served by the freshrec plugin behind the same login), approve;
then reject the next day with a reason and find it in the grid, the run's summary and the history.
Screenshots of each step go to .run/ui-screenshots/ (FRESHREC_UI_SHOTS); a broken link fails the test.

Data Docs are checked as a browser renders them: styled (Bootstrap's layout applies), complete (the
scripts ran: bootstrap-table filled its lists), every file from the same server (nothing from the
internet), and sandboxed: the page's script cannot read the session cookie nor call Airflow's API."""

from __future__ import annotations

import shutil
import time

import pytest

from tests.conftest import DAY1, DAY2
from tests.ui.conftest import SHOTS

pytestmark = [pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


REJECT_REASON = "new-item HR fell on a thin holdout; retrain with the catalogue fix"
# a sandboxed page's script, asked for the viewer's session: the cookie and a call of Airflow's API
SESSION_PROBE = """async () => {
  let cookie, api;
  try { cookie = document.cookie === "" ? "empty" : "readable"; } catch (e) { cookie = e.name; }
  try { api = (await fetch("/api/v2/dags", {credentials: "include"})).status; } catch (e) { api = "blocked"; }
  return {cookie, api, origin: window.origin};
}"""


def _pending(stack, run_id: str, timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = stack.rest("GET", f"/api/v2/dags/freshrec_daily/dagRuns/{run_id}/hitlDetails?response_received=false")
        if r.get("hitl_details"):
            return r["hitl_details"][0]
        failed = stack.rest("GET", "/api/v2/dags/freshrec_daily/dagRuns?state=failed")["dag_runs"]
        manual = [d for d in failed if d["run_type"] == "manual"]
        assert not manual, f"the run failed before its approval{stack.tails()}"
        time.sleep(5)
    raise TimeoutError(f"no approval request within {timeout}s{stack.tails()}")


def _run_of(stack, day: str, timeout: float = 60) -> str:
    """The manual run the form just triggered for `day`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = stack.rest("GET", "/api/v2/dags/freshrec_daily/dagRuns?run_type=manual")["dag_runs"]
        if mine := [r["dag_run_id"] for r in runs if (r.get("conf") or {}).get("day") == day]:
            return mine[0]
        time.sleep(1)
    raise TimeoutError(f"no manual run for {day}{stack.tails()}")


def _run_state(stack, run_id: str, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = stack.rest("GET", f"/api/v2/dags/freshrec_daily/dagRuns/{run_id}")["state"]
        if state in ("success", "failed"):
            return state
        time.sleep(3)
    raise TimeoutError(f"run {run_id} did not finish{stack.tails()}")


def _succeeds(stack, run_id: str) -> None:
    """The run ends in success; if not, the failure says which tasks failed and what their logs say."""
    state = _run_state(stack, run_id)
    if state != "success":
        tis = stack.rest("GET", f"/api/v2/dags/freshrec_daily/dagRuns/{run_id}/taskInstances")["task_instances"]
        failed = [("freshrec_daily", t["task_id"], t["try_number"]) for t in tis if t["state"] == "failed"]
        pytest.fail(f"run {run_id} ended {state}; failed: {[f[1:] for f in failed]}{stack.task_logs(failed)}")


def _check_data_docs(tab, origin: str, loaded: list[str], failed: list[str]) -> None:
    """A Data Docs page as the approver sees it: styled, its scripts run, all of it from `origin`, and
    its scripts without the viewer's session."""
    tab.wait_for_load_state("networkidle")
    assert not failed, failed  # every stylesheet, script, font and image loaded
    outside = [u for u in loaded if not u.startswith((origin, "data:"))]
    assert not outside, outside  # nothing from the internet
    assert tab.evaluate("getComputedStyle(document.querySelector('.navbar')).display") == "flex"  # Bootstrap's CSS
    assert tab.evaluate("typeof window.jQuery === 'function' && typeof window.vegaEmbed === 'function'")
    if tab.locator("table[data-toggle='table'], .bootstrap-table").count():  # an index: its lists are filled
        tab.locator(".bootstrap-table tbody tr").first.wait_for()
        assert "No matching records" not in tab.locator(".bootstrap-table").first.inner_text()
    probe = tab.evaluate(SESSION_PROBE)
    assert probe == {"cookie": "SecurityError", "api": "blocked", "origin": "null"}, probe


def _open(context, href: str, origin: str, name: str) -> None:
    """Open a link in a tab of the same browser session (the login's cookie): 200, logged in, and a
    Data Docs page checked whole."""
    tab = context.new_page()
    loaded, failed = [], []
    tab.on("request", lambda r: loaded.append(r.url))
    tab.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
    tab.on("response", lambda r: r.status >= 400 and failed.append(f"{r.url}: {r.status}"))
    response = tab.goto(href)
    assert response is not None and response.status == 200, (href, response and response.status)
    assert "not authenticated" not in tab.content().lower()
    if "/data_docs/" in href:
        _check_data_docs(tab, origin, loaded, failed)
    _shot(tab, name)
    tab.close()


def test_an_approver_triggers_reviews_the_evidence_and_approves_in_the_browser(stack):
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:
        pytest.fail("needs Debian's chromium on PATH: `make test-ui` installs it")
    t0 = time.monotonic()
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
        run_id = _run_of(stack, DAY1)
        # the next day, triggered over REST as an operator does: it waits for day 1's outcome, then runs
        run2 = stack.rest("POST", "/api/v2/dags/freshrec_daily/dagRuns", {"logical_date": None, "conf": {"day": DAY2}})
        _pending(stack, run_id)
        print(f"[ui] day 1 waits for its approval: {time.monotonic() - t0:.0f} s into the test")

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
            _open(context, href, stack.url, f"4-evidence-{i}")
        index = next(h for h in links if h.endswith(f"/reports/{DAY1}/"))
        page.goto(index)
        listed = [page.url.rsplit("/", 1)[0] + "/" + a.get_attribute("href") for a in page.locator("li a").all()]
        assert sum("/data_docs/" in h for h in listed) == 2, listed  # the day's events and its catalogue
        for i, href in enumerate(sorted(set(listed) - set(links))):  # and every link of the day's index
            _open(context, href, stack.url, f"4-index-{i}")

        page.goto(f"{stack.url}/required_actions")
        page.get_by_text(f"freshrec: promote the challenger for {DAY1}?").first.click()
        page.locator("#element_reason").fill("gate passed; p99 within budget")  # the Reason field (optional here)
        page.get_by_role("button", name="Approve").first.click()
        _succeeds(stack, run_id)

        # day 2: rejected, with a reason, in the browser
        print(f"[ui] day 1 approved and promoted: {time.monotonic() - t0:.0f} s")
        request2 = _pending(stack, run2["dag_run_id"])
        print(f"[ui] day 2 waits for its approval: {time.monotonic() - t0:.0f} s")
        page.goto(f"{stack.url}/required_actions")
        page.get_by_text(f"freshrec: promote the challenger for {DAY2}?").first.click()
        page.get_by_text("Candidate version").first.wait_for()
        page.locator("#element_reason").fill(REJECT_REASON)
        _shot(page, "5-reject-with-reason")
        page.get_by_role("button", name="Reject").first.click()
        _succeeds(stack, run2["dag_run_id"])  # a rejected day does not fail its run
        page.reload()  # the request page, answered: who, and the answer with its reason
        page.get_by_text("Response received").first.wait_for()
        page.locator("#element_reason").scroll_into_view_if_needed()
        assert page.locator("#element_reason").input_value() == REJECT_REASON
        _shot(page, "6-rejected-request")
        page.goto(f"{stack.url}/dags/freshrec_daily")
        page.wait_for_load_state("networkidle")
        _shot(page, "7-rejected-day-grid")
        browser.close()
    assert request2["task_instance"]["dag_run_id"] == run2["dag_run_id"]
    ti = stack.rest("GET", f"/api/v2/dags/freshrec_daily/dagRuns/{run_id}/taskInstances/promote_champion")
    assert ti["state"] == "success"
    hitl = stack.rest(
        "GET", f"/api/v2/dags/freshrec_daily/dagRuns/{run_id}/taskInstances/approve_promotion/-1/hitlDetails"
    )
    assert hitl["chosen_options"] == ["Approve"] and hitl["responded_by_user"]["name"] == "admin"
    assert (hitl.get("params_input") or {}).get("reason") == "gate passed; p99 within budget", hitl
    # the rejected day: its answer, in the approver's words, in the XCom, the summary and the grid
    rejected = f"/api/v2/dags/freshrec_daily/dagRuns/{run2['dag_run_id']}/taskInstances"
    decision = stack.rest("GET", f"{rejected}/approve_promotion/xcomEntries/decision")["value"]
    assert decision["chosen_options"] == ["Reject"] and decision["reason"] == REJECT_REASON, decision
    assert decision["who"] == "admin" and decision["responded_at"]
    assert stack.rest("GET", f"{rejected}/summarize_run")["state"] == "skipped"  # not green like a promoted day
    assert stack.rest("GET", f"{rejected}/promote_champion")["state"] == "skipped"
    summary = stack.rest("GET", f"{rejected}/summarize_run/xcomEntries/summary")["value"]
    promotion = summary["promotion"]
    assert promotion["status"] == "rejected" and promotion["reason"] == REJECT_REASON, summary
    assert promotion["approver"] == "admin" and promotion["answered_at"]
    history = stack.history()
    (rejection,) = [h for h in history if h.get("action") == "reject"]
    assert rejection["day"] == DAY2 and rejection["reason"] == REJECT_REASON and rejection["approver"] == "admin"
    # "Unpause on trigger" also started yesterday's scheduled run, outside the replay's data window:
    # it stops at its first task, skipped (not red), and its log says why
    runs = stack.rest("GET", "/api/v2/dags/freshrec_daily/dagRuns?run_type=scheduled")["dag_runs"]
    for run in runs:
        _succeeds(stack, run["dag_run_id"])
        first = stack.rest(
            "GET", f"/api/v2/dags/freshrec_daily/dagRuns/{run['dag_run_id']}/taskInstances/wait_for_landing"
        )
        assert first["state"] == "skipped", first
