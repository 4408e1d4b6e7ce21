"""The day's waits, held in Airflow's triggerer instead of a worker slot.

A day waits twice: for its delivery (wait_for_landing) and for the outcome of the day before, or of
the bootstrap, that it builds on (pull_champion, up to two approval timeouts). The task checks once on a
worker; while the day cannot go on it defers to `DayReady`, which asks `tasks.day.waiting_for` in the
triggerer every `FRESHREC_BASE_POKE_SECONDS` (one coroutine among many, no process per look), and fires
when the day can go on. The task then resumes on a worker and checks again before it goes on: the
trigger never decides. A look that fails in the triggerer (S3 unreachable, a triggerer without the
workers' S3 settings) is a reason to wait, said in the log, never a reason to fire: firing would resume
the task, which would defer again at once, a worker process per cycle. The wait's timeout bounds it."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class DayReady(BaseTrigger):
    """Fires once `wait` (`landing` or `base`, tasks/day.py WAITS) no longer holds day `day` back.

    `params` are the day's snapshot (runs/date=D/params.json, JSON), so the triggerer asks under the
    same params as the day's tasks; it reads the object store from a private working directory of its
    own machine (tasks/day.py task_scope), removed after each look."""

    def __init__(self, wait: str, day: str, params: dict, override: str | None = None, poke_seconds: float = 60.0):
        super().__init__()
        self.wait, self.day, self.params, self.override, self.poke_seconds = wait, day, params, override, poke_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"wait": self.wait, "day": self.day, "params": self.params, "override": self.override,
             "poke_seconds": self.poke_seconds},
        )  # fmt: skip

    def why_waiting(self) -> str | None:
        """One look: why the day still waits (a look that failed included), or None once it can go on."""
        from tasks.common import parse_day
        from tasks.day import WAITS, task_scope, waiting_for

        day = parse_day(self.day)
        try:
            with task_scope(f"{WAITS[self.wait]}-trigger", day, self.params) as (layout, store):
                return waiting_for(self.wait, day, self.params, layout, store, self.override)
        except Exception as exc:  # looked again at the next poke; the wait's timeout ends it
            return f"the {self.wait} check failed ({type(exc).__name__}: {exc}); looking again"

    async def run(self) -> AsyncIterator[TriggerEvent]:
        said, since = None, dt.datetime.now(dt.UTC)
        while (why := await asyncio.to_thread(self.why_waiting)) is not None:
            if why != said:  # what the day waits for, once, and again only when it changes
                (self.log.warning if "check failed" in why else self.log.info)("day %s waits: %s", self.day, why)
                said = why
            await asyncio.sleep(self.poke_seconds)
        waited = (dt.datetime.now(dt.UTC) - since).total_seconds()
        yield TriggerEvent({"wait": self.wait, "day": self.day, "waited_s": round(waited, 1)})
