"""Re-delivery keeps history: a day re-sent with other bytes never destroys the earlier delivery.
Both are kept side by side by content hash; once later days were trained on the earlier one, the
new one replaces it only with an explicit `replace` (recorded); a bad re-delivery is quarantined on
its own and the validated delivery stays in use."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.common import ValidationFailed, read_json
from tasks.ingest import INGEST_REPORT, Redelivered, delivery_id, ingest_day
from tasks.landing import EVENTS_FILE, ITEMS_FILE, landing_path
from tasks.validate import run as validate
from tests.data.conftest import DAY


def _resend(landing, make, name: str = EVENTS_FILE) -> str:
    """Change the landed day's `name` file with `make`; the new delivery's id."""
    path = landing_path(landing, DAY) / name
    make(pd.read_parquet(path)).to_parquet(path, index=False)
    return delivery_id(landing_path(landing, DAY) / EVENTS_FILE, landing_path(landing, DAY) / ITEMS_FILE)


def _in_use(layout) -> str:
    return delivery_id(layout.raw(DAY) / EVENTS_FILE, layout.items(DAY) / ITEMS_FILE)


def test_a_redelivery_after_training_is_refused_and_both_are_kept(landed, layout):
    first = _in_use(layout)
    new = _resend(landed, lambda df: df.iloc[:-3])
    with pytest.raises(Redelivered, match="1997-09-25, 1997-09-26 were already trained"):
        ingest_day(DAY, landed, layout, trained_on=["1997-09-25", "1997-09-26"])
    assert _in_use(layout) == first  # the delivery in use is untouched
    kept = {p.name for p in layout.deliveries(DAY).iterdir() if p.is_dir()}
    assert kept == {first[:12], new[:12]}
    report = read_json(layout.deliveries(DAY) / INGEST_REPORT)
    assert report["trained_on_previous"] == ["1997-09-25", "1997-09-26"] and report["replaced"] is False

    res = ingest_day(DAY, landed, layout, trained_on=["1997-09-25", "1997-09-26"], replace=True)
    assert res.status == "redelivered" and _in_use(layout) == new
    assert read_json(layout.deliveries(DAY) / INGEST_REPORT)["replaced"] is True
    assert (layout.deliveries(DAY) / first[:12] / EVENTS_FILE).exists()  # the earlier one is still kept


def test_a_corrected_catalogue_alone_is_a_delivery_of_its_own_kept_and_named(landed, layout):
    """Same events, another catalogue: refused after training (right), but the new catalogue is kept as a
    delivery of its own and the message says what changed, with two different ids."""
    first = _in_use(layout)
    new = _resend(landed, lambda items: items.assign(title=items["title"] + " (restored)"), ITEMS_FILE)
    assert new != first
    with pytest.raises(
        Redelivered, match=r"re-delivered with other catalogue \(delivery (\w+)…, in use (\w+)…\)"
    ) as exc:
        ingest_day(DAY, landed, layout, trained_on=["1997-09-25"])
    assert f"delivery {new[:12]}…, in use {first[:12]}…" in str(exc.value)
    kept = layout.deliveries(DAY) / new[:12] / ITEMS_FILE
    assert kept.exists() and pd.read_parquet(kept)["title"].str.endswith(" (restored)").all()
    assert read_json(layout.deliveries(DAY) / INGEST_REPORT)["changed"] == "catalogue"
    res = ingest_day(DAY, landed, layout, trained_on=["1997-09-25"], replace=True)
    assert res.status == "redelivered" and _in_use(layout) == new


def test_a_bad_redelivery_is_quarantined_and_the_validated_one_stays_in_use(landed, layout, params):
    assert validate(DAY, params, layout).passed
    first = _in_use(layout)
    bad = _resend(landed, lambda df: df.assign(rating=11.0))
    ingest_day(DAY, landed, layout, trained_on=[])
    with pytest.raises(ValidationFailed, match="rating_range"):
        validate(DAY, params, layout)
    assert delivery_id(layout.quarantine(DAY) / EVENTS_FILE, layout.quarantine(DAY) / "items" / ITEMS_FILE) == bad
    assert _in_use(layout) == first  # the history keeps the validated day
    assert read_json(layout.quarantine(DAY) / "report.json")["restored_delivery"] == first
