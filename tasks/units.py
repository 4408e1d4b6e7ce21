"""Every artifact of a day, named once: a *unit* is a file or folder under the data root, by its `Layout`
path, with the task that writes it. The object store mirrors these paths (tasks/store.py), `STEPS` in
tasks/day.py says which units each step reads and writes, and the steps find their files through them.
This module imports no step, so every step may use it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tasks.common import FreshrecError, Layout, day_str, read_json, sha256_file

BASE_FILE = "base.json"
OUTCOME_FILE = "outcome.json"
CHAMPION_DIR = "champion"
# a model's folder (a challenger, a champion, a registry version): the files tasks read, named once
MODEL_ITEMS_FILE = "items.json"  # its item ids in embedding-row order (the catalogue is items.parquet)
TRAIN_FILE = "train.json"  # how it was trained: the day, the mode, its base, the figures
METRICS_FILE = "metrics.json"  # its evaluation, added when it is promoted
MODEL_FILES = ("config.json", "weights.safetensors", MODEL_ITEMS_FILE, TRAIN_FILE)  # what training writes
CHAMPION_FILES = [*MODEL_FILES, METRICS_FILE]


def model_items(model_dir: Path) -> list[str]:
    """A model's item ids, in embedding-row order (row 0 is padding): JSON, no model stack imported."""
    return json.loads((model_dir / MODEL_ITEMS_FILE).read_text())


@dataclass(frozen=True)
class Unit:
    """One file or folder of the day, by its Layout path; `writer` names the task that makes it."""

    path: Callable[[Layout, dt.date], Path]
    writer: str = ""  # set: a required input (MissingInput if absent); empty: optional


@dataclass(frozen=True)
class Units:
    """Every unit under a folder (e.g. each day's partition), those of days <= D (or < D)."""

    parent: Callable[[Layout], Path]
    before: bool = False  # only days strictly before D
    all_days: bool = False  # every unit, whatever its day
    latest: bool = False  # only the newest of them (e.g. the catalogue snapshot standing on D)
    member: str = ""  # a file inside each day's folder (e.g. `outcome.json`), not the folder
    lazy: bool = False  # read by the step itself through the store, as far back as it needs (not pulled first)
    window: str = ""  # a params key (`validate.volume_window_days`): only the days that many days before D
    since: Units | None = None  # only the days on or after the newest unit `since` selects (all if it has none)
    since_after: bool = False  # ... strictly after it (that unit already holds its own day)


def day_keep(spec: Units, day: dt.date, params: dict | None = None, since: str | None = None):
    """Which folder names (`date=YYYY-MM-DD`) of `spec` day D's step reads. `params` bounds a `window` (without
    them it is not bounded), `since` is the newest name `spec.since` selects (`since_name`)."""
    bound = f"date={day_str(day)}"
    if spec.all_days:
        return lambda name: True
    upper = (lambda name: name[: len(bound)] < bound) if spec.before else (lambda name: name[: len(bound)] <= bound)
    lower = ""
    if spec.window and params is not None:
        section, key = spec.window.split(".")
        lower = f"date={day_str(day - dt.timedelta(days=params[section][key]))}"
    if spec.since is not None and since:
        lower = max(lower, since + ("~" if spec.since_after else ""))  # "~" sorts after every date= name
    return lambda name: upper(name) and name[: len(bound)] >= lower


def since_name(spec: Units, day: dt.date, names: list[str]) -> str | None:
    """The newest of `names` (the children of `spec.since`'s folder) that `spec.since` selects for day D."""
    if spec.since is None:
        return None
    keep = day_keep(spec.since, day)
    picked = sorted(n for n in names if keep(n))
    return picked[-1] if picked else None


def _run_file(name: str) -> Callable[[Layout, dt.date], Path]:
    return lambda layout, day: layout.run(day) / name


RAW = Unit(lambda layout, day: layout.raw(day), writer="ingest_events")
ITEMS = Unit(lambda layout, day: layout.items(day))
DELIVERIES = Unit(lambda layout, day: layout.deliveries(day))  # every delivery of D, by content hash
VALIDATION = Unit(lambda layout, day: layout.reports("validation", day), writer="validate_events")
DRIFT = Unit(lambda layout, day: layout.reports("drift", day), writer="detect_drift")
CHAMPION = Unit(_run_file(CHAMPION_DIR), writer="pull_champion")
BASE = Unit(_run_file(BASE_FILE), writer="pull_champion")
CHALLENGER = Unit(_run_file("challenger"), writer="train_challenger")
CHECKPOINT = Unit(_run_file("checkpoint"))  # a training run's last checkpoint, while it runs (tasks/checkpoint.py)
DVC_STAGE = Unit(_run_file("dvc"))  # the training run's DVC stage files (tasks/versioning.py)
ONNX = Unit(_run_file("onnx"), writer="export_onnx")
EVALUATION = Unit(_run_file("evaluation.json"), writer="evaluate_challenger")
BENCHMARK = Unit(_run_file("benchmark.json"), writer="benchmark_latency")
PROMOTION = Unit(_run_file("promotion.json"))
SUMMARY = Unit(_run_file("summary.json"))
OUTCOME = Unit(_run_file(OUTCOME_FILE))
PARAMS = Unit(_run_file("params.json"), writer="wait_for_landing")  # the day's params, fixed at its start
METRICS = Unit(_run_file("metrics.json"))  # the version's metrics, as promote_champion publishes them
FEATURES = Unit(lambda layout, day: layout.features())
EVENT_KEYS = Unit(
    lambda layout, day: layout.index("event_keys", day)
)  # every key ingested through D (tasks/event_keys.py)
HISTORY = Unit(
    lambda layout, day: layout.index("history", day), writer="pull_champion"
)  # every event of the days before D, compacted (tasks/history.py): what the steps read instead of every partition
HISTORY_BEFORE = Units(lambda layout: layout.index("history"), before=True, latest=True)  # the newest before D
RAW_SINCE_HISTORY = Units(lambda layout: layout.raw_events_root(), before=True, since=HISTORY_BEFORE)
RAW_TRAILING = Units(lambda layout: layout.raw_events_root(), before=True, window="validate.volume_window_days")
ITEMS_STANDING = Units(lambda layout: layout.root / "raw" / "items", latest=True)  # the catalogue on D
ITEMS_BEFORE = Units(lambda layout: layout.root / "raw" / "items", before=True, latest=True)  # the previous one
OUTCOMES_BEFORE = Units(lambda layout: layout.root / "runs", before=True, member=OUTCOME_FILE, lazy=True)
QUARANTINE_ALL = Units(lambda layout: layout.root / "quarantine", all_days=True)
DRIFT_BEFORE = Units(lambda layout: layout.root / "reports" / "drift", before=True, window="drift.history_days")
EVENT_KEYS_BEFORE = Units(lambda layout: layout.index("event_keys"), before=True, latest=True)  # the newest before D
RAW_SINCE_KEYS = Units(lambda layout: layout.raw_events_root(), before=True, since=EVENT_KEYS_BEFORE, since_after=True)


def version_id(day: dt.date, weights_sha256: str) -> str:
    """A version is named `<D>-<sha8 of its weights>`: the day whose data it was trained through."""
    return f"{day_str(day)}-{weights_sha256[:8]}"


def challenger_version(layout: Layout, day: dt.date) -> str | None:
    """The version id day D's challenger gets (None if it was not trained)."""
    weights = CHALLENGER.path(layout, day) / "weights.safetensors"
    return version_id(day, sha256_file(weights)) if weights.exists() else None


def stage_files(layout: Layout, day: dt.date) -> dict[str, str]:
    """The DVC stage files of day D's training run (tasks/versioning.py); empty if it was not versioned."""
    root = DVC_STAGE.path(layout, day)
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def base_of(layout: Layout, day: dt.date) -> str | None:
    """base(D) as recorded by pull_champion (MissingInput-style error if it never ran)."""
    path = BASE.path(layout, day)
    if not path.exists():
        raise FreshrecError(f"{path} is missing: run pull_champion for {day} first")
    return read_json(path)["base"]
