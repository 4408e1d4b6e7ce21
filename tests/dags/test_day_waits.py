"""The day's waits (tasks/waits.py, DayWait in dags/freshrec_daily.py): held in the triggerer against the
real object store, fired when the day can go on, never deciding for the task; a wait past its limit
fails for good. (`make test-distributed` runs them in a real triggerer: the first-hour test.)"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import threading

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "dags"))


def _first_event(trigger, timeout: float = 60.0):
    async def first():
        return await anext(trigger.run())

    return asyncio.run(asyncio.wait_for(first(), timeout))


def test_the_landing_wait_fires_once_the_day_lands(bootstrapped):
    from airflow.sdk._shared.module_loading import import_string

    from tasks import replay
    from tasks.waits import DayReady

    params, day = bootstrapped["params"], bootstrapped["day1"]
    trigger = DayReady("landing", str(day), params, poke_seconds=0.05)
    assert "has not landed yet" in trigger.why_waiting()
    classpath, kwargs = trigger.serialize()  # what the triggerer stores and rebuilds
    assert import_string(classpath)(**kwargs).serialize() == (classpath, kwargs)

    threading.Timer(1.0, replay.run, (day, params)).start()  # the upstream export lands the day meanwhile
    event = _first_event(trigger)
    assert event.payload["day"] == str(day) and event.payload["waited_s"] >= 1.0
    assert trigger.why_waiting() is None


def test_the_base_wait_holds_a_day_until_the_day_before_has_an_outcome(bootstrapped):
    from tasks.common import write_json
    from tasks.day import OUTCOME, push
    from tasks.store import Store
    from tasks.waits import DayReady

    params, layout, day1 = bootstrapped["params"], bootstrapped["layout"], bootstrapped["day1"]
    day2 = day1 + dt.timedelta(days=1)
    assert DayReady("base", str(day1), params).why_waiting() is None  # the bootstrap's outcome is there
    trigger = DayReady("base", str(day2), params, poke_seconds=0.05)
    assert f"day {day1} has no recorded outcome" in trigger.why_waiting()

    def day1_ends():  # rejected: the champion stays, and day 2 builds on it
        write_json(OUTCOME.path(layout, day1), {"day": str(day1), "status": "rejected",
                                                "champion_after": bootstrapped["champion"]})  # fmt: skip
        push(Store.from_env(params), layout, day1, (OUTCOME,))

    threading.Timer(1.0, day1_ends).start()
    event = _first_event(trigger)
    assert (event.payload["wait"], event.payload["day"]) == ("base", str(day2)) and event.payload["waited_s"] >= 1.0


def test_a_check_that_fails_in_the_triggerer_keeps_the_day_waiting_and_says_why(bootstrapped, capfd):
    """A look that fails in the triggerer (here: a `base` naming no version; a triggerer without the S3
    settings fails the same way) never fires: a resumed task would only defer again, a worker process per
    cycle. The day waits, the log says why, and the wait's timeout ends it."""
    from tasks.waits import DayReady

    params, day = bootstrapped["params"], bootstrapped["day1"]
    trigger = DayReady("base", str(day), params, override="1997-01-01-nope", poke_seconds=0.05)
    assert trigger.why_waiting().startswith("the base check failed (FreshrecError: version '1997-01-01-nope'")
    with pytest.raises(TimeoutError):
        _first_event(trigger, timeout=2.0)
    said = capfd.readouterr()  # the trigger's log (structlog, as in the triggerer)
    assert f"day {day} waits: the base check failed" in said.out + said.err


def test_a_day_wait_defers_while_waiting_and_fails_for_good_past_its_limit():
    from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
    from freshrec_daily import DayWait

    from tasks.waits import DayReady

    ready = DayWait(task_id="ready", check=lambda context: ("v1", None), wait_seconds=5)
    assert ready.execute({}) == "v1"
    trigger = DayReady("base", "1997-10-01", {}, poke_seconds=1)
    waiting = DayWait(task_id="waiting", check=lambda context: (None, trigger), wait_seconds=5)
    with pytest.raises(TaskDeferred) as deferred:
        waiting.execute({})
    assert deferred.value.trigger is trigger and deferred.value.method_name == "execute"
    assert deferred.value.timeout == dt.timedelta(seconds=5)
    assert ready.execute({}, event={"day": "1997-10-01", "waited_s": 3.0}) == "v1"  # resumed: checks again
    with pytest.raises(AirflowFailException, match="still waiting after 5 s"):  # not retried: it would wait again
        waiting.resume_execution("__fail__", {"error": "Trigger timeout"}, {})
