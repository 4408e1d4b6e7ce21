"""Telling people: a webhook message when a day needs someone (a task failed for good, a promotion
waits for its approver).

`FRESHREC_ALERT_WEBHOOK` is an incoming-webhook URL (Slack, Mattermost, Teams' or any endpoint that
takes a JSON POST): the message is `{"text": "...", "freshrec": {event, dag_id, run_id, task_id, day,
url}}`, the `text` a line a person reads in the channel. Unset, nothing is sent. The URL is a secret
(such URLs carry their token in the path): it is never logged, only its scheme and host.

Sending never fails the task it reports on: one POST, bounded by `TIMEOUT_SECONDS`; a refused,
slow or failing endpoint is a warning in the task's log (with the message, so nothing is lost),
and the day goes on as it would have. `DayAlert` is the Airflow notifier the DAGs attach: the failure
callback of the task that fails a run (one message a failed day), and the notifier of
`approve_promotion`.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from airflow.sdk.bases.notifier import BaseNotifier

LOG = logging.getLogger(__name__)
TIMEOUT_SECONDS = 5.0
EVENTS = {
    "failed": "{dag_id} {day}: {task_id} failed (after its retries): {url}",
    "approval": "{dag_id} {day}: the challenger waits for your approval (no answer by {deadline} is a Reject): {url}",
}


def endpoint_name(url: str) -> str:
    """What may be logged of a webhook URL: its scheme and host (the path and query hold its token)."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}"
    except ValueError:  # a malformed host or port: nothing of it is logged
        return "(a malformed URL)"


def _why(exc: BaseException) -> str:
    """Why a POST failed, in words that cannot hold the URL (an InvalidURL's message is the URL itself)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"it answered {exc.code}"
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:  # refused, unreachable, a name that does not resolve
        return f"{type(reason).__name__}: {reason.strerror}"
    return type(exc).__name__  # e.g. BadStatusLine (a reply that is not HTTP), InvalidURL


def send(url: str | None, text: str, fields: dict, timeout: float = TIMEOUT_SECONDS) -> bool:
    """POST the message to `url`; whether the endpoint took it (2xx). Never raises: a failure is logged
    with the message, so the task's log still says what should have been told."""
    if not url:
        LOG.debug("no FRESHREC_ALERT_WEBHOOK: not sent: %s", text)
        return False
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in ("http", "https"):
        LOG.warning("FRESHREC_ALERT_WEBHOOK is not an http(s) URL: not sent: %s", text)
        return False
    try:
        body = json.dumps({"text": text, "freshrec": fields}).encode()
        headers = {"Content-Type": "application/json"}
        req = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310 (http(s) only)
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            resp.read(1024)
            return True
    except Exception as exc:  # an alert never fails the task it reports on
        why = _why(exc)
    LOG.warning("alert not delivered to %s (%s): %s", endpoint_name(url), why, text)
    return False


class DayAlert(BaseNotifier):
    """The notifier of one `event` (EVENTS) for the DAGs: the message names the DAG, the day, the task
    and where to look (the task's page in the Airflow UI).

    `failed` names every task of the run that failed so far, other than the one reporting: the daily DAG
    attaches it to `fail_run_if_any_failed`, which runs once, as soon as any step fails, so a failed day
    is one message however many tasks fail after it (a one-task DAG attaches it to its task)."""

    def __init__(self, event: str):
        if event not in EVENTS:
            raise ValueError(f"unknown alert event {event!r}: one of {sorted(EVENTS)}")
        super().__init__()
        self.event = event

    def notify(self, context) -> None:
        """Never raises: Airflow's HITL operator calls its notifiers unguarded, so an exception here would
        fail the approval (and with it the day's promotion)."""
        try:
            self._notify(context)
        except Exception as exc:
            LOG.warning("the %s alert could not be built, not sent (%s: %s)", self.event, type(exc).__name__, exc)

    def _notify(self, context) -> None:
        from tasks.settings import settings

        ti = context["ti"]
        params = context.get("params") or {}
        day = params.get("day") or context.get("ds") or "?"
        task_ids, url = [ti.task_id], ti.log_url
        if self.event == "failed":
            states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
            dag = context.get("dag")
            order = [t.task_id for t in dag.topological_sort()] if dag is not None else sorted(states)
            failed = [t for t in order if states.get(t) == "failed" and t != ti.task_id]
            if failed:  # the steps that failed, in the DAG's order, and the first one's page (its log)
                task_ids, url = failed, url.split("/tasks/")[0] + f"/tasks/{failed[0]}"
        timeout = getattr(context.get("task"), "response_timeout", None)
        deadline = f"{timeout.total_seconds() / 3600:g} h from now" if timeout else "the timeout"
        fields = {"event": self.event, "dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ", ".join(task_ids),
                  "day": str(day), "url": url}  # fmt: skip
        text = EVENTS[self.event].format(**fields, deadline=deadline)
        send(settings().alert_webhook, f"freshrec: {text}", fields)
