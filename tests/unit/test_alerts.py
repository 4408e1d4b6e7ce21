"""Alerts (tasks/alerts.py) against a real HTTP endpoint on loopback: the message arrives as JSON; a
failing, refusing or slow endpoint costs the task a warning (with the message) and at most the timeout,
never a failure; the webhook URL's path, its token, is never logged."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from tasks.alerts import DayAlert, send


def test_a_message_arrives_as_json(webhook):
    assert send(webhook.url, "freshrec: hello", {"event": "failed", "day": "1998-03-01"})
    (msg,) = webhook.messages
    assert msg["type"] == "application/json" and msg["path"] == "/hooks/T000/not-to-be-logged"
    assert msg["text"] == "freshrec: hello" and msg["freshrec"] == {"event": "failed", "day": "1998-03-01"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_endpoint_that_fails_costs_a_warning_not_the_task(webhook, caplog):
    caplog.set_level(logging.WARNING, logger="tasks.alerts")
    webhook.status = 500
    assert not send(webhook.url, "freshrec: day failed", {})
    webhook.status, webhook.delay = 200, 3.0
    t0 = time.monotonic()
    assert not send(webhook.url, "freshrec: slow", {}, timeout=0.5)  # bounded by the timeout
    assert time.monotonic() - t0 < 2.5
    refused = f"http://127.0.0.1:{_closed_port()}/hooks/T000/not-to-be-logged"
    assert not send(refused, "freshrec: refused", {})
    assert not send("file:///etc/passwd", "freshrec: not http", {})
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 4 and "answered 500" in said[0] and "timed out" in said[1] and "Connection" in said[2]
    assert all("freshrec: " in m for m in said)  # the message is in the task's log all the same
    assert "http://127.0.0.1:" in said[0] and not any("not-to-be-logged" in m for m in caplog.text.splitlines())


def test_a_reply_that_is_not_http_or_a_malformed_url_is_a_warning_that_holds_no_token(caplog):
    """What urllib raises outside OSError (BadStatusLine, InvalidURL: its message is the URL) never reaches the
    task, and the warning says what failed without the URL's path."""
    caplog.set_level(logging.WARNING, logger="tasks.alerts")
    with socket.socket() as srv:  # answers every connection with a line that is not HTTP
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]

        def garbage():
            conn, _ = srv.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"this is not HTTP\r\n\r\n")

        thread = threading.Thread(target=garbage, daemon=True)
        thread.start()
        assert not send(f"http://127.0.0.1:{port}/hooks/T000/not-to-be-logged", "freshrec: garbled", {})
        thread.join(5)
    assert not send("http://127.0.0.1:1/hooks/T000/not to be logged", "freshrec: spaces", {})
    assert not send("http://[::1/hooks/T000/not-to-be-logged", "freshrec: broken host", {})
    assert not send("http://127.0.0.1:port/hooks/T000/not-to-be-logged", "freshrec: bad port", {})
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 4 and "BadStatusLine" in said[0] and "InvalidURL" in said[1], said
    assert "not-to-be-logged" not in caplog.text and "not to be logged" not in caplog.text


def test_a_notifier_that_cannot_build_its_message_does_not_raise(caplog):
    """Airflow's approval calls its notifiers unguarded: a failing lookup (here the run's task states) must
    not fail the approval. The fault is injected through a task instance whose state lookup fails."""

    class Unreachable:
        dag_id, run_id, task_id, try_number, log_url = "d", "r", "t", 1, "http://x/dags/d/runs/r/tasks/t"

        def get_task_states(self, **kw):
            raise ConnectionError("API server unreachable")

    caplog.set_level(logging.WARNING, logger="tasks.alerts")
    DayAlert("failed").notify({"ti": Unreachable(), "params": {"day": "1998-03-01"}})
    assert "the failed alert could not be built, not sent (ConnectionError: API server unreachable)" in caplog.text


def test_no_webhook_sends_nothing_and_an_unknown_event_is_refused():
    assert not send(None, "freshrec: nobody listens", {})
    with pytest.raises(ValueError, match="unknown alert event 'paged'"):
        DayAlert("paged")
