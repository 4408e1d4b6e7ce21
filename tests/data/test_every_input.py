"""A verdict for every input (property-based): whatever frame and schema an upstream writes as
Parquet, validation either passes or raises ValidationFailed naming a check, with the bytes
quarantined intact; it never lets a raw exception escape. Hypothesis draws the frames: columns
missing, extra or renamed, every cell type Parquet can hold (strings, numbers, booleans, nulls,
nested lists and maps, bytes, naive and zoned timestamps, dictionary-encoded strings)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tasks.common import Layout, ValidationFailed, sha256_file
from tasks.landing import EVENTS_FILE
from tasks.validate import run

pytestmark = [pytest.mark.slow]
DAY = dt.date(1997, 9, 25)
T0 = pd.Timestamp(DAY, tz="UTC")

CELLS = {
    "str": st.sampled_from(["1", "42", " 7", "007", "x", "", "Тoy", "5\u200b"]),
    "int": st.integers(-3, 10**6),
    "float": st.floats(allow_nan=True, allow_infinity=True),
    "bool": st.booleans(),
    "null": st.none(),
    "list": st.lists(st.integers(0, 9), max_size=3),
    "map": st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 9), max_size=2),
    "bytes": st.binary(max_size=4),
    "ts_utc": st.integers(0, 86_399).map(lambda s: T0 + pd.Timedelta(seconds=s)),
    "ts_naive": st.integers(0, 86_399).map(lambda s: (T0 + pd.Timedelta(seconds=s)).tz_localize(None)),
    "ts_zone": st.integers(0, 86_399).map(lambda s: (T0 + pd.Timedelta(seconds=s)).tz_convert("Asia/Tokyo")),
}
NAMES = ["user_id", "item_id", "event_ts", "event_type", "rating", "extra", "Rating"]


@st.composite
def deliveries(draw):
    names = draw(st.lists(st.sampled_from(NAMES), min_size=0, max_size=6, unique=True))
    rows = draw(st.integers(0, 12))
    data = {}
    for name in names:
        kind = draw(st.sampled_from(sorted(CELLS)))
        data[name] = draw(st.lists(CELLS[kind], min_size=rows, max_size=rows))
    frame = pd.DataFrame(data, index=range(rows)) if data else pd.DataFrame(index=range(rows))
    if names and draw(st.booleans()):
        col = draw(st.sampled_from(names))
        with contextlib.suppress(TypeError, ValueError):  # dictionary-encoded, as Spark and pandas write
            frame[col] = frame[col].astype("category")
    return frame


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=deliveries())
def test_every_parquet_an_upstream_can_write_gets_a_verdict(frame, tmp_path_factory, params):
    buf = io.BytesIO()
    try:
        frame.to_parquet(buf, index=False)
    except Exception:  # pyarrow cannot write every drawn mix; those are not inputs
        assume(False)
    layout = Layout(tmp_path_factory.mktemp("day") / "data")
    part = layout.raw(DAY)
    part.mkdir(parents=True)
    (part / EVENTS_FILE).write_bytes(buf.getvalue())
    digest = sha256_file(part / EVENTS_FILE)
    try:
        res = run(DAY, params, layout)
    except ValidationFailed as exc:
        text = str(exc)
        assert "failed validation" in text and "\n  - " in text, text  # names at least one check ...
        assert sha256_file(layout.quarantine(DAY) / EVENTS_FILE) == digest  # ... bytes kept intact
        assert not layout.raw(DAY).exists()
    else:
        assert res.passed
