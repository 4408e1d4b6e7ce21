"""One day's state machine: what each step of day D reads and writes, which champion it builds on,
the day's params, and when the champion pointer may move. The DAG, the bootstrap and the operator
commands all go through here (the step API over it is tasks/pipeline.py); the artifacts are named in
tasks/units.py and the step modules stay pure functions over a local `Layout`.

Data plane. Each task try works in a directory of its own (tasks/workspace.py: `task_scope`). Before a
step runs, its declared inputs are pulled there from the object store (tasks/store.py); after it
finishes, or refuses (a quarantine, a failed gate: the report is the record), its outputs are pushed
back. No task reads another task's disk, tasks at once on one machine never touch each other's files,
and a missing input is a `MissingInput` error naming the task that writes it. `STEPS` below is the
whole truth: tests/e2e/test_declared_reads.py fails on any read a step makes outside it.

    step                 reads (every step after the first also reads runs/D/params.json)      writes
    wait_for_landing     the landing zone; the bootstrap's validated warm-up day               runs/D/params.json
    ingest_events        landing zone, raw/{events,items,deliveries}/D                         the same
    validate_events      raw/events/D and the days in its volume window (and any since the     reports/validation/D,
                         newest key index), raw/items/D and the newest snapshot before D,      quarantine/*, raw/.../D,
                         quarantine/*, raw/deliveries/D, the newest key index before D          index/event_keys/D
    pull_champion        outcome of D-1 (and before, as far as needed), runs/D/base.json,      champion, base.json,
                         the newest history unit before D + the partitions since it            index/history/D
    detect_drift         index/history/D, raw/events/D, champion, drift reports of 60 days     reports/drift/D
    train_challenger     index/history/D, raw/events/D, the catalogue standing on D,           runs/D/challenger, dvc,
                         champion, drift D, features, runs/D/checkpoint (resume a killed run)  features, checkpoint
    evaluate_challenger  index/history/D, raw/events/D, champion, challenger                   runs/D/evaluation.json
    export_onnx          index/history/D, raw/events/D, challenger                             runs/D/onnx
    benchmark_latency    index/history/D, raw/events/D, challenger, onnx                       runs/D/benchmark.json
    prepare_approval     the day's reports and run files                                       -
    promote_champion     the same, index/history/D (lineage), dvc, the registry                version + pointer,
                                                                                               promotion, metrics
    summarize_run        the day's reports and run files, the registry                         summary, outcome

A day costs what the day holds: no step reads every partition. `index/history/date=D` (tasks/history.py)
holds every event of the days before D, compacted month by month; pull_champion builds it from the unit
before it and the day since, once day D-1 has ended (so the days before D are final).

Days in order. Day D builds on base(D), the champion that stood when day D-1's run ended:
outcome(D-1).champion_after, where outcome(D).champion_after is the version D promoted, else base(D)
(a day that never resolved its base, e.g. quarantined, inherits D-1's). `pull_champion` waits until
D-1 has an outcome, however the runs were launched (schedule, a backfill with any max-active-runs,
manual triggers, clear and re-run), so re-running D always starts from the same champion and gives
the same version. The first day after the warm-up waits for the bootstrap's outcome the same way: only
the bootstrap builds on nothing. Promotion moves the pointer only from base(D) to D's version (compare-and-swap);
a pointer that moved meanwhile (a rollback, a later day) is a refusal that says what to do, never
a silent overwrite, and an older day never moves the pointer back: going back is `rollback`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tasks.common import (
    APPROVAL_REASON,
    FreshrecError,
    GateFailed,
    Layout,
    ValidationFailed,
    atomic_dir,
    day_str,
    parse_day,
    read_json,
    write_json,
)
from tasks.store import Store
from tasks.units import (  # noqa: F401 - re-exported: the day's API names its units
    BASE,
    BASE_FILE,
    BENCHMARK,
    CHALLENGER,
    CHAMPION,
    CHAMPION_DIR,
    CHAMPION_FILES,
    CHECKPOINT,
    DELIVERIES,
    DRIFT,
    DRIFT_BEFORE,
    DVC_STAGE,
    EVALUATION,
    EVENT_KEYS,
    EVENT_KEYS_BEFORE,
    FEATURES,
    HISTORY,
    HISTORY_BEFORE,
    ITEMS,
    ITEMS_BEFORE,
    ITEMS_STANDING,
    METRICS,
    ONNX,
    OUTCOME,
    OUTCOME_FILE,
    OUTCOMES_BEFORE,
    PARAMS,
    PROMOTION,
    QUARANTINE_ALL,
    RAW,
    RAW_SINCE_HISTORY,
    RAW_SINCE_KEYS,
    RAW_TRAILING,
    SUMMARY,
    VALIDATION,
    Unit,
    Units,
    base_of,
    challenger_version,
    day_keep,
    since_name,
    stage_files,
    version_id,
)
from tasks.workspace import BlobCache, cache_root, task_workspace

LOG = logging.getLogger(__name__)
MAX_INHERIT_DAYS = 366  # how far back an outcome chain of base-less days is followed


class NotReady(FreshrecError):
    """Day D-1 has not ended yet, so day D's starting champion is not known."""


@dataclass(frozen=True)
class Step:
    reads: tuple = ()
    writes: tuple = ()


EVIDENCE = (VALIDATION, DRIFT, BASE, CHALLENGER, ONNX, EVALUATION, BENCHMARK)
_STEPS: dict[str, Step] = {
    "wait_for_landing": Step(writes=(PARAMS,)),
    "ingest_events": Step(reads=(Unit(RAW.path), ITEMS, DELIVERIES), writes=(Unit(RAW.path), ITEMS, DELIVERIES)),
    "validate_events": Step(
        reads=(RAW_TRAILING, RAW_SINCE_KEYS, RAW, ITEMS, ITEMS_BEFORE, QUARANTINE_ALL, DELIVERIES, EVENT_KEYS_BEFORE),
        writes=(Unit(RAW.path), ITEMS, QUARANTINE_ALL, VALIDATION, EVENT_KEYS),
    ),
    "pull_champion": Step(
        reads=(OUTCOMES_BEFORE, Unit(BASE.path), HISTORY_BEFORE, RAW_SINCE_HISTORY), writes=(CHAMPION, BASE, HISTORY)
    ),
    "detect_drift": Step(reads=(HISTORY, RAW, CHAMPION, DRIFT_BEFORE), writes=(DRIFT,)),
    "train_challenger": Step(
        reads=(HISTORY, RAW, ITEMS_STANDING, CHAMPION, DRIFT, FEATURES, CHECKPOINT),
        writes=(CHALLENGER, FEATURES, DVC_STAGE, CHECKPOINT),
    ),
    "evaluate_challenger": Step(reads=(HISTORY, RAW, CHAMPION, CHALLENGER), writes=(EVALUATION,)),
    "export_onnx": Step(reads=(HISTORY, RAW, CHALLENGER), writes=(ONNX,)),
    "benchmark_latency": Step(reads=(HISTORY, RAW, CHALLENGER, ONNX), writes=(BENCHMARK,)),
    "prepare_approval": Step(reads=EVIDENCE),
    "promote_champion": Step(reads=(HISTORY, RAW, *EVIDENCE, DVC_STAGE), writes=(PROMOTION, METRICS)),
    "summarize_run": Step(
        reads=tuple(Unit(u.path) for u in (VALIDATION, DRIFT, BASE, EVALUATION, BENCHMARK, PROMOTION, CHALLENGER)),
        writes=(SUMMARY, OUTCOME, PROMOTION),
    ),
}
# every step after the first reads the day's params snapshot: the DAG requires it (day_params), before the
# step; an operator's CLI run of a step (`tasks.promote promote`) has it too when the day ran in the DAG
STEPS: dict[str, Step] = {
    name: step if name == "wait_for_landing" else Step(reads=(Unit(PARAMS.path), *step.reads), writes=step.writes)
    for name, step in _STEPS.items()
}


def _rel(layout: Layout, path: Path) -> str:
    return str(path.relative_to(layout.root))


def keep_for(store: Store, layout: Layout, day: dt.date, spec: Units, params: dict | None):
    """Which of `spec`'s stored units day D reads (a `since` bound is looked up in the store)."""
    since = since_name(spec, day, store.children(_rel(layout, spec.since.parent(layout)))) if spec.since else None
    return day_keep(spec, day, params, since)


def pull(store: Store, layout: Layout, day: dt.date, specs, params: dict | None = None) -> None:
    for spec in specs:
        if isinstance(spec, Units) and spec.lazy:
            continue
        if isinstance(spec, Units) and spec.latest:
            parent = _rel(layout, spec.parent(layout))
            if names := [n for n in store.children(parent) if day_keep(spec, day, params)(n)]:
                store.pull(layout.root, f"{parent}/{names[-1]}")
        elif isinstance(spec, Units):
            store.pull_children(
                layout.root, _rel(layout, spec.parent(layout)), keep_for(store, layout, day, spec, params)
            )
        else:
            store.pull(
                layout.root, _rel(layout, spec.path(layout, day)), required=bool(spec.writer), writer=spec.writer
            )


def push(store: Store, layout: Layout, day: dt.date, specs) -> None:
    for spec in specs:
        if isinstance(spec, Units):
            parent = spec.parent(layout)
            keep = day_keep(spec, day)  # written units: every bound is the reads' (a write is never windowed)
            names = sorted(p.name for p in parent.iterdir() if not p.name.startswith(".")) if parent.is_dir() else []
            for name in filter(keep, names):
                store.push(layout.root, f"{_rel(layout, parent)}/{name}")
        else:
            store.push(layout.root, _rel(layout, spec.path(layout, day)))


def run_step(name: str, day: dt.date, params: dict, layout: Layout, fn, *args, store: Store | None = None, **kwargs):
    """Pull step `name`'s inputs for day D, run `fn(*args, **kwargs)`, push its outputs.

    Outputs are pushed on success and on a refusal (ValidationFailed, GateFailed: the quarantine
    and the failed gate's report are the day's record); a crash pushes nothing, so the store keeps
    the last complete state and a retry starts from it."""
    store = store or Store.from_env(params)
    step = STEPS[name]
    pull(store, layout, day, step.reads, params)
    try:
        result = fn(*args, **kwargs)
    except (ValidationFailed, GateFailed):
        push(store, layout, day, step.writes)
        raise
    push(store, layout, day, step.writes)
    return result


@contextlib.contextmanager
def task_scope(step: str, day: dt.date, params: dict, data_root: Path | None = None) -> Iterator[tuple[Layout, Store]]:
    """What one task try of day D works in: a private `Layout` of its own (tasks/workspace.py), removed
    when the try ends, and a store whose pulls link from this machine's shared blob cache. Tasks that run
    at once on one machine never see, delete or overwrite each other's files."""
    data_root = data_root or Layout.default().root
    with task_workspace(data_root, f"{day_str(day)}-{step}") as layout:
        yield layout, Store.from_env(params, cache=BlobCache(cache_root(data_root) / "blobs"))


def checkpoint_sink(day: dt.date, params: dict, layout: Layout, store: Store | None = None) -> Callable[[Path], None]:
    """What train_challenger calls after each training checkpoint: publish runs/D/checkpoint, so a
    retry on another worker (a preempted GPU node) resumes the run instead of starting it over."""
    store = store or Store.from_env(params)
    rel = _rel(layout, CHECKPOINT.path(layout, day))
    return lambda _path: store.push(layout.root, rel)


def history_ready(store: Store, layout: Layout, params: dict) -> bool:
    """Whether the bootstrap has published the warm-up history and validated its last day: a daily day's
    validation compares the day with that history, so it waits for it (wait_for_landing)."""
    warmup = parse_day(params["source"]["warmup_end"])
    return store.exists(_rel(layout, VALIDATION.path(layout, warmup)))


WAITS = {"landing": "wait_for_landing", "base": "pull_champion"}  # what a day waits for, and the task that does


def waiting_for(wait: str, day: dt.date, params: dict, layout: Layout, store: Store, override: str | None = None):
    """Why day D cannot go on yet, or None when it can. `landing`: the day's delivery in the landing zone,
    and the bootstrap's history (wait_for_landing); `base`: the outcome of day D-1, or of the bootstrap,
    that day D builds on (pull_champion). Only reads, so Airflow's triggerer asks it while the day waits
    (tasks/waits.py); the task itself asks again before it goes on."""
    if wait == "landing":
        from tasks.landing import LandingZone

        if not history_ready(store, layout, params):
            return "the bootstrap has not published the history yet (trigger freshrec_bootstrap once)"
        zone = LandingZone.from_params(params)
        return None if zone.has(day) else f"day {day} has not landed yet ({zone.uri(day)})"
    if wait == "base":
        from tasks.registry import registry_from_env

        try:
            resolve_base(day, store, layout, registry_from_env(params), override)
        except NotReady as exc:
            return str(exc)
        return None
    raise ValueError(f"unknown wait {wait!r}: one of {sorted(WAITS)}")


# ---- the day's params -----------------------------------------------------------------------------
FIRST_STEP = "wait_for_landing"  # the day's first task: it takes the params snapshot


def snapshot_params(
    day: dt.date, current: dict, layout: Layout, store: Store, refresh: bool = False, by: str = ""
) -> dict:
    """The day's params, fixed by its first task: runs/date=D/params.json in the object store.

    The first run of a day stores `current` (params.yaml as validated now); every later task and re-run
    of the day, on any worker, reads that snapshot, so an edit of params.yaml in the middle of a day, or
    a worker with another image, never trains, evaluates and promotes one day under two sets of params.
    `refresh` (the `refresh_params` Param) replaces the snapshot knowingly; the change is recorded in it."""
    from tasks.params import digest

    path = PARAMS.path(layout, day)
    old = read_json(path) if store.pull(layout.root, _rel(layout, path), required=False) else None
    sha = digest(current)
    if old is not None and (not refresh or old["sha256"] == sha):
        if old["sha256"] != sha:
            LOG.warning(
                "params.yaml changed since day %s started (%s -> %s): the day keeps its snapshot; to apply the "
                "change to this day, re-run it with the `refresh_params` Param", day, old["sha256"][:12], sha[:12],
            )  # fmt: skip
        return old["params"]
    changes = list(old.get("changes", [])) if old else []
    if old is not None:
        changes.append({"from": old["sha256"], "to": sha, "by": by, "keys": _changed_keys(old["params"], current)})
        LOG.warning("day %s's params replaced on request (%s): %s", day, by, changes[-1]["keys"])
    write_json(path, {"day": day_str(day), "sha256": sha, "params": current, "changes": changes})
    store.push(layout.root, _rel(layout, path))
    return current


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            keys.append(f"{prefix}{k}")
    return keys


def day_params(day: dt.date, layout: Layout, store: Store) -> dict:
    """The params day D runs under (its snapshot), validated again: MissingInput if the day never started."""
    from tasks.params import resolve

    path = PARAMS.path(layout, day)
    store.pull(layout.root, _rel(layout, path), writer=PARAMS.writer)
    return resolve(read_json(path)["params"], store.uri(_rel(layout, path)))


# ---- which champion a day builds on --------------------------------------------------------------
def _outcome(store: Store, layout: Layout, day: dt.date) -> dict | None:
    path = OUTCOME.path(layout, day)
    return read_json(path) if store.pull(layout.root, _rel(layout, path), required=False) else None


def resolve_base(
    day: dt.date, store: Store, layout: Layout, registry, override: str | None = None, first: bool = False
):
    """(version or None, why): the champion day D builds on. `override`: `live` (the pointer now)
    or a version id, for an operator who knowingly breaks the chain (e.g. after a rollback).

    Only the bootstrap (`first=True`) builds on nothing: a daily day with no outcome before it waits
    (NotReady) for the bootstrap's outcome exactly as it waits for day D-1's."""
    if override == "live":
        pointer, _ = registry.pointer()
        return (pointer["version"] if pointer else None), "operator override: the live champion"
    if override:
        registry.manifest(override)  # a clear error if it does not exist
        return override, "operator override: base version given"
    d = day - dt.timedelta(days=1)
    for _ in range(MAX_INHERIT_DAYS):
        outcome = _outcome(store, layout, d)
        if outcome is None:
            break
        if not outcome.get("inherit"):
            return outcome["champion_after"], f"the champion after {d}'s run ({outcome['status']})"
        d -= dt.timedelta(days=1)  # that day never resolved a base (e.g. quarantined): look further back
    own = BASE.path(layout, day)  # a re-run keeps the base this day resolved (an override, the bootstrap's none)
    if store.pull(layout.root, _rel(layout, own), required=False):
        recorded = read_json(own)
        if recorded["base"] is not None or recorded.get("first"):
            return recorded["base"], f"as this day's earlier run resolved it ({recorded['why']})"
        # `base: null` saved by a daily run that should have waited for the bootstrap: never reused
    if first:
        pointer, _ = registry.pointer()
        if pointer is None and not registry.history():
            return None, "no champion yet: the first model (full training)"
    outcome_uri = store.uri(_rel(layout, OUTCOME.path(layout, d)))
    if registry.pointer()[0] is None and not registry.history():
        raise NotReady(
            f"no champion exists yet and day {d} has no recorded outcome ({outcome_uri}): day {day} waits for the "
            "bootstrap (trigger `freshrec_bootstrap` once, or run `python -m tasks.bootstrap`), then builds on it"
        )
    raise NotReady(
        f"day {d} has no recorded outcome in the object store ({outcome_uri}), "
        f"so the champion day {day} must build on is not known yet. Run day {d} first (a backfill runs the days in "
        f"order by itself), or set the `base` Param (`live`, or a version) to build on another champion knowingly."
    )


def pull_champion(
    day: dt.date, params: dict, layout: Layout, store: Store, registry, override: str | None = None, first: bool = False
) -> str | None:
    """Resolve base(D), download it sha256-verified into runs/D/champion, record runs/D/base.json, push both.
    Raises NotReady while day D-1 (or the bootstrap) is still running; `first`: the bootstrap's own day."""
    version, why = resolve_base(day, store, layout, registry, override, first)
    from tasks.history import build_history

    pull(store, layout, day, (HISTORY_BEFORE,))  # every day before D has ended, so the history before D is final
    raw = _rel(layout, RAW_SINCE_HISTORY.parent(layout))
    for name in filter(keep_for(store, layout, day, RAW_SINCE_HISTORY, params), store.children(raw)):
        store.pull(layout.root, f"{raw}/{name}")  # one by one: a workspace's own partitions (dvc repro) stay
    build_history(layout, day)
    dest = CHAMPION.path(layout, day)
    if version is None:  # an explicit marker: the steps see "no champion", never a missing input
        with atomic_dir(dest) as tmp:
            write_json(tmp / "no_champion.json", {"day": day_str(day), "champion": None})
    else:
        registry.download(version, dest, CHAMPION_FILES, manifest_sha256=registry.recorded_manifest_sha(version))
    record = {"day": day_str(day), "base": version, "why": why}
    write_json(BASE.path(layout, day), record | ({"first": True} if version is None else {}))
    LOG.info("day %s builds on %s (%s)", day, version or "nothing", why)
    push(store, layout, day, STEPS["pull_champion"].writes)
    return version


def forget_history_after(store: Store, layout: Layout, day: dt.date) -> list[str]:
    """Day D ingested anew (a late day, a replaced delivery) changes the history of every day after it: their
    history units (`index/history/date>D`) leave the store, and the next pull_champion rebuilds from the
    newest unit before them and the partitions since. Returns the units removed."""
    parent = _rel(layout, HISTORY_BEFORE.parent(layout))
    stale = [name for name in store.children(parent) if name > f"date={day_str(day)}"]
    for name in stale:
        store.remove(f"{parent}/{name}", layout.root)  # and the worker's copy (ingest dropped those it held)
    if stale:
        LOG.warning("day %s was ingested anew: the history units of the %d days after it (%s .. %s) are rebuilt "
                    "by their next run", day, len(stale), stale[0][5:], stale[-1][5:])  # fmt: skip
    return stale


def trained_days(store: Store, day: dt.date) -> list[str]:
    """Days >= D whose challenger (trained with D in its history) is in the store."""
    days = [n[len("date=") :] for n in store.children("raw/events") if n[len("date=") :] >= day_str(day)]
    return [d for d in days if store.exists(f"runs/date={d}/challenger")]


def record_outcome(day: dt.date, layout: Layout, registry, status: str) -> dict:
    """Write runs/D/outcome.json: how day D ended and the champion standing after it.

    The registry, not a local file, says whether D's version was promoted: a promotion whose
    task died after the pointer moved still counts."""
    version = challenger_version(layout, day)
    promoted = version is not None and any(
        r["version"] == version and r.get("action", "promote") == "promote" for r in registry.history()
    )
    base_path = BASE.path(layout, day)
    outcome = {"day": day_str(day), "status": "promoted" if promoted else status, "challenger": version}
    if promoted:
        outcome["champion_after"] = version
    elif base_path.exists():
        outcome["champion_after"] = read_json(base_path)["base"]
    else:
        outcome["inherit"] = True  # never resolved a base: the day after looks at the day before
    write_json(OUTCOME.path(layout, day), outcome)
    return outcome


# ---- the day's rules ------------------------------------------------------------------------------
def answer_record(event: dict) -> dict:
    """The approval's answer as it is kept (XCom `decision`, the promotion history, the summary): the
    option, who, when and the approver's reason in their words (stripped, at most 2,000 characters).
    `event`: the HITL trigger's event, or the operator's return value (the same keys)."""
    user = dict(event.get("responded_by_user") or {})
    at = event.get("responded_at")
    given = (event.get("params_input") or {}).get(APPROVAL_REASON) or event.get("reason")  # an event, or a record
    reason = str(given or "").strip()[:2000]
    return {
        "chosen_options": event.get("chosen_options"),
        "responded_by_user": user or None,
        "who": user.get("name") or user.get("id") or None,
        "responded_at": at.isoformat() if hasattr(at, "isoformat") else at,
        "reason": reason,
    }


def approver_of(answer: dict | None, auto_approve: bool) -> tuple[str, str]:
    """(approver, reason) for a promotion: the person who answered the approval, or `auto`."""
    if answer:
        record = answer_record(answer)
        why = f"approved in Airflow: {record['reason']}" if record["reason"] else "approved in Airflow"
        return record["who"] or "unknown", why
    if auto_approve:
        return "auto", "auto_approve param"
    raise FreshrecError("promote_champion ran without an approval answer or auto_approve")


def rejection_of(answer: dict | None, timeout: dt.timedelta) -> tuple[str, str]:
    """(who, why) for a day that was not approved: the person who rejected, in their words, or the
    timeout's default."""
    record = answer_record(answer or {})
    if record["who"]:
        why = record["reason"] or "rejected in Airflow without a reason (the request asks for one)"
        return record["who"], why
    return "nobody (no answer within the approval timeout)", f"no answer within {timeout}: the default is Reject"


def day_status(decision: str | None, states: dict[str, str]) -> str:
    """How day D ended, in one word for its outcome record, from its task states."""
    failed = sorted(t for t, s in states.items() if s in ("failed", "upstream_failed"))
    if failed:
        return "failed: " + ", ".join(failed)
    if decision == "skip":
        return "skipped"
    if states.get("approve_promotion") == "success" and states.get("promote_champion") == "skipped":
        return "rejected"
    return "ended"
