"""Alerts (tasks/alerts.py) against a real HTTP endpoint on loopback: the message arrives as JSON; a
failing, refusing or slow endpoint costs the task a warning (with the message) and at most the timeout,
never a failure; the webhook URL's path, its token, is never logged."""

from __future__ import annotations

import logging
import socket
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


def test_no_webhook_sends_nothing_and_an_unknown_event_is_refused():
    assert not send(None, "freshrec: nobody listens", {})
    with pytest.raises(ValueError, match="unknown alert event 'paged'"):
        DayAlert("paged")
