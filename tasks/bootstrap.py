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

from tasks.common import Layout, load_params, parse_day, setup_logging

LOG = logging.getLogger(__name__)


def land_history(params: dict, layout: Layout, through: dt.date) -> int:
    """Land and ingest every day of the source up to `through`; returns the number of days."""
    from tasks import ingest, replay

    replay.run(through, params, history=True)
    return len(ingest.ingest_history(through, params, layout))


def bootstrap(params: dict, layout: Layout, progress: bool = True) -> dict:
    from tasks import benchmark, drift, evaluate, export, promote, train, validate

    registry = promote.registry_from_env(params)
    pointer, _ = registry.pointer()
    if pointer is not None:
        LOG.info("champion %s already exists: nothing to bootstrap", pointer["version"])
        return {"status": "exists", "version": pointer["version"]}
    day = parse_day(params["source"]["warmup_end"])
    days = land_history(params, layout, day)
    LOG.info("landed %d warm-up days through %s", days, day)
    validate.run(day, params, layout)
    drift.run(day, params, layout)
    trained = train.run(day, params, layout, mode="full", progress=progress)
    evaluate.run(day, params, layout)
    export.run(day, params, layout)
    benchmark.run(day, params, layout)
    record = promote.run(day, params, layout, "bootstrap", f"warm-up window through {day} ({days} days)")
    return {**record, "train_seconds": trained.seconds}


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default=None)
    args = ap.parse_args(argv)
    print(json.dumps(bootstrap(load_params(args.params), Layout.default()), indent=2))


if __name__ == "__main__":
    main()
