"""Validate: a Great Expectations checkpoint on day D's events; quarantine what fails.

The suite is code (`events_suite`), built per day from params (ranges, allowed event
types) and context (the day's bounds, the catalogue, the trailing days' volume).
Each expectation carries a `check` name in its meta; `validate.policy` in params.yaml
says which checks only warn; every other failure blocks. A blocked partition is moved
intact from `data/raw/events/date=D/` to `data/quarantine/date=D/` with `report.json`
naming every failed check and sample offending values, so nothing downstream can
train on it and nothing is lost. Each day's Data Docs site is kept with its report:
`data/reports/validation/date=D/data_docs/{events,items}/`.

Beside the suites: the day's distribution against its trailing days (tasks/profile.py), replays of
earlier days through the key index (tasks/event_keys.py; a passed day writes its own), the catalogue's
items still in use, and files refused before any check (far too wide, a cell far too long). Every
finding is bounded: values clipped, lists capped (`clip`, `capped`).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from tasks.common import Layout, ValidationFailed, atomic_dir, day_bounds, parse_day, write_json
from tasks.contract import CAUSES, ID_COLUMNS, conform, id_problems, missing_spellings, same_ids
from tasks.datadocs import DOCS_DIR, localize
from tasks.event_keys import KEYS_FILE, KeyIndex, key_hashes, replay_days
from tasks.landing import EVENTS_FILE, ITEMS_FILE
from tasks.params import step_cli
from tasks.sources import EVENT_COLUMNS, ITEM_COLUMNS
from tasks.units import RAW_SINCE_KEYS, day_keep, since_name

LOG = logging.getLogger(__name__)
REPORT_FILE = "report.json"
DOCS_SITE = "freshrec"


@dataclass
class ValidationResult:
    day: str
    passed: bool
    rows: int
    failures: list[dict] = field(default_factory=list)  # blocking
    warnings: list[dict] = field(default_factory=list)  # allowed by policy, still reported
    report: str = ""
    docs: str = ""
    quarantined: str | None = None
    accepted: list[str] = field(default_factory=list)  # checks an operator accepted for this run
    volume: dict = field(default_factory=dict)  # the day's count, its trailing band and the verdict in words
    missing: dict = field(default_factory=dict)  # {column: {spelling: rows}}: missing values written as words
    profile: dict = field(default_factory=dict)  # the day's distribution statistics (tasks/profile.py)
    replays: dict = field(default_factory=dict)  # events whose key an earlier day holds, by that day


def trailing_partitions(layout: Layout, day: dt.date, window_days: int) -> list[Path]:
    """The events files of the ingested days in the `window_days` before D (quarantined days are not in raw/)."""
    parts = [layout.raw(day - dt.timedelta(days=back)) / EVENTS_FILE for back in range(1, window_days + 1)]
    return [p for p in parts if p.exists()]


def trailing_counts(layout: Layout, day: dt.date, window_days: int) -> list[int]:
    """Event counts of the ingested days in the `window_days` before D, from the files' metadata."""
    import pyarrow.parquet as pq

    return [pq.ParquetFile(p).metadata.num_rows for p in trailing_partitions(layout, day, window_days)]


def trailing_days(layout: Layout, day: dt.date, window_days: int) -> list[pd.DataFrame]:
    """The events of the ingested days in the `window_days` before D (the columns the distribution checks
    and the catalogue's items in use need)."""
    from tasks.profile import COLUMNS

    return [conform(pd.read_parquet(p, columns=COLUMNS)) for p in trailing_partitions(layout, day, window_days)]


def distribution_findings(events: pd.DataFrame, trailing: list[pd.DataFrame], params: dict) -> tuple[dict, list]:
    """The day's profile and every statistic outside its warn or block band against the `trailing` days',
    as report entries."""
    from tasks.profile import check_name, compare, profile

    today = profile(events)
    entries = []
    for f in compare(today, [profile(t) for t in trailing], params):
        if f.level != "ok":
            entries.append({
                "check": check_name(f.stat),
                "expectation": "expect_day_within_its_trailing_distribution",
                "column": f.stat.split(".")[1],
                "cause": f.words(),
                "observed_value": round(f.value, 4),
                "band": {"median": round(f.median, 4), "spread": round(f.spread, 4), "z": round(f.z, 2),
                         "days": f.days, "level": f.level},
            })  # fmt: skip
    return {k: round(v, 4) for k, v in today.items()}, entries


def volume_bounds(counts: list[int], params: dict) -> dict:
    """The day's volume band: `volume_min_ratio`..`volume_max_ratio` x the trailing median (none
    without history). Outside it a day is *suspicious* (`row_count`, warn by default: real surges
    happen); below `volume_min_rows` it is *broken* (`min_rows`, blocks)."""
    if not counts:
        return {"median": None, "days": 0, "low": None, "high": None, "min_rows": params["volume_min_rows"]}
    median = float(pd.Series(counts).median())
    return {
        "median": median,
        "days": len(counts),
        "low": int(median * params["volume_min_ratio"]),
        "high": int(median * params["volume_max_ratio"]) + 1,
        "min_rows": params["volume_min_rows"],
    }


def volume_verdict(rows: int, band: dict) -> str | None:
    """None when the volume is in its band, else why not, with the figures (for reports and evidence)."""
    if rows < band["min_rows"]:
        return f"{rows} events, below the minimum of {band['min_rows']} (`validate.volume_min_rows`)"
    if band["median"] is None or band["low"] <= rows <= band["high"]:
        return None
    ratio = rows / band["median"] if band["median"] else float("inf")
    side = "above" if rows > band["high"] else "below"
    return (
        f"{rows:,} events is {ratio:.2f}x the median of the trailing {band['days']} ingested days "
        f"({band['median']:,.0f}), {side} the allowed {band['low']:,}-{band['high']:,} "
        "(`validate.volume_min_ratio` / `volume_max_ratio`)"
    )


USER_EVENTS = "_user_events_today"  # derived: each row's user's event count on the day (bot-like users)
# negative, zero or blank ids. ASCII classes, not \s and \d: pandas runs such a pattern in Arrow (RE2), 10x
# faster than Python's re on a 10M-event day; other spaces and digits are non-canonical (`canonical_*`) anyway
BAD_ID = r"^[ \t\n\r\f\v]*(-[0-9]+|0+|)[ \t\n\r\f\v]*$"


TS_ZONE = "_event_ts_zone"  # derived: the time zone of event_ts ("none" if naive)
REPLAY = "_replay_of"  # derived: the earlier day an event's key (`event_key`) came on, None for a new key
UNKNOWN = "_unknown_item_id"  # derived: the item id where the catalogue lacks it, None where it has it
DUPLICATE = "_duplicate_event"  # derived: "user item time" where another event of the day has the same three
DERIVED = [USER_EVENTS, TS_ZONE, *(f"_noncanonical_{c}" for c in ID_COLUMNS), REPLAY, UNKNOWN, DUPLICATE]


def duplicate_events(df: pd.DataFrame) -> pd.Series:
    """Per event, "user item time" where another event of the day has the same (user_id, item_id, event_ts),
    None elsewhere: what `df.duplicated(keep=False)` flags, as the no_duplicates check's values. A delivery
    in the history's order (ORDER: what the replay lands and most exports write) has its duplicates next
    to each other, found with the order check itself (10M events: under a second, where GX's
    compound-uniqueness check took 6 s); any other frame goes through pandas."""
    import numpy as np

    from tasks.history import ORDER, same_as_next

    out = pd.Series(None, index=df.index, dtype=object)
    if len(df) < 2 or not all(c in df for c in ORDER):
        return out
    next_same = same_as_next(df)
    if next_same is None:
        flagged = df.duplicated(ORDER, keep=False).to_numpy()
    else:
        flagged = np.zeros(len(df), bool)
        flagged[:-1] |= next_same
        flagged[1:] |= next_same
    if flagged.any():
        rows = df.loc[flagged, ORDER]
        out[flagged] = (rows["user_id"].astype(str) + " " + rows["item_id"].astype(str) + " "
                        + rows["event_ts"].astype(str)).to_numpy()  # fmt: skip
    return out


def with_derived(df: pd.DataFrame) -> pd.DataFrame:
    """The frame the events suite runs on: the delivery (conformed: see tasks/contract.py) plus the
    derived columns the checks need."""
    out = conform(df)
    if "rating" in out and out["rating"].dtype == "float32":  # exact in float64, where GX compares vectorised
        out["rating"] = out["rating"].astype("float64")  # (a float32 column goes value by value in Python)
    out[USER_EVENTS] = out.groupby("user_id", dropna=False)["user_id"].transform("size") if "user_id" in out else 0
    zone = getattr(out["event_ts"].dtype, "tz", None) if "event_ts" in out else None
    out[TS_ZONE] = str(zone) if zone is not None else "none"
    for c in ID_COLUMNS:
        out[f"_noncanonical_{c}"] = id_problems(out[c]) if c in out else None
    out[REPLAY] = None  # set by validate_day from the key index (tasks/event_keys.py)
    out[UNKNOWN] = None  # set by validate_day from the catalogue
    out[DUPLICATE] = duplicate_events(out)
    return out


def key_index_before(layout: Layout, day: dt.date, key: list[str]):
    """The key index standing before D: the newest `index/event_keys` unit before D, extended by the raw
    partitions of the days ingested between its day and D (none when the days ran in order)."""

    def names(folder: Path, keep=lambda name: True) -> list[str]:
        return sorted(p.name for p in folder.glob("date=*") if keep(p.name)) if folder.is_dir() else []

    folder = RAW_SINCE_KEYS.since.parent(layout)  # the units' names, as the step's declared reads select them
    since = since_name(RAW_SINCE_KEYS, day, names(folder))
    index = KeyIndex.load(folder / since / KEYS_FILE) if since else KeyIndex.empty()
    root = RAW_SINCE_KEYS.parent(layout)
    for name in names(root, day_keep(RAW_SINCE_KEYS, day, since=since)):
        if (root / name / EVENTS_FILE).exists():
            events = conform(pd.read_parquet(root / name / EVENTS_FILE, columns=key))
            index = index.add(key_hashes(events, key), parse_day(name[len("date=") :]))
    return index


def replay_cause(replays: dict) -> str:
    """`replayed_events` in words: how many events, which earlier days (the first five) and the key."""
    days = replays["earlier_days"]
    shown = ", ".join(f"{d} ({c:,})" for d, c in list(days.items())[:5]) + (", …" if len(days) > 5 else "")
    return (
        f"{replays['rows']:,} events already ingested on {len(days)} earlier day{'s' if len(days) > 1 else ''} "
        f"({shown}) under the event key ({', '.join(replays['key'])}), as they were or re-stamped: training "
        "would count them twice (`validate.event_key`)"
    )


def write_key_index(layout: Layout, day: dt.date, index, key: list[str], validated=None) -> None:
    """Day D's key index: the one standing before D and D's keys in use, or none. `validated`: the keys'
    hashes of the delivery just validated, when it is the one in use (else the raw partition is read)."""
    part = layout.raw(day) / EVENTS_FILE
    if not part.exists():
        shutil.rmtree(layout.index("event_keys", day), ignore_errors=True)
        return
    hashes = validated if validated is not None else key_hashes(conform(pd.read_parquet(part, columns=key)), key)
    with atomic_dir(layout.index("event_keys", day)) as tmp:
        index.add(hashes, day).save(tmp / KEYS_FILE)


def events_suite(day: dt.date, params: dict, catalogue_ids: list[str] | None, volume: dict, rows: int = 0):
    """The day's events suite: list of (check name, expectation). Bounds come from params and context."""
    import great_expectations.expectations as gxe

    start, end = (pd.Timestamp(t, unit="s", tz="UTC") for t in day_bounds(day))
    checks = [
        ("columns", gxe.ExpectTableColumnsToMatchSet(column_set=[*EVENT_COLUMNS, *DERIVED], exact_match=True)),
        ("min_rows", gxe.ExpectTableRowCountToBeBetween(min_value=volume["min_rows"])),
        ("no_duplicates", gxe.ExpectColumnValuesToBeNull(column=DUPLICATE)),  # (user, item, time) twice
        ("type_event_ts", gxe.ExpectColumnValuesToBeOfType(column="event_ts", type_="Timestamp")),
        ("type_rating", gxe.ExpectColumnValuesToBeInTypeList(column="rating", type_list=["float32", "float64"])),
        (
            "ts_in_day",
            gxe.ExpectColumnValuesToBeBetween(column="event_ts", min_value=start, max_value=end, strict_max=True),
        ),
        (
            "rating_range",
            gxe.ExpectColumnValuesToBeBetween(
                column="rating", min_value=params["rating_min"], max_value=params["rating_max"]
            ),
        ),
        ("event_type", gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=params["event_types"])),
        (
            "bot_like_users",
            gxe.ExpectColumnValuesToBeBetween(column=USER_EVENTS, max_value=params["max_events_per_user_day"]),
        ),
    ]
    if volume["median"] is not None:
        checks.append(
            ("row_count", gxe.ExpectTableRowCountToBeBetween(min_value=volume["low"], max_value=volume["high"]))
        )
    for c in ("user_id", "item_id"):
        checks += [
            (f"type_{c}", gxe.ExpectColumnValuesToBeOfType(column=c, type_="str")),
            (f"valid_{c}", gxe.ExpectColumnValuesToNotMatchRegex(column=c, regex=BAD_ID)),
            (f"length_{c}", gxe.ExpectColumnValueLengthsToBeBetween(column=c, max_value=params["max_id_length"])),
        ]
    checks += [("length_event_type", gxe.ExpectColumnValueLengthsToBeBetween(column="event_type", max_value=64))]
    checks += [
        (f"not_null_{c}", gxe.ExpectColumnValuesToNotBeNull(column=c))
        for c in ("user_id", "item_id", "event_ts", "event_type", "rating")
    ]
    checks += [(f"canonical_{c}", gxe.ExpectColumnValuesToBeNull(column=f"_noncanonical_{c}")) for c in ID_COLUMNS]
    checks += [("ts_timezone", gxe.ExpectColumnValuesToBeInSet(column=TS_ZONE, value_set=["UTC"]))]
    checks += [("replayed_events", gxe.ExpectColumnValuesToBeNull(column=REPLAY))]
    if rows >= 10:  # a day of real events has more than one distinct time
        checks += [("ts_distinct", gxe.ExpectColumnUniqueValueCountToBeBetween(column="event_ts", min_value=2))]
    if catalogue_ids is not None:  # membership is computed once (UNKNOWN): a value set of thousands of ids
        # in an expectation is re-serialised by GX each time it reads its configuration (seconds a day)
        checks += [  # any unknown item is flagged (policy: warn); too many of them block
            ("unknown_items", gxe.ExpectColumnValuesToBeNull(column=UNKNOWN)),
            (
                "unknown_items_share",
                gxe.ExpectColumnValuesToBeNull(column=UNKNOWN, mostly=1 - params["max_unknown_item_share"]),
            ),
        ]
    return _named(checks)


ITEM_NONCANONICAL, ITEM_SAME_AS = "_noncanonical_item_id", "_same_item_id_as"  # derived: the catalogue's contract
ITEM_DERIVED = [ITEM_NONCANONICAL, ITEM_SAME_AS]
# genre names joined by "|" (tasks/sources.py): each name non-empty, not space-padded, no other separator in it
GENRES = r"^[^|,;\s](?:[^|,;\t\n\r]*[^|,;\s])?(?:\|[^|,;\s](?:[^|,;\t\n\r]*[^|,;\s])?)*$"


def with_items_derived(items: pd.DataFrame) -> pd.DataFrame:
    """The frame the catalogue suite runs on: the snapshot conformed (missing-value spellings as nulls) plus
    the derived columns of the events' id contract."""
    out = conform(items)
    out[ITEM_NONCANONICAL] = id_problems(out["item_id"]) if "item_id" in out else None
    out[ITEM_SAME_AS] = same_ids(out["item_id"]) if "item_id" in out else None
    return out


def items_suite():
    """The day's catalogue suite: shape, the events' id contract (canonical, unique once canonical), titles
    and the genre separator (`dropped_in_use` checks that it keeps the items still in use)."""
    import great_expectations.expectations as gxe

    checks = [
        (
            "items_columns",
            gxe.ExpectTableColumnsToMatchSet(column_set=[*ITEM_COLUMNS, *ITEM_DERIVED], exact_match=True),
        ),
        ("items_not_null_id", gxe.ExpectColumnValuesToNotBeNull(column="item_id")),
        ("items_unique_id", gxe.ExpectColumnValuesToBeUnique(column="item_id")),
        ("items_canonical_item_id", gxe.ExpectColumnValuesToBeNull(column=ITEM_NONCANONICAL)),
        ("items_unique_canonical_id", gxe.ExpectColumnValuesToBeNull(column=ITEM_SAME_AS)),
        ("items_title", gxe.ExpectColumnValuesToNotBeNull(column="title")),
        ("items_genres", gxe.ExpectColumnValuesToMatchRegex(column="genres", regex=GENRES)),
    ]
    return _named(checks)


def _named(checks: list) -> list:
    for name, exp in checks:
        exp.meta = {"check": name}
    return checks


def dropped_in_use(items: pd.DataFrame, in_use: list[str]) -> list[dict]:
    """`items_keep_in_use`: items with events in the trailing window that the catalogue no longer has."""
    dropped = sorted(set(in_use) - set(items["item_id"].dropna().astype(str)))
    if not dropped:
        return []
    return [{
        "check": "items_keep_in_use",
        "expectation": "expect_catalogue_to_keep_the_items_in_use",
        "column": "item_id",
        "unexpected_count": len(dropped),
        "sample_values": capped(dropped),
    }]  # fmt: skip


def _summarise(result) -> dict:
    r = result.result or {}
    kwargs = result.expectation_config.kwargs
    out = {
        "check": result.expectation_config.meta.get("check"),
        "expectation": result.expectation_config.type,
        "column": kwargs.get("column") or kwargs.get("column_list"),
    }
    for key in ("unexpected_count", "unexpected_percent"):
        if key in r:
            out[key] = r[key]
    if "observed_value" in r:  # a list (e.g. the columns seen) or a value: bounded either way
        seen = r["observed_value"]
        out["observed_value"] = (
            capped(seen) if isinstance(seen, list) else seen if not isinstance(seen, str) else clip(seen)
        )
    if "partial_unexpected_list" in r:
        out["sample_values"] = capped(r["partial_unexpected_list"])
    if "partial_unexpected_index_list" in r:
        out["sample_rows"] = r["partial_unexpected_index_list"][:SAMPLES]
    if r.get("details", {}).get("mismatched"):
        out["mismatched"] = {
            k: capped(v) if isinstance(v, list) else clip(v) for k, v in r["details"]["mismatched"].items()
        }
    if result.exception_info and result.exception_info.get("raised_exception"):
        out["exception"] = clip(str(result.exception_info.get("exception_message")), 500)
    return json.loads(json.dumps(out, default=str))


def run_checkpoint(name: str, df: pd.DataFrame, checks: list, docs_dir: Path, day: dt.date):
    """Run a suite as a real GX checkpoint with Data Docs; returns (results, that run's docs page)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    ctx.add_data_docs_site(
        site_name=DOCS_SITE,
        site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        },
    )
    batch = ctx.data_sources.add_pandas(name).add_dataframe_asset("day").add_batch_definition_whole_dataframe("whole")
    suite = ctx.suites.add(gx.ExpectationSuite(name=name))
    for _, exp in checks:
        suite.add_expectation(exp)
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(data=batch, suite=suite, name=f"{name}_{day}"))
    cp = ctx.checkpoints.add(
        gx.Checkpoint(
            name=f"daily_{name}",
            validation_definitions=[vd],
            actions=[UpdateDataDocsAction(name="docs", site_names=[DOCS_SITE])],
            # no unexpected-index query: GX builds it by filtering the whole frame once per check (8 s at 10M)
            result_format={
                "result_format": "SUMMARY",
                "partial_unexpected_count": 10,
                "return_unexpected_index_query": False,
            },
        )
    )
    started = time.time()
    res = cp.run(batch_parameters={"dataframe": df})
    results = [r for vr in res.run_results.values() for r in vr.results]
    pages = [p for p in (docs_dir / "validations" / name).rglob("*.html") if p.stat().st_mtime >= started - 1]
    return results, (max(pages, key=lambda p: p.stat().st_mtime) if pages else docs_dir / "index.html")


def quarantine(layout: Layout, day: dt.date, report: dict) -> Path:
    """Move the day's partitions (events, and its catalogue), untouched, out of raw/ with a report. A later
    day's history unit that held them (a re-run refusing a day that had passed) goes too."""
    from tasks.history import drop_history_after
    from tasks.ingest import delivery_id

    src, dest = layout.raw(day), layout.quarantine(day)
    if dest.exists():  # an earlier bad delivery of the same day: keep it, under its time of arrival
        shutil.move(str(dest), str(dest.with_name(f"{dest.name}.{int(dest.stat().st_mtime)}")))
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dest)  # one rename: raw/ never holds half a partition
    items = layout.items(day)
    if items.exists():
        os.replace(items, dest / "items")
    restored = _restore_delivery_in_use(layout, day, delivery_id(dest / EVENTS_FILE, dest / "items" / ITEMS_FILE))
    if restored:
        report = {**report, "restored_delivery": restored}
    write_json(dest / REPORT_FILE, report)
    drop_history_after(layout, day)
    return dest


def _restore_delivery_in_use(layout: Layout, day: dt.date, refused: str) -> str | None:
    """A bad re-delivery must not take the validated day out of the history: the delivery that was in
    use before it (kept by ingest under deliveries/) goes back into raw/. Returns its delivery id, if any."""
    from tasks.ingest import INGEST_REPORT

    log = layout.deliveries(day) / INGEST_REPORT
    if not log.exists():
        return None
    previous = json.loads(log.read_text()).get("previous")
    kept = layout.deliveries(day) / (previous or "")[:12]
    if not previous or previous == refused or not (kept / EVENTS_FILE).exists():
        return None
    if (kept / ITEMS_FILE).exists():
        with atomic_dir(layout.items(day)) as tmp:
            shutil.copy2(kept / ITEMS_FILE, tmp / ITEMS_FILE)
    with atomic_dir(layout.raw(day)) as tmp:
        shutil.copy2(kept / EVENTS_FILE, tmp / EVENTS_FILE)
    LOG.warning(
        "day %s: the refused re-delivery is quarantined; the earlier delivery %s is back in use", day, previous[:12]
    )
    return previous


# A delivery past these is not the contract's data with a mistake in it but something else: refused from the
# file's metadata and one vectorised pass, in seconds, before any check sees it (a check's report would quote it)
MAX_COLUMNS = 64  # the contract has 5 (events) and 4 (catalogue)
MAX_CELL_BYTES = 4096  # ids are at most `max_id_length`; no title or genre list comes near this
SAMPLES = 10  # values or rows quoted per finding
SAMPLE_CHARS = 80  # characters quoted per value


def clip(value, chars: int = SAMPLE_CHARS) -> str:
    """A value as quoted in a report, cut to `chars` with the length it had."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= chars else f"{text[:chars]}… ({len(text):,} characters)"


def capped(items: list, n: int = SAMPLES) -> list:
    """The first `n` items (clipped), and how many more there were."""
    head = [v if isinstance(v, int | float | bool) or v is None else clip(v) for v in list(items)[:n]]
    return head + ([f"… and {len(items) - n:,} more"] if len(items) > n else [])


def _read(path: Path, check: str, res: ValidationResult, prefix: str = "") -> pd.DataFrame | None:
    """The file as a frame, or None with the failure recorded: unreadable, far wider than the contract, or
    with a cell far longer than any the contract allows (each found without running the suite on it)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        if len(names) > MAX_COLUMNS:
            res.failures.append({
                "check": f"{prefix}columns",
                "expectation": "expect_table_columns_to_match_set",
                "column": None,
                "cause": f"{len(names):,} columns where the contract has "
                f"{len(ITEM_COLUMNS) if prefix else len(EVENT_COLUMNS)} (more than {MAX_COLUMNS} is refused unread)",
                "observed_value": capped(names),
            })  # fmt: skip
            return None
        table = pq.read_table(path)  # the dataset reader: 5x faster than pf.read() on a 10M-row file
    except Exception as exc:  # truncated, empty, CSV/JSON under a .parquet name: nothing to run expectations on
        res.failures.append(
            {"check": check, "expectation": "parquet_readable", "column": None, "exception": clip(f"{exc}", 500)}
        )
        return None
    huge = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_binary(col.type):
            long = pc.greater(pc.binary_length(col), MAX_CELL_BYTES)
            rows = pc.indices_nonzero(pc.fill_null(long, False)).to_pylist() if pc.any(long).as_py() else []
            if rows:
                huge.append({
                    "check": f"{prefix}length_{name}",
                    "expectation": "expect_column_value_lengths_to_be_between",
                    "column": name,
                    "cause": f"{len(rows):,} cells longer than {MAX_CELL_BYTES:,} bytes (the longest "
                    f"{pc.max(pc.binary_length(col)).as_py():,}): not an id, title or genre list",
                    "sample_values": [clip(col[i].as_py()) for i in rows[:SAMPLES]],
                    "sample_rows": rows[:SAMPLES],
                })  # fmt: skip
    if huge:
        res.failures += huge
        return None
    return table.to_pandas()


_SCALARS = (str, int, float, bool, type(None), pd.Timestamp, dt.date, dt.datetime)


def physical_problems(df: pd.DataFrame, columns: tuple[str, ...], prefix: str = "") -> list[dict]:
    """Columns whose cells are not scalars (lists, maps, bytes, arrays: nested Parquet types): the
    checks cannot run on them, so each is a failure with the cause and sample rows."""
    problems = []
    for col in columns:
        if col not in df or df[col].dtype != object:
            continue
        bad = [(i, v) for i, v in enumerate(df[col]) if not isinstance(v, _SCALARS) or isinstance(v, bytes)]
        if bad:
            kinds = sorted({type(v).__name__ for _, v in bad})
            problems.append(
                {
                    "check": f"{prefix}type_{col}",
                    "expectation": "expect_flat_scalar_values",
                    "column": col,
                    "cause": f"{len(bad)} values of type {', '.join(kinds)} where a scalar is expected "
                    "(a nested or binary Parquet type): the contract is flat columns",
                    "sample_values": [clip(repr(v)) for _, v in bad[:SAMPLES]],
                    "sample_rows": [i for i, _ in bad[:SAMPLES]],
                }
            )
    return problems


def previous_catalogue(layout: Layout, day: dt.date) -> pd.DataFrame | None:
    """The latest catalogue snapshot ingested before D (a declared input of validate_events), None on the
    first day that has one. One that cannot be read is an error naming it, never a skipped check."""
    from tasks.history import read_items, standing_items

    path = standing_items(layout, day, before=True)
    return None if path is None else read_items(path)


def _kind(dtype) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "timestamp"
    return "text"


def format_changes(items: pd.DataFrame, previous: pd.DataFrame | None) -> list[dict]:
    """Catalogue columns whose kind (text, number, ...) changed since the last snapshot, e.g. item ids
    sent as numbers: every later join on them would silently miss."""
    if previous is None:
        return []
    out = []
    for col in ("item_id", "title", "genres", "year"):
        if col in items and col in previous and _kind(items[col].dtype) != _kind(previous[col].dtype):
            was, now = _kind(previous[col].dtype), _kind(items[col].dtype)
            out.append(
                {
                    "check": "items_format",
                    "expectation": "expect_same_format_as_previous_catalogue",
                    "column": col,
                    "cause": f"`{col}` changed format: {was} in the previous catalogue, {now} now "
                    f"(e.g. {capped(items[col].head(3).tolist())}); send it as {was}",
                    "sample_rows": list(range(min(3, len(items)))),
                }
            )
    return out


def _crashed(check: str, exc: Exception) -> dict:
    LOG.warning("validation of the day could not run %s: %s", check, exc)
    return {
        "check": check,
        "expectation": "expect_suite_to_run",
        "column": None,
        "cause": "the checks could not run on this data; it does not follow the contract (docs/data-guard.md)",
        "exception": clip(f"{type(exc).__name__}: {exc}", 500),
    }


def validate_day(day: dt.date, layout: Layout, params: dict, accept: tuple[str, ...] = ()) -> ValidationResult:
    """Run both suites; quarantine the day if any blocking check failed.

    `accept`: check names an operator has reviewed and accepts for this run only (recorded).
    """
    part = layout.raw(day) / EVENTS_FILE
    report_dir = layout.reports("validation", day)
    docs_dir = report_dir / DOCS_DIR  # this day's Data Docs, kept with its report (and in the object store)
    if docs_dir.exists():
        shutil.rmtree(docs_dir)  # a re-run's pages replace the last run's
    res = ValidationResult(day=str(day), passed=False, rows=0, report=str(report_dir / REPORT_FILE))
    if not part.exists():
        raise ValidationFailed(f"no partition for {day} at {part}: run `python -m tasks.ingest --date {day}` first")
    warn_only = {k for k, v in (params.get("policy") or {}).items() if v == "warn"} | set(accept)
    res.accepted = sorted(accept)
    results = []
    frames: dict[str, pd.DataFrame | None] = {"events": None, "items": None}  # what each suite ran on
    key_index = day_hashes = None
    trailing = functools.cache(lambda: trailing_days(layout, day, params["volume_window_days"]))  # read once

    df = _read(part, "readable", res)
    items_file = layout.items(day) / ITEMS_FILE
    items = _read(items_file, "items_readable", res, prefix="items_") if items_file.exists() else None
    for prefix, frame in (("", df), ("items.", items)):  # missing values written as words: counted, then nulls
        for col in frame.columns if frame is not None else ():
            if spelled := missing_spellings(
                frame[col].astype(object) if frame[col].dtype == "category" else frame[col]
            ):
                res.missing[prefix + str(col)] = spelled
    if df is not None:
        res.rows = len(df)
        band = volume_bounds(trailing_counts(layout, day, params["volume_window_days"]), params)
        res.volume = {**band, "rows": res.rows, "verdict": volume_verdict(res.rows, band)}
        res.failures += physical_problems(df, ("user_id", "item_id", "event_type", "rating", "event_ts"))
        if not res.failures:  # the suite runs on frames whose cells are what the columns claim
            try:
                known = items if items is not None else previous_catalogue(layout, day)  # no catalogue today
                ids = known["item_id"] if known is not None and "item_id" in known else None
                catalogue = None if ids is None or physical_problems(known, ("item_id",)) else ids.astype(str).tolist()
                checks = events_suite(day, params, catalogue, band, res.rows)
                frames["events"] = with_derived(df)
                if catalogue is not None:
                    known_ids = frames["events"]["item_id"].isin(catalogue)
                    frames["events"][UNKNOWN] = frames["events"]["item_id"].where(~known_ids, None)
                key = params["event_key"]
                if key and all(k in df for k in key):  # a missing key column fails the columns check
                    key_index = key_index_before(layout, day, key)
                    day_hashes = key_hashes(frames["events"], key)
                    frames["events"][REPLAY] = replays = replay_days(key_index, day_hashes, frames["events"].index)
                    if n := int(replays.notna().sum()):
                        earlier = replays.value_counts().sort_index()
                        res.replays = {"key": key, "rows": n, "days": len(earlier),
                                       "earlier_days": {d: int(c) for d, c in earlier.items()}}  # fmt: skip
                got, page = run_checkpoint("events", frames["events"], checks, docs_dir / "events", day)
                results += got
                res.docs = str(page.relative_to(report_dir))
                res.profile, found = distribution_findings(frames["events"], trailing(), params)
                for entry in found:  # a block the policy turns into a warning is a warning
                    blocks = entry["band"]["level"] == "block" and entry["check"] not in warn_only
                    (res.failures if blocks else res.warnings).append(entry)
            except Exception as exc:  # every input gets a verdict, never a raw traceback
                res.failures.append(_crashed("events_suite", exc))
    if items is not None:
        shape = physical_problems(items, ("item_id", "title", "genres", "year"), prefix="items_")
        shape += format_changes(items, previous_catalogue(layout, day))
        res.failures += shape
        if not shape:
            try:
                frames["items"] = with_items_derived(items)
                got, _ = run_checkpoint("items", frames["items"], items_suite(), docs_dir / "items", day)
                in_use = sorted({i for t in trailing() for i in t["item_id"].dropna().astype(str).unique()})
                for dropped in dropped_in_use(frames["items"], in_use):
                    (res.warnings if dropped["check"] in warn_only else res.failures).append(dropped)
                results += got
            except Exception as exc:  # likewise
                res.failures.append(_crashed("items_suite", exc))
    for site in (docs_dir / "events", docs_dir / "items"):  # outside the suites' verdict: a page that would
        if site.is_dir():  # load from outside (a new GX template) is this code's error, never the day's
            localize(site)  # vendored copies, not CDNs: styled and complete offline, in the sandbox
    for r in results:
        if not r.success:
            summary = _summarise(r)
            if summary["check"] == "replayed_events" and res.replays:
                summary["cause"] = replay_cause(res.replays)
            frame = frames["items" if summary["check"].startswith("items_") else "events"]
            column = summary.get("column")
            if isinstance(column, str) and frame is not None and column in frame:
                summary["column_type"] = str(frame[column].dtype)
            (res.warnings if summary["check"] in warn_only else res.failures).append(summary)
    res.passed = not res.failures
    verdict = (res.volume or {}).get("verdict")
    LOG.info("validate %s: %d events, %d checks run, %d blocking failures, %d warnings%s", day, res.rows, len(results),
             len(res.failures), len(res.warnings), f"; volume: {verdict}" if verdict else "")  # fmt: skip
    for w in res.warnings:
        LOG.info("validate warning: %s", describe(w, res.volume, res.missing))
    if not res.passed:
        res.quarantined = str(layout.quarantine(day))
        quarantine(layout, day, asdict(res))
    if key_index is not None:  # the keys in use after D: D's passed delivery, or the one restored after a refusal
        write_key_index(layout, day, key_index, params["event_key"], day_hashes if res.passed else None)
    write_json(report_dir / REPORT_FILE, asdict(res))
    return res


_NULL_CHECKS = {f"not_null_{c}": c for c in ("user_id", "item_id", "event_ts", "event_type", "rating")} | {
    "items_not_null_id": "items.item_id",
    "items_title": "items.title",
}


def describe(check: dict, volume: dict | None = None, missing: dict | None = None) -> str:
    """One failed or warned check in words: what was expected, what was observed, sample rows."""
    if check["check"] in ("row_count", "min_rows") and (volume or {}).get("verdict"):
        detail = volume["verdict"]
    elif check.get("exception"):
        detail = check["exception"]
    elif "unexpected_count" in check:
        detail = f"{check['unexpected_count']} rows"
    elif "observed_value" in check:
        seen = check["observed_value"]
        detail = "observed no values (the column is empty)" if seen is None or seen == [] else f"observed {seen}"
    elif check.get("column_type"):  # GX gave no figures: it could not compare this column's values at all
        detail = f"not measurable on a column of type {check['column_type']}"
    else:
        detail = ""
    cause = check.get("cause") or CAUSES.get(check["check"])
    if cause and cause not in detail:
        detail = f"{cause}; {detail}" if detail else cause
    spelled = (missing or {}).get(_NULL_CHECKS.get(check["check"], ""))
    if spelled:  # the nulls an export wrote as words
        words = ", ".join(f"{w!r} x{n}" for w, n in list(spelled.items())[:5])
        detail += f", of which {sum(spelled.values())} written as a missing-value spelling ({words})"
    sample, rows = check.get("sample_values"), check.get("sample_rows")
    return (
        f"{check['check']} ({check['expectation']}, column {check.get('column')}): {detail}"
        + (f", e.g. values {sample[:5]}" if sample else "")
        + (f" at rows {rows[:5]}" if rows else "")
        + (f" — {check['mismatched']}" if check.get("mismatched") else "")
    )


def describe_failures(res: ValidationResult, most: int = 20) -> str:
    """The refusal in words, bounded: at most `most` checks, each line at most 600 characters."""
    lines = [f"day {res.day} failed validation and was quarantined at {res.quarantined}:"]
    lines += [f"  - {clip(describe(f, res.volume, res.missing), 600)}" for f in res.failures[:most]]
    if len(res.failures) > most:
        lines.append(f"  - … and {len(res.failures) - most} more failed checks (all in {res.report})")
    lines.append("Fix the upstream export, re-deliver the day to the landing zone and re-run the day.")
    return "\n".join(lines)


def run(day: dt.date, params: dict, layout: Layout, accept: tuple[str, ...] = ()) -> ValidationResult:
    """Validate the day; raise ValidationFailed (after quarantining) if a blocking check failed."""
    res = validate_day(day, layout, params["validate"], tuple(accept))
    if not res.passed:
        raise ValidationFailed(describe_failures(res))
    return res


def main(argv: list[str] | None = None) -> None:
    _args, params, day = step_cli(__doc__, argv)
    res = run(day, params, Layout.default())
    print(json.dumps({"day": res.day, "rows": res.rows, "warnings": [w["check"] for w in res.warnings]}))


if __name__ == "__main__":
    main()
