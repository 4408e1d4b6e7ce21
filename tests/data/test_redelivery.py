"""Re-delivery keeps history: a day re-sent with other bytes never destroys the earlier delivery.
Both are kept side by side by content hash; once later days were trained on the earlier one, the
new one replaces it only with an explicit `replace` (recorded); a bad re-delivery is quarantined on
its own and the validated delivery stays in use."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.common import ValidationFailed, read_json, sha256_file
from tasks.ingest import INGEST_REPORT, Redelivered, ingest_day
from tasks.landing import EVENTS_FILE, landing_path
from tasks.validate import run as validate
from tests.data.conftest import DAY


def _resend(landing, make) -> str:
    path = landing_path(landing, DAY) / EVENTS_FILE
    make(pd.read_parquet(path)).to_parquet(path, index=False)
    return sha256_file(path)


def test_a_redelivery_after_training_is_refused_and_both_are_kept(landed, layout):
    first = sha256_file(layout.raw(DAY) / EVENTS_FILE)
    new = _resend(landed, lambda df: df.iloc[:-3])
    with pytest.raises(Redelivered, match="1997-09-25, 1997-09-26 were already trained"):
        ingest_day(DAY, landed, layout, trained_on=["1997-09-25", "1997-09-26"])
    assert sha256_file(layout.raw(DAY) / EVENTS_FILE) == first  # the delivery in use is untouched
    kept = {p.name for p in layout.deliveries(DAY).iterdir() if p.is_dir()}
    assert kept == {first[:12], new[:12]}
    report = read_json(layout.deliveries(DAY) / INGEST_REPORT)
    assert report["trained_on_previous"] == ["1997-09-25", "1997-09-26"] and report["replaced"] is False

    res = ingest_day(DAY, landed, layout, trained_on=["1997-09-25", "1997-09-26"], replace=True)
    assert res.status == "redelivered" and sha256_file(layout.raw(DAY) / EVENTS_FILE) == new
    assert read_json(layout.deliveries(DAY) / INGEST_REPORT)["replaced"] is True
    assert (layout.deliveries(DAY) / first[:12] / EVENTS_FILE).exists()  # the earlier one is still kept


def test_a_bad_redelivery_is_quarantined_and_the_validated_one_stays_in_use(landed, layout, params):
    assert validate(DAY, params, layout).passed
    first = sha256_file(layout.raw(DAY) / EVENTS_FILE)
    bad = _resend(landed, lambda df: df.assign(rating=11.0))
    ingest_day(DAY, landed, layout, trained_on=[])
    with pytest.raises(ValidationFailed, match="rating_range"):
        validate(DAY, params, layout)
    assert sha256_file(layout.quarantine(DAY) / EVENTS_FILE) == bad
    assert sha256_file(layout.raw(DAY) / EVENTS_FILE) == first  # the history keeps the validated day
    assert read_json(layout.quarantine(DAY) / "report.json")["restored_delivery"] == first
