"""The expectation suites against a good day and a corpus of the bad days they claim to catch.

Every bad day must: fail validation with a message naming the broken check and the offending
column (and sample rows/values where there are rows); be moved intact, byte for byte, to
quarantine with its report; leave the other days untouched; and a fixed re-delivery of the same
day must then go through. Real ML-100K days, real GX checkpoints.
"""

from __future__ import annotations

import datetime as dt
import io
import math

import pandas as pd
import pytest

from tasks.common import ValidationFailed, read_json, sha256_file
from tasks.ingest import delivery_id, ingest_day
from tasks.replay import EVENTS_FILE, ITEMS_FILE, landing_path
from tasks.validate import REPORT_FILE, run, validate_day
from tests.data.conftest import DAY

TRAILING_MEDIAN = 566  # events on 09-22, 09-23, 09-24: 666, 386, 566


def _events(landed) -> pd.DataFrame:
    return pd.read_parquet(landing_path(landed, DAY) / EVENTS_FILE)


def _items(landed) -> pd.DataFrame:
    return pd.read_parquet(landing_path(landed, DAY) / ITEMS_FILE)


def _redeliver(landed, layout, events=None, raw: bytes | None = None, items: pd.DataFrame | None = None) -> str:
    """Upstream re-sends the day (events as a frame or raw bytes, optionally a new catalogue)."""
    path = landing_path(landed, DAY) / EVENTS_FILE
    if raw is not None:
        path.write_bytes(raw)
    elif events is not None:
        events.to_parquet(path, index=False)
    if items is not None:
        items.to_parquet(landing_path(landed, DAY) / ITEMS_FILE, index=False)
    ingest_day(DAY, landed, layout)
    return sha256_file(path)


def test_good_day_passes_and_writes_data_docs(landed, layout, params):
    res = validate_day(DAY, layout, params["validate"])
    assert res.passed, res.failures
    assert res.rows == 210
    report_dir = layout.reports("validation", DAY)
    for suite in ("events", "items"):  # the day's own sites, kept with its report
        assert (report_dir / "data_docs" / suite / "index.html").exists()
    assert res.docs.endswith(".html") and (report_dir / res.docs).is_file()  # relative: valid on any machine
    assert "validations" in res.docs  # that day's own page, not only the index
    again = validate_day(DAY, layout, params["validate"])  # a re-run replaces the pages, never piles them up
    assert len(list((report_dir / "data_docs" / "events" / "validations").rglob("*.html"))) == 1
    assert again.docs != res.docs
    assert read_json(layout.reports("validation", DAY) / REPORT_FILE)["passed"]


def test_a_data_docs_page_loading_from_outside_is_this_codes_error_not_the_days(landed, layout, params, monkeypatch):
    """A GX upgrade whose templates load a file no vendored copy replaces (here: jQuery taken off the map)
    stops validation with that error, naming the page; the good delivery is not refused nor quarantined."""
    import re

    from tasks import datadocs

    known = [u for u in datadocs.CDN if "jquery" not in u]
    monkeypatch.setattr(datadocs, "_CDN", re.compile("|".join(re.escape(u) for u in known) + r'(?=["\'])'))
    partition = sha256_file(layout.raw(DAY) / EVENTS_FILE)
    with pytest.raises(datadocs.DataDocsError, match=r"\.html line \d+ loads from outside the site .*jquery"):
        run(DAY, params, layout)
    assert not layout.quarantine(DAY).exists()
    assert sha256_file(layout.raw(DAY) / EVENTS_FILE) == partition
    monkeypatch.undo()
    assert run(DAY, params, layout).passed


def _spike(df):  # > 10x the trailing median, each copy as new users (no duplicates, no bots)
    copies = math.ceil(11 * TRAILING_MEDIAN / len(df))
    return pd.concat([df.assign(user_id=df["user_id"] + f"-{i}") for i in range(copies)], ignore_index=True)


def _bot(df):
    n = 2500
    bot = pd.DataFrame({
        "user_id": "bot", "item_id": [str(1 + i % 1682) for i in range(n)],
        "event_ts": df["event_ts"].min() + pd.to_timedelta(range(n), unit="s"),
        "event_type": "rating", "rating": pd.Series([5.0] * n, dtype="float32"),
    })  # fmt: skip
    return pd.concat([df, bot], ignore_index=True)


def _non_utf8(df):
    out = df.copy()
    out["user_id"] = [b"\xff\xfe" + u.encode() if i % 9 == 0 else u.encode() for i, u in enumerate(df["user_id"])]
    return out


def _ms(df):  # epoch milliseconds as plain integers where a timestamp is expected
    return df.assign(event_ts=df["event_ts"].dt.as_unit("ms").astype("int64"))


def _every(k, col, value):
    return lambda df: df.assign(**{col: df[col].where(df.index % k != 0, value)})


def _ids(col, value):  # every 6th id respelled as `value(id)`
    return lambda df: df.assign(**{col: [value(v) if i % 6 == 0 else v for i, v in enumerate(df[col])]})


def _naive_ts(df):  # the same instants without a time zone
    return df.assign(event_ts=df["event_ts"].dt.tz_localize(None))


def _one_timestamp(df):  # every event stamped with the same placeholder time
    return df.assign(event_ts=df["event_ts"].iloc[0])


# case -> (how the bad delivery is made, the check that must name it, the column it must name)
BAD_EVENTS = {
    "zero_rows": (lambda df: df.iloc[:0], "min_rows", None),
    "missing_column": (lambda df: df.drop(columns=["rating"]), "columns", None),
    "extra_column": (lambda df: df.assign(country="NL"), "columns", None),
    "renamed_column": (lambda df: df.rename(columns={"rating": "score"}), "columns", None),
    "type_changed": (lambda df: df.assign(rating=df["rating"].astype(str)), "type_rating", "rating"),
    "null_keys": (_every(5, "user_id", None), "not_null_user_id", "user_id"),
    "ids_spelled_missing": (
        _ids("user_id", lambda v: ["NULL", "n/a", "None", "\\N"][int(v) % 4]),
        "not_null_user_id",
        "user_id",
    ),
    "items_spelled_missing": (_ids("item_id", lambda v: " null "), "not_null_item_id", "item_id"),
    "event_types_spelled_missing": (_every(3, "event_type", "N/A"), "not_null_event_type", "event_type"),
    "negative_ids": (_every(4, "item_id", "-5"), "valid_item_id", "item_id"),
    "zero_ids": (_every(6, "user_id", "0"), "valid_user_id", "user_id"),
    "rating_out_of_range": (_every(7, "rating", 11.0), "rating_range", "rating"),
    "ts_outside_day": (lambda df: df.assign(event_ts=df["event_ts"] - pd.Timedelta(days=2)), "ts_in_day", "event_ts"),
    "ts_in_future": (lambda df: df.assign(event_ts=df["event_ts"] + pd.Timedelta(days=400)), "ts_in_day", "event_ts"),
    "ts_in_milliseconds": (_ms, "type_event_ts", "event_ts"),
    "duplicate_events": (lambda df: pd.concat([df, df.head(5)], ignore_index=True), "no_duplicates", None),
    "bot_like_user": (_bot, "bot_like_users", "_user_events_today"),
    "unknown_event_type": (lambda df: df.assign(event_type="purchase"), "event_type", "event_type"),
    "oversized_strings": (_every(10, "item_id", "x" * 500), "length_item_id", "item_id"),
    "non_utf8_bytes": (_non_utf8, "type_user_id", "user_id"),
    "padded_ids": (_ids("user_id", lambda v: f" {v} "), "canonical_user_id", "_noncanonical_user_id"),
    "leading_zero_ids": (_ids("item_id", lambda v: f"00{v}"), "canonical_item_id", "_noncanonical_item_id"),
    "float_spelled_ids": (_ids("item_id", lambda v: f"{v}.0"), "canonical_item_id", "_noncanonical_item_id"),
    "fullwidth_digit_ids": (
        _ids("item_id", lambda v: v.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})),
        "canonical_item_id",
        "_noncanonical_item_id",
    ),
    "zero_width_space_ids": (_ids("user_id", lambda v: v + "\u200b"), "canonical_user_id", "_noncanonical_user_id"),
    "arabic_indic_digit_ids": (
        _ids("item_id", lambda v: v.translate({ord(d): 0x0660 + int(d) for d in "0123456789"})),
        "canonical_item_id",
        "_noncanonical_item_id",
    ),
    "missing_ratings": (_every(4, "rating", None), "not_null_rating", "rating"),
    "timestamps_without_time_zone": (_naive_ts, "ts_timezone", "_event_ts_zone"),
    "one_timestamp_for_every_event": (_one_timestamp, "ts_distinct", "event_ts"),
    "unknown_items_over_share": (
        lambda df: df.assign(item_id="new-" + df["item_id"]),
        "unknown_items_share",
        "_unknown_item_id",
    ),
}
BAD_FILES = {
    "truncated_parquet": lambda good: good[: len(good) // 2],
    "csv_instead_of_parquet": lambda good: pd.read_parquet(io.BytesIO(good)).to_csv().encode(),
    "json_instead_of_parquet": lambda good: pd.read_parquet(io.BytesIO(good)).to_json().encode(),
    "empty_file": lambda good: b"",
}


def _ids_as_numbers(items):
    return items.assign(item_id=items["item_id"].astype(int))


BAD_CATALOGUES = {
    "catalogue_item_ids_as_numbers": (_ids_as_numbers, "items_format"),
    "catalogue_year_as_text": (lambda items: items.assign(year=items["year"].astype(str)), "items_format", "year"),
    "catalogue_drops_items_in_use": (lambda items: items[items["item_id"] != "50"], "items_keep_in_use"),
    "catalogue_duplicate_ids": (lambda items: pd.concat([items, items.head(3)]), "items_unique_id"),
    "catalogue_ids_equal_once_canonical": (
        lambda items: pd.concat([items, items.head(2).assign(item_id=lambda d: "0" + d["item_id"])]),
        "items_unique_canonical_id",
        "_same_item_id_as",
    ),
    "catalogue_padded_ids": (
        lambda items: items.assign(item_id=items["item_id"] + " "),
        "items_canonical_item_id",
        "_noncanonical_item_id",
    ),
    "catalogue_empty_titles": (
        lambda items: items.assign(title=["", "  ", "N/A"] * (len(items) // 3) + [""] * (len(items) % 3)),
        "items_title",
        "title",
    ),
    "catalogue_other_genre_separator": (
        lambda items: items.assign(genres=items["genres"].str.replace("|", ", ")),
        "items_genres",
        "genres",
    ),
}


def _assert_quarantined(err, check, column, layout, digest, before):
    message = str(err.value)
    assert f"- {check} (" in message  # the broken expectation, by name ...
    assert "expect" in message or "parquet_readable" in message  # ... and its GX expectation type
    if column:
        assert f"column {column}" in message
    q = layout.quarantine(DAY)
    raw = layout.raw(DAY) / EVENTS_FILE  # gone, or the earlier delivery back in use: never the bad one
    refused = delivery_id(q / EVENTS_FILE, q / "items" / ITEMS_FILE)
    assert not raw.exists() or delivery_id(raw, layout.items(DAY) / ITEMS_FILE) != refused
    assert sha256_file(q / EVENTS_FILE) == digest  # intact, byte for byte
    assert check in {f["check"] for f in read_json(q / REPORT_FILE)["failures"]}
    assert {d: sha256_file(layout.raw(d) / EVENTS_FILE) for d in before} == before  # other days untouched


def _other_days(layout):
    days = [DAY - dt.timedelta(days=b) for b in (1, 2, 3)]
    return {d: sha256_file(layout.raw(d) / EVENTS_FILE) for d in days}


@pytest.mark.parametrize("case", sorted(BAD_EVENTS))
def test_bad_events_are_quarantined_and_a_fixed_redelivery_passes(case, landed, layout, params):
    make, check, column = BAD_EVENTS[case]
    good = _events(landed)
    before = _other_days(layout)
    digest = _redeliver(landed, layout, make(good))
    with pytest.raises(ValidationFailed) as err:
        run(DAY, params, layout)
    _assert_quarantined(err, check, column, layout, digest, before)
    if column and case not in (
        "type_changed", "ts_in_milliseconds", "non_utf8_bytes", "timestamps_without_time_zone",
        "one_timestamp_for_every_event",
    ):  # fmt: skip
        failure = next(f for f in read_json(layout.quarantine(DAY) / REPORT_FILE)["failures"] if f["check"] == check)
        assert failure["sample_rows"], "the report points at offending rows"
    _redeliver(landed, layout, good)
    assert run(DAY, params, layout).passed


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_unreadable_files_are_quarantined_and_a_fixed_redelivery_passes(case, landed, layout, params):
    good = (landing_path(landed, DAY) / EVENTS_FILE).read_bytes()
    before = _other_days(layout)
    digest = _redeliver(landed, layout, raw=BAD_FILES[case](good))
    with pytest.raises(ValidationFailed, match="parquet_readable") as err:
        run(DAY, params, layout)
    _assert_quarantined(err, "readable", None, layout, digest, before)
    _redeliver(landed, layout, raw=good)
    assert run(DAY, params, layout).passed


@pytest.mark.parametrize("case", sorted(BAD_CATALOGUES))
def test_bad_catalogue_is_quarantined_and_a_fixed_redelivery_passes(case, landed, layout, params):
    make, check, *column = BAD_CATALOGUES[case]
    good_items = _items(landed)
    before = _other_days(layout)
    digest = _redeliver(landed, layout, items=make(good_items))
    with pytest.raises(ValidationFailed) as err:
        run(DAY, params, layout)
    _assert_quarantined(err, check, column[0] if column else "item_id", layout, digest, before)
    assert (layout.quarantine(DAY) / "items" / ITEMS_FILE).exists()  # the catalogue goes with its day
    _redeliver(landed, layout, items=good_items)
    assert run(DAY, params, layout).passed


def test_unknown_items_warn_and_are_counted(landed, layout, params):
    """Items missing from the catalogue are allowed (policy: warn) and counted in the report."""
    df = _events(landed)
    df.loc[0, "item_id"] = "999999"
    _redeliver(landed, layout, df)
    res = run(DAY, params, layout)
    assert res.passed
    assert [w["check"] for w in res.warnings] == ["unknown_items"]
    assert res.warnings[0]["unexpected_count"] == 1 and res.warnings[0]["sample_values"] == ["999999"]


def test_same_day_delivered_twice_is_idempotent(landed, layout, params):
    assert run(DAY, params, layout).passed
    assert ingest_day(DAY, landed, layout).status == "unchanged"
    assert run(DAY, params, layout).passed


@pytest.mark.parametrize(
    "make", [_spike, lambda df: df.iloc[: int(0.05 * TRAILING_MEDIAN)]], ids=["spike_10x", "drop_95pct"]
)
def test_a_volume_anomaly_in_valid_data_trains_and_says_so_with_figures(make, landed, layout, params):
    """Suspicious, not broken: the day passes with a `row_count` warning that gives the count, the
    trailing median, the ratio and the band; with `row_count: block` the same day is quarantined."""
    from tasks.validate import describe

    _redeliver(landed, layout, make(_events(landed)))
    res = run(DAY, params, layout)
    assert res.passed and [w["check"] for w in res.warnings] == ["row_count"]
    text = describe(res.warnings[0], res.volume)
    assert f"{res.rows:,} events is" in text and "median of the trailing" in text and "allowed" in text
    params["validate"]["policy"]["row_count"] = "block"
    with pytest.raises(ValidationFailed, match="median of the trailing"):
        run(DAY, params, layout)


def test_an_accepted_check_passes_for_that_run_and_is_recorded(landed, layout, params):
    """An operator who reviewed a real traffic spike under a strict policy accepts `row_count` for one run."""
    params["validate"]["policy"]["row_count"] = "block"
    _redeliver(landed, layout, _spike(_events(landed)))
    res = run(DAY, params, layout, accept=("row_count",))
    assert res.passed
    assert res.accepted == ["row_count"]
    assert [w["check"] for w in res.warnings] == ["row_count"]


def test_policy_lives_in_params(landed, layout, params):
    """Turning a check to `warn` in params.yaml lets the day through with the failure reported."""
    _redeliver(landed, layout, _every(7, "rating", 11.0)(_events(landed)))
    params["validate"]["policy"]["rating_range"] = "warn"
    res = run(DAY, params, layout)
    assert res.passed
    assert [w["check"] for w in res.warnings] == ["rating_range"]


def _dictionary(df):  # what Spark and pandas write for low-cardinality strings
    return df.astype({"user_id": "category", "item_id": "category", "event_type": "category"})


def _new_york(df):  # the same instants, stored in another zone
    return df.assign(event_ts=df["event_ts"].dt.tz_convert("America/New_York"))


ENCODED_DIFFERENTLY = {"dictionary_columns": _dictionary, "another_time_zone": _new_york}


@pytest.mark.parametrize("case", sorted(ENCODED_DIFFERENTLY))
def test_what_is_only_encoded_differently_passes_and_reads_back_as_utc(case, landed, layout, params):
    """Dictionary-encoded columns and other time zones are the same events: they pass, and every
    later read of the history sees UTC strings (a non-UTC day used to break every later day)."""
    from tasks.history import load_events

    good = _events(landed)
    _redeliver(landed, layout, ENCODED_DIFFERENTLY[case](good))
    res = run(DAY, params, layout)
    assert res.passed, res.failures
    events = load_events(layout, DAY)
    assert str(events["event_ts"].dt.tz) == "UTC"
    day = events[events["event_ts"] >= pd.Timestamp(DAY, tz="UTC")]
    assert sorted(day["user_id"].astype(str)) == sorted(good["user_id"].astype(str))


def test_a_zstd_codec_passes(landed, layout, params):
    path = landing_path(landed, DAY) / EVENTS_FILE
    _events(landed).to_parquet(path, index=False, compression="zstd")
    ingest_day(DAY, landed, layout)
    assert run(DAY, params, layout).passed


def test_contract_failures_say_the_cause_in_words(landed, layout, params):
    _redeliver(landed, layout, _ids("item_id", lambda v: f"00{v}")(_events(landed)))
    with pytest.raises(ValidationFailed, match="ids must be in canonical form") as err:
        run(DAY, params, layout)
    assert "a number spelled non-canonically" in str(err.value)  # the offending value and why


def test_a_day_without_catalogue_is_checked_against_the_previous_one(landed, layout, params):
    """No items.parquet today: the day's items are checked against the last catalogue, so a day whose
    items are all unknown is refused instead of passing with no catalogue to compare to."""
    (landing_path(landed, DAY) / ITEMS_FILE).unlink()
    import shutil

    shutil.rmtree(layout.items(DAY))
    _redeliver(landed, layout, _events(landed).assign(item_id=lambda df: "new-" + df["item_id"]))
    with pytest.raises(ValidationFailed, match="unknown_items_share"):
        run(DAY, params, layout)


def test_missing_value_spellings_are_nulls_and_the_report_counts_each(landed, layout, params):
    """`NULL`, `n/a`, ... in an id column are missing ids, not users named NULL: the day is handled as a day
    with nulls, and the message says how they were written."""
    good = _events(landed)
    _redeliver(landed, layout, good.assign(user_id=good["user_id"].where(good.index % 7 != 0, "NULL")))
    with pytest.raises(ValidationFailed, match=r"not_null_user_id .*, of which 30 written as a missing-value "
                                                r"spelling \('NULL' x30\)"):  # fmt: skip
        run(DAY, params, layout)
    assert read_json(layout.quarantine(DAY) / REPORT_FILE)["missing"] == {"user_id": {"NULL": 30}}


def _wide(df, columns: int = 20_000):
    extra = pd.DataFrame({f"c{i}": [i] * len(df) for i in range(columns)})
    return pd.concat([df, extra], axis=1)


def _huge_cell(df):
    out = df.copy()
    out.loc[3, "user_id"] = "u" * 20_000_000  # one 20 MB cell
    return out


@pytest.mark.parametrize(
    ("make", "check", "says"),
    [(_wide, "columns", "and 19,995 more"), (_huge_cell, "length_user_id", "(20,000,000 characters)")],
    ids=["20k_columns", "20mb_cell"],
)
def test_a_pathological_file_is_refused_in_seconds_with_a_short_message(make, check, says, landed, layout, params):
    """Tens of thousands of columns or a 20 MB cell: refused from the metadata and one vectorised pass,
    before the suite (whose report would quote them), with a message and a report of a few kilobytes."""
    import time

    digest = _redeliver(landed, layout, make(_events(landed)))
    t0 = time.perf_counter()
    with pytest.raises(ValidationFailed) as err:
        run(DAY, params, layout)
    seconds = time.perf_counter() - t0
    message = str(err.value)
    assert f"- {check} (" in message and len(message) < 3000, message[:3000]
    assert says in message  # the rest is counted, not listed; a value is cut, with its length
    assert (layout.quarantine(DAY) / REPORT_FILE).stat().st_size < 8000
    assert sha256_file(layout.quarantine(DAY) / EVENTS_FILE) == digest
    assert seconds < 10, f"took {seconds:.1f} s"  # generous: a loaded 2-core machine; 40-65 s before


def test_every_quoted_value_is_clipped_and_every_list_capped(landed, layout, params):
    """Long-but-not-pathological values (just past the id length) in every row: the report quotes 10 of them,
    each cut to 80 characters with its length."""
    good = _events(landed)
    _redeliver(landed, layout, good.assign(item_id=[f"{'x' * 3000}{i}" for i in range(len(good))]))
    with pytest.raises(ValidationFailed) as err:
        run(DAY, params, layout)
    failure = next(
        f for f in read_json(layout.quarantine(DAY) / REPORT_FILE)["failures"] if f["check"] == "length_item_id"
    )
    assert len(failure["sample_values"]) <= 11 and all(len(v) < 120 for v in failure["sample_values"])
    assert "(3,001 characters)" in failure["sample_values"][0]
    assert len(str(err.value)) < 6000


def test_the_cli_says_a_refusal_in_one_line_without_a_traceback(landed, layout, params, write_params):
    """A bad --date and a refused day: one line on stderr, exit status 1, no Python traceback."""
    import os
    import subprocess
    import sys

    write_params(params)
    good = _events(landed)
    _redeliver(landed, layout, good.assign(rating=11.0))
    for date, says in (("1998-02-30", "bad date '1998-02-30'"), (str(DAY), "rating_range")):
        res = subprocess.run([sys.executable, "-m", "tasks.validate", "--date", date], capture_output=True, text=True,
                             env=os.environ | {"FRESHREC_DATA": str(layout.root)}, check=False)  # fmt: skip
        last = res.stderr.strip().splitlines()[-1]
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
        assert last.startswith("error: ") and says in last, last


@pytest.mark.parametrize(
    ("events", "items"),
    [
        (lambda d: d.assign(event_ts=d["event_ts"].dt.tz_localize(None)), None),
        (lambda d: d.assign(event_ts=d["event_ts"].dt.date), None),
        (None, lambda i: i.iloc[:0]),
    ],
    ids=["naive_timestamps", "date_only_timestamps", "empty_catalogue"],
)
def test_every_report_line_says_what_it_observed(events, items, landed, layout, params):
    """No line names a check with nothing after it, and none says `observed None`."""
    from tasks.validate import describe

    _redeliver(
        landed, layout, events(_events(landed)) if events else None, items=items(_items(landed)) if items else None
    )
    res = validate_day(DAY, layout, params["validate"])
    assert res.failures
    for failure in res.failures:
        line = describe(failure, res.volume, res.missing)
        detail = line.split("): ", 1)[1]
        assert detail and "observed None" not in line, line
        assert any(w in detail for w in ("observed", "rows", "not measurable")), line
