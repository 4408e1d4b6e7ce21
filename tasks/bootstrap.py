"""Bootstrap: the first champion, trained on the warm-up window, through the same steps as a day.

Lands and ingests every day of the dataset up to `source.warmup_end` (trusted history:
each day is copied byte for byte; the last day goes through the full GX validation),
then runs drift -> train (full) -> evaluate -> export -> benchmark -> promote for
that day with approver `bootstrap`. Does nothing if a champion already exists.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging

from tasks.common import Layout, parse_day, setup_cli, write_json
from tasks.params import load_params

LOG = logging.getLogger(__name__)


def land_history(params: dict, layout: Layout, through: dt.date) -> int:
    """Land and ingest every day of the source up to `through`; returns the number of days."""
    from tasks import ingest, replay

    replay.run(through, params, history=True)
    return len(ingest.ingest_history(through, params, layout))


def bootstrap(params: dict, layout: Layout, progress: bool = True, store=None) -> dict:
    """Train and promote the first champion; publish the warm-up history and the day's state to the
    object store, ending with the warm-up day's outcome (the first daily day builds on it).

    Safe to re-run after a kill at any point: landing and ingest are idempotent, training is
    deterministic on CPU (the same version is re-published byte for byte), and a champion that
    already exists only gets its missing outcome record."""
    from tasks.day import OUTCOME, STEPS, pull_champion, push, record_outcome
    from tasks.pipeline import DayOptions, step_call
    from tasks.registry import registry_from_env
    from tasks.store import Store

    registry = registry_from_env(params)
    store = store or Store.from_env(params)
    day = parse_day(params["source"]["warmup_end"])
    pointer, _ = registry.pointer()
    if pointer is not None:
        LOG.info("champion %s already exists: nothing to bootstrap", pointer["version"])
        if not store.exists(str(OUTCOME.path(layout, day).relative_to(layout.root))):
            # killed after promoting, before recording the day: record it now (from the registry)
            if not store.exists(str(layout.raw(day).relative_to(layout.root))):
                _publish_history(params, layout, store, day)
            write_json(
                OUTCOME.path(layout, day),
                {"day": str(day), "status": "bootstrap", "champion_after": pointer["version"]},
            )
            push(store, layout, day, (OUTCOME,))
        return {"status": "exists", "version": pointer["version"]}
    days = _publish_history(params, layout, store, day)
    LOG.info("landed and published %d warm-up days through %s", days, day)
    options = DayOptions(approver="bootstrap", reason=f"warm-up window through {day} ({days} days)", progress=progress)
    step_call("validate_events", day, params, layout, store, options)
    # the history is in the store and its last day validated: daily days may validate against it now
    push(store, layout, day, STEPS["validate_events"].writes)
    pull_champion(day, params, layout, store, registry, first=True)  # the marker and base.json (base null)
    results = {}
    for name in ("detect_drift", "train_challenger", "evaluate_challenger", "export_onnx", "benchmark_latency"):
        results[name] = step_call(name, day, params, layout, store, options)  # drift: no champion, so full
        push(store, layout, day, STEPS[name].writes)
    record = step_call("promote_champion", day, params, layout, store, options)
    push(store, layout, day, STEPS["promote_champion"].writes)
    record_outcome(day, layout, registry, "bootstrap")
    push(store, layout, day, (OUTCOME,))
    return {**record, "train_seconds": results["train_challenger"].seconds}


def _publish_history(params: dict, layout: Layout, store, day: dt.date) -> int:
    days = land_history(params, layout, day)
    for parent in ("raw/events", "raw/items"):
        store.push_children(layout.root, parent)
    return days


def main(argv: list[str] | None = None) -> None:
    setup_cli()
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default=None)
    args = ap.parse_args(argv)
    print(json.dumps(bootstrap(load_params(args.params), Layout.default()), indent=2))


if __name__ == "__main__":
    main()
