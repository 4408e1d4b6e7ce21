"""Validate: a Great Expectations checkpoint on day D's events; quarantine what fails.

The suite is code (`events_suite`), built per day from params (ranges, allowed event
types) and context (the day's bounds, the catalogue, the trailing days' volume).
Each expectation carries a `check` name in its meta; `validate.policy` in params.yaml
says which checks only warn; every other failure blocks. A blocked partition is moved
intact from `data/raw/events/date=D/` to `data/quarantine/date=D/` with `report.json`
naming every failed check and sample offending values, so nothing downstream can
train on it and nothing is lost. Data Docs are written under `data/reports/gx_docs/`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from tasks.common import (
    Layout,
    ValidationFailed,
    day_bounds,
    day_str,
    step_cli,
    write_json,
)
from tasks.replay import EVENTS_FILE, ITEMS_FILE
from tasks.sources import EVENT_COLUMNS

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


def volume_bounds(layout: Layout, day: dt.date, params: dict) -> tuple[int, int | None]:
    """Row-count bounds from the median of the trailing ingested days (none yet: no upper bound)."""
    counts = []
    for back in range(1, params["volume_window_days"] + 1):
        part = layout.raw(day - dt.timedelta(days=back)) / EVENTS_FILE
        if part.exists():
            import pyarrow.parquet as pq

            counts.append(pq.ParquetFile(part).metadata.num_rows)
    if not counts:
        return params["volume_min_rows"], None
    median = float(pd.Series(counts).median())
    low = max(params["volume_min_rows"], int(median * params["volume_min_ratio"]))
    return low, int(median * params["volume_max_ratio"]) + 1


def events_suite(day: dt.date, params: dict, catalogue_ids: list[str] | None, volume: tuple[int, int | None]):
    """The day's expectation suite: list of (check name, expectation)."""
    import great_expectations.expectations as gxe

    start, end = (pd.Timestamp(t, unit="s", tz="UTC") for t in day_bounds(day))
    checks = [
        ("columns", gxe.ExpectTableColumnsToMatchSet(column_set=EVENT_COLUMNS, exact_match=True)),
        ("row_count", gxe.ExpectTableRowCountToBeBetween(min_value=volume[0], max_value=volume[1])),
        ("no_duplicates", gxe.ExpectCompoundColumnsToBeUnique(column_list=["user_id", "item_id", "event_ts"])),
        ("type_user_id", gxe.ExpectColumnValuesToBeOfType(column="user_id", type_="str")),
        ("type_item_id", gxe.ExpectColumnValuesToBeOfType(column="item_id", type_="str")),
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
    ]
    checks += [
        (f"not_null_{c}", gxe.ExpectColumnValuesToNotBeNull(column=c)) for c in ("user_id", "item_id", "event_ts")
    ]
    if catalogue_ids is not None:
        checks += [  # any unknown item is flagged (policy: warn); too many of them block
            ("unknown_items", gxe.ExpectColumnValuesToBeInSet(column="item_id", value_set=catalogue_ids)),
            (
                "unknown_items_share",
                gxe.ExpectColumnValuesToBeInSet(
                    column="item_id", value_set=catalogue_ids, mostly=1 - params["max_unknown_item_share"]
                ),
            ),
        ]
    for name, exp in checks:
        exp.meta = {"check": name}
    return checks


def _summarise(result) -> dict:
    r = result.result or {}
    out = {
        "check": result.expectation_config.meta.get("check"),
        "expectation": result.expectation_config.type,
        "column": result.expectation_config.kwargs.get("column") or result.expectation_config.kwargs.get("column_list"),
    }
    for key in ("observed_value", "unexpected_count", "unexpected_percent", "partial_unexpected_list"):
        if key in r:
            out[key] = r[key][:10] if key == "partial_unexpected_list" else r[key]
    if result.exception_info and result.exception_info.get("raised_exception"):
        out["exception"] = str(result.exception_info.get("exception_message"))[:500]
    return json.loads(json.dumps(out, default=str))


def run_checkpoint(df: pd.DataFrame, checks: list, docs_dir: Path, day: dt.date):
    """Run the suite as a real GX checkpoint; returns (per-expectation results, docs index path)."""
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
    batch = (
        ctx.data_sources.add_pandas("events").add_dataframe_asset("day").add_batch_definition_whole_dataframe("whole")
    )
    suite = ctx.suites.add(gx.ExpectationSuite(name="events"))
    for _, exp in checks:
        suite.add_expectation(exp)
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(data=batch, suite=suite, name=f"events_{day_str(day)}"))
    cp = ctx.checkpoints.add(
        gx.Checkpoint(
            name="daily_events",
            validation_definitions=[vd],
            actions=[UpdateDataDocsAction(name="docs", site_names=[DOCS_SITE])],
            result_format={"result_format": "SUMMARY"},
        )
    )
    res = cp.run(batch_parameters={"dataframe": df}, run_id=None)
    results = [r for vr in res.run_results.values() for r in vr.results]
    return results, docs_dir / "index.html"


def quarantine(layout: Layout, day: dt.date, report: dict) -> Path:
    """Move the partition, untouched, out of raw/ and write its report beside it."""
    src, dest = layout.raw(day), layout.quarantine(day)
    if dest.exists():  # an earlier bad delivery of the same day: keep it, under its time of arrival
        shutil.move(str(dest), str(dest.with_name(f"{dest.name}.{int(dest.stat().st_mtime)}")))
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dest)  # one rename: raw/ never holds half a partition
    write_json(dest / REPORT_FILE, report)
    return dest


def validate_day(day: dt.date, layout: Layout, params: dict) -> ValidationResult:
    part = layout.raw(day) / EVENTS_FILE
    report_dir = layout.reports("validation", day)
    docs_dir = layout.root / "reports" / "gx_docs"
    res = ValidationResult(day=str(day), passed=False, rows=0, report=str(report_dir / REPORT_FILE))
    if not part.exists():
        raise ValidationFailed(f"no partition for {day} at {part}: run `python -m tasks.ingest --date {day}` first")
    try:
        df = pd.read_parquet(part)
    except Exception as exc:  # a truncated or non-Parquet file: nothing to run expectations on
        res.failures.append(
            {"check": "readable", "expectation": "parquet_readable", "exception": f"{type(exc).__name__}: {exc}"[:500]}
        )
    else:
        res.rows = len(df)
        items_file = layout.items(day) / ITEMS_FILE
        catalogue = pd.read_parquet(items_file)["item_id"].astype(str).tolist() if items_file.exists() else None
        checks = events_suite(day, params, catalogue, volume_bounds(layout, day, params))
        results, docs = run_checkpoint(df, checks, docs_dir, day)
        res.docs = str(docs)
        warn_only = {k for k, v in (params.get("policy") or {}).items() if v == "warn"}
        for r in results:
            if not r.success:
                summary = _summarise(r)
                (res.warnings if summary["check"] in warn_only else res.failures).append(summary)
    res.passed = not res.failures
    if not res.passed:
        res.quarantined = str(layout.quarantine(day))
        quarantine(layout, day, asdict(res))
    write_json(report_dir / REPORT_FILE, asdict(res))
    return res


def describe_failures(res: ValidationResult) -> str:
    lines = [f"day {res.day} failed validation and was quarantined at {res.quarantined}:"]
    for f in res.failures:
        detail = f.get("exception") or f"observed {f.get('observed_value', f.get('unexpected_count'))}"
        sample = f.get("partial_unexpected_list")
        lines.append(
            f"  - {f['check']} ({f['expectation']}, column {f.get('column')}): {detail}"
            + (f", e.g. {sample[:5]}" if sample else "")
        )
    lines.append("Fix the upstream export, re-deliver the day to the landing zone and re-run the day.")
    return "\n".join(lines)


def run(day: dt.date, params: dict, layout: Layout) -> ValidationResult:
    """Validate the day; raise ValidationFailed (after quarantining) if a blocking check failed."""
    res = validate_day(day, layout, params["validate"])
    if not res.passed:
        raise ValidationFailed(describe_failures(res))
    return res


def main(argv: list[str] | None = None) -> None:
    _args, params, day = step_cli(__doc__, argv)
    res = run(day, params, Layout.default())
    print(json.dumps({"day": res.day, "rows": res.rows, "warnings": [w["check"] for w in res.warnings]}))


if __name__ == "__main__":
    main()
