"""The history unit (`index/history/date=D`, tasks/history.py): the days before D, built from the unit before
it and the days since, compacted month by month; the steps read the same frame from it as from every
partition, and the promoted version's lineage comes from it."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from tasks.history import (
    HISTORY_DAYS,
    HISTORY_LINEAGE,
    HISTORY_SEGMENTS,
    build_history,
    day_mask,
    history_files,
    load_events,
    partition_digests,
)

from .conftest import land_days

LAST = dt.date(1997, 10, 3)  # days 09-26 .. 10-03: a month ends inside the window


def _partition_frame(layout, through):
    """load_events as it reads without a history unit: every partition."""
    import shutil

    unit = layout.index("history", through)
    hidden = unit.with_name(".hidden")
    shutil.move(unit, hidden)
    try:
        return load_events(layout, through)
    finally:
        shutil.move(hidden, unit)


def test_each_day_builds_on_the_day_before_and_reads_the_same_frame(ml100k, tmp_path, layout):
    land_days(ml100k, tmp_path / "landing", layout, LAST, 7)
    first = LAST - dt.timedelta(days=6)
    for back in range(6, -1, -1):
        day = LAST - dt.timedelta(days=back)
        unit = build_history(layout, day)
        pd.testing.assert_frame_equal(load_events(layout, day), _partition_frame(layout, day))
    # October: September compacted into one file; October's days are the partitions' own bytes
    assert [p.name for p in (unit / HISTORY_SEGMENTS).iterdir()] == ["month=1997-09.parquet"]
    assert sorted(p.name for p in (unit / HISTORY_DAYS).iterdir()) == [f"date=1997-10-0{d}.parquet" for d in (1, 2)]
    assert (unit / HISTORY_DAYS / "date=1997-10-01.parquet").read_bytes() == (
        layout.raw(dt.date(1997, 10, 1)) / "events.parquet"
    ).read_bytes()
    digests = partition_digests(layout, LAST)
    assert min(digests) == str(first - dt.timedelta(days=1)) and max(digests) == str(LAST)
    assert len(history_files(unit)) == 3


def test_a_unit_is_built_from_the_newest_before_it_and_the_days_since(ml100k, tmp_path, layout):
    """A day whose run never built a unit (quarantined: no partition either) is covered by the next one;
    the bytes are the same whatever path built them, so a re-run republishes the same unit."""
    import shutil

    land_days(ml100k, tmp_path / "landing", layout, LAST, 7)
    build_history(layout, LAST - dt.timedelta(days=4))
    shutil.rmtree(layout.raw(LAST - dt.timedelta(days=2)))  # quarantined
    stepwise = build_history(layout, LAST)
    frame = load_events(layout, LAST)
    assert str(LAST - dt.timedelta(days=2)) not in partition_digests(layout, LAST)
    direct = tmp_path / "direct"
    shutil.copytree(layout.root / "raw", direct / "raw")
    from tasks.common import Layout

    other = Layout(direct)
    scratch = build_history(other, LAST)  # from every partition at once
    pd.testing.assert_frame_equal(load_events(other, LAST), frame)
    for a, b in zip(history_files(stepwise), history_files(scratch), strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert (stepwise / HISTORY_LINEAGE).read_bytes() == (scratch / HISTORY_LINEAGE).read_bytes()


def test_a_day_ingested_anew_sends_the_later_history_units_back_to_be_rebuilt(landed, layout, params, s3_env):
    """A replaced delivery (or a late day) of D changes what every later day's history holds: their units
    leave the store and the worker (D's own unit holds only the days before D and stays), and the next
    build starts from the newest unit left, so the later days read the new delivery."""
    from tasks.landing import EVENTS_FILE, landing_path
    from tasks.pipeline import DayOptions, step_call
    from tasks.store import Store

    from .conftest import DAY

    store = Store.from_env(params)
    after = [DAY + dt.timedelta(days=n) for n in (1, 2)]
    for d in (DAY - dt.timedelta(days=1), DAY, *after):
        build_history(layout, d)
        store.push(layout.root, f"index/history/date={d}")
    path = landing_path(landed, DAY) / EVENTS_FILE
    corrected = pd.read_parquet(path).iloc[:-3]
    corrected.to_parquet(path, index=False)
    res = step_call("ingest_events", DAY, params, layout, store, DayOptions(replace_delivery=True))
    assert res.status == "redelivered"
    assert store.children("index/history") == [f"date={DAY - dt.timedelta(days=1)}", f"date={DAY}"]
    assert not any(layout.index("history", d).exists() for d in after)
    build_history(layout, after[-1])  # from D's unit and the partitions since: the corrected day
    events = load_events(layout, after[-1])
    assert day_mask(events, DAY).sum() == len(corrected)


def test_a_late_day_ingested_on_a_workspace_drops_the_later_units_there(landed, layout, params):
    """`python -m tasks.ingest` (dvc repro) on a workspace: a replaced delivery drops the local units that
    held the old day, so the next build reads the new one."""
    from tasks.ingest import run as ingest
    from tasks.landing import EVENTS_FILE, landing_path

    from .conftest import DAY

    for d in (DAY, DAY + dt.timedelta(days=1)):
        build_history(layout, d)
    path = landing_path(landed, DAY) / EVENTS_FILE
    pd.read_parquet(path).iloc[:-2].to_parquet(path, index=False)
    assert ingest(DAY, params, layout, trained_on=[]).status == "redelivered"
    assert layout.index("history", DAY).exists() and not layout.index("history", DAY + dt.timedelta(days=1)).exists()


def test_a_day_quarantined_on_a_re_run_sends_the_later_history_units_back(landed, layout, params, s3_env):
    """A re-run of D that now refuses it (quarantine) takes D out of every later history unit: their units
    leave the store, as after a re-delivery."""
    from tasks.common import ValidationFailed
    from tasks.landing import EVENTS_FILE
    from tasks.pipeline import DayOptions, step_call
    from tasks.store import Store

    from .conftest import DAY

    store = Store.from_env(params)
    for d in (DAY, DAY + dt.timedelta(days=1)):
        build_history(layout, d)
        store.push(layout.root, f"index/history/date={d}")
    part = layout.raw(DAY) / EVENTS_FILE
    pd.read_parquet(part).assign(rating=99.0).to_parquet(part, index=False)  # the day as the re-run now sees it
    with pytest.raises(ValidationFailed):
        step_call("validate_events", DAY, params, layout, store, DayOptions())
    assert store.children("index/history") == [f"date={DAY}"]
    assert not layout.index("history", DAY + dt.timedelta(days=1)).exists()


def test_a_day_quarantined_on_a_workspace_drops_the_later_units_there(landed, layout, params):
    """`python -m tasks.validate` (dvc repro): a day refused on a re-run leaves the local units that held it."""
    from tasks.common import ValidationFailed
    from tasks.landing import EVENTS_FILE
    from tasks.validate import run as validate

    from .conftest import DAY

    for d in (DAY, DAY + dt.timedelta(days=1)):
        build_history(layout, d)
    part = layout.raw(DAY) / EVENTS_FILE
    pd.read_parquet(part).assign(rating=99.0).to_parquet(part, index=False)
    with pytest.raises(ValidationFailed):
        validate(DAY, params, layout)
    assert layout.index("history", DAY).exists() and not layout.index("history", DAY + dt.timedelta(days=1)).exists()
