"""The Celery configuration of freshrec's workers: Airflow's own, plus `tasks.preload` among the modules a
worker imports in its main process before its prefork pool starts, so each task try starts with torch,
transformers and Great Expectations already loaded (tasks/preload.py says why and what).

    AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=tasks.celery_config.CELERY_CONFIG

The scheduler and the API server read this dict too; only a worker imports `imports`, so they stay light.
It is a whole configuration (the global one): with Airflow's multi-team executors, which merge a user
configuration over each team's, set only `imports` in a dict of its own instead.
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

CELERY_CONFIG = {**DEFAULT_CELERY_CONFIG, "imports": (*DEFAULT_CELERY_CONFIG.get("imports", ()), "tasks.preload")}
