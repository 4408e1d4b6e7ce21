"""Every environment setting freshrec reads, in one place: the facts of a deployment (where the data
root, the params file, the bucket, the S3 endpoint and the landing zone are; the data window; queues).
Tunables are params.yaml (tasks/params.py); credentials stay in the environment of the tools that use
them (AWS_* for boto3, AIRFLOW__* for Airflow) and are never read or logged here.

    FRESHREC_DATA          the local data root (default data/): a cache on workers
    FRESHREC_PARAMS        the params file (default params.yaml in the project root)
    FRESHREC_BUCKET        the bucket (default: params.yaml promote.bucket)
    FRESHREC_S3_ENDPOINT   the S3 endpoint (default http://127.0.0.1:8333; empty: AWS itself)
    FRESHREC_LANDING_DIR   the landing zone (default: params.yaml source.landing_dir)
    FRESHREC_START_DATE    the first day data exists for (default 1997-09-20, the ML-100K replay)
    FRESHREC_END_DATE      the day after the last data day (default 1998-04-23; empty: open-ended)
    FRESHREC_TRAIN_QUEUE   the Celery queue train_challenger runs on (default `default`; `gpu`)
    FRESHREC_TRAIN_POD     `gpu`: train_challenger's Kubernetes pod override (docker/k8s)
    FRESHREC_BASE_POKE_SECONDS  how often the triggerer looks again while a day waits (default 60)
    FRESHREC_PG_PORT       the local PostgreSQL's port under `make airflow` (default 15432)
    FRESHREC_ALERT_WEBHOOK where a failed task or a waiting approval is told (tasks/alerts.py; a secret:
                           never logged; unset: nothing is sent)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_S3_ENDPOINT = "http://127.0.0.1:8333"


@dataclass(frozen=True)
class Settings:
    data: str = "data"
    params: str | None = None
    bucket: str | None = None
    s3_endpoint: str = DEFAULT_S3_ENDPOINT
    landing_dir: str | None = None
    start_date: str = "1997-09-20"
    end_date: str | None = "1998-04-23"
    train_queue: str = "default"
    train_pod: str = ""
    poke_seconds: float = 60.0
    pg_port: int = 15432
    alert_webhook: str | None = field(default=None, repr=False)  # a secret: never in a repr or a log


def settings() -> Settings:
    """The settings as the environment gives them now (read on every call: nothing is cached)."""
    env, d = os.environ, Settings()
    return Settings(
        data=env.get("FRESHREC_DATA") or d.data,
        params=env.get("FRESHREC_PARAMS") or None,
        bucket=env.get("FRESHREC_BUCKET") or None,
        s3_endpoint=env.get("FRESHREC_S3_ENDPOINT", d.s3_endpoint),
        landing_dir=env.get("FRESHREC_LANDING_DIR") or None,
        start_date=env.get("FRESHREC_START_DATE") or d.start_date,
        end_date=env.get("FRESHREC_END_DATE", d.end_date) or None,
        train_queue=env.get("FRESHREC_TRAIN_QUEUE") or d.train_queue,
        train_pod=env.get("FRESHREC_TRAIN_POD", ""),
        poke_seconds=float(env.get("FRESHREC_BASE_POKE_SECONDS") or d.poke_seconds),
        pg_port=int(env.get("FRESHREC_PG_PORT") or d.pg_port),
        alert_webhook=(env.get("FRESHREC_ALERT_WEBHOOK") or "").strip() or None,
    )
