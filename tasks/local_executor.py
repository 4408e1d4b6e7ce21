"""Airflow's LocalExecutor, without its deferral race: `[core] executor = tasks.local_executor.LocalExecutor`
(scripts/env.sh sets it for `make airflow`; the LocalExecutor test stacks use it too).

A deferrable task (the approval, the day's waits in tasks/waits.py) runs twice under one task-instance
key: the process that defers exits with "success", and when the trigger fires the same try is queued
again. If the scheduler reads the first process's exit only after it has queued the second, Airflow
3.3.2 takes that stale "success" for a task killed externally and fails the try (apache/airflow#67287
for a resumed try still queued, #72716 once it runs; only the scheduled state is guarded in this
release). It struck when an approver answered within seconds of the request on a busy scheduler: the
day failed although its answer was on record.

This executor counts the processes it has started for each key and drops a "success" that arrives while
a later process for the same key is still out: that exit is the deferral's, and the later process
reports its own. Everything else goes through unchanged.
"""

from __future__ import annotations

from collections import Counter

from airflow.executors import local_executor
from airflow.executors.workloads import ExecuteTask
from airflow.utils.state import TaskInstanceState


class LocalExecutor(local_executor.LocalExecutor):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.started: Counter = Counter()  # task-instance key -> its processes not yet reported finished

    def _process_workloads(self, workload_list):
        for workload in workload_list:
            if isinstance(workload, ExecuteTask):
                self.started[workload.key] += 1
        super()._process_workloads(workload_list)

    def _read_results(self):
        while not self.result_queue.empty():
            key, state, _ = self.result_queue.get()
            if state in (TaskInstanceState.SUCCESS, TaskInstanceState.FAILED) and key in self.started:
                self.started[key] -= 1
                if not self.started[key]:
                    del self.started[key]
                elif state == TaskInstanceState.SUCCESS:
                    self.log.info("%s: an earlier process (a deferral) exited; the try runs again: not its end", key)
                    continue
            self.change_state(key, state)
