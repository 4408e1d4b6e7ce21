"""Prometheus metrics of the service (prometheus-client).

With several worker processes, `python -m serve` sets PROMETHEUS_MULTIPROC_DIR before the workers
start, and `/metrics` (any worker) answers the sum over all of them: request counts and latencies
summed, in-flight requests summed, pointer age the stalest worker's, model info one series per worker.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
# sub-millisecond model calls, tens of ms under load, seconds when something is wrong
BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_SECONDS = Histogram(
    "freshrec_serve_request_seconds", "Request latency, by route and status code", ["route", "code"], buckets=BUCKETS
)
IN_FLIGHT = Gauge("freshrec_serve_in_flight_requests", "Requests being handled now", multiprocess_mode="livesum")
MODEL_INFO = Gauge(
    "freshrec_serve_model_info", "The version each worker serves (value 1)", ["version", "serve_file"],
    multiprocess_mode="liveall",
)  # fmt: skip
RELOADS = Counter("freshrec_serve_reloads_total", "Champion loads, by outcome (loaded, refused)", ["outcome"])
POINTER_AGE = Gauge(
    "freshrec_serve_pointer_age_seconds", "Seconds since the champion pointer was last read successfully",
    multiprocess_mode="livemax",
)  # fmt: skip
UNKNOWN_ITEMS = Counter("freshrec_serve_unknown_items_total", "Request item ids not in the served catalogue")


def exposition() -> tuple[bytes, str]:
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def worker_exited(pid: int) -> None:
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
