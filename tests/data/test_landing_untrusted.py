"""The landing zone is untrusted: links, folders posing as files, extra files in a partition and
malformed dates are refused with a message that says what and why, before a byte is read."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from tasks.common import FreshrecError, parse_day
from tasks.ingest import ingest_day
from tasks.landing import EVENTS_FILE, ITEMS_FILE, UntrustedLanding, landing_path
from tasks.replay import land_day

DAY = dt.date(1997, 9, 25)


@pytest.fixture
def day_dir(ml100k, tmp_path):
    land_day(ml100k, DAY, tmp_path / "landing")
    return landing_path(tmp_path / "landing", DAY)


def _refused(tmp_path, layout, match: str):
    with pytest.raises(UntrustedLanding, match=match):
        ingest_day(DAY, tmp_path / "landing", layout)
    assert not layout.raw(DAY).exists() and not layout.quarantine(DAY).exists()


def test_a_symlinked_events_file_is_refused_not_followed(day_dir, tmp_path, layout):
    secret = tmp_path / "elsewhere.parquet"
    os.replace(day_dir / EVENTS_FILE, secret)
    (day_dir / EVENTS_FILE).symlink_to(secret)
    _refused(tmp_path, layout, "symbolic link")


def test_a_symlinked_partition_folder_is_refused(ml100k, tmp_path, layout):
    land_day(ml100k, DAY, tmp_path / "real")
    (tmp_path / "landing").mkdir()
    landing_path(tmp_path / "landing", DAY).symlink_to(landing_path(tmp_path / "real", DAY))
    _refused(tmp_path, layout, "symbolic link")


def test_a_folder_posing_as_the_events_file_is_refused(day_dir, tmp_path, layout):
    (day_dir / EVENTS_FILE).unlink()
    (day_dir / EVENTS_FILE).mkdir()
    (day_dir / EVENTS_FILE / "part-0.parquet").write_bytes(b"x")
    _refused(tmp_path, layout, "is a folder, not a regular file")


def test_a_partition_split_over_several_files_is_refused_not_half_read(day_dir, tmp_path, layout):
    (day_dir / "events-part2.parquet").write_bytes((day_dir / EVENTS_FILE).read_bytes())
    _refused(tmp_path, layout, r"events-part2\.parquet")


@pytest.mark.parametrize("marker", ["_SUCCESS", "_DONE", "READY"])
def test_an_empty_completion_marker_is_ignored_and_the_day_ingested(day_dir, layout, tmp_path, marker):
    """Exports write an empty marker beside their data when done (Spark's _SUCCESS): not an unexpected file."""
    (day_dir / marker).write_bytes(b"")
    assert ingest_day(DAY, tmp_path / "landing", layout).status == "new"
    assert sorted(p.name for p in layout.raw(DAY).iterdir()) == [EVENTS_FILE]


def test_a_completion_marker_with_content_is_refused_like_any_other_file(day_dir, tmp_path, layout):
    (day_dir / "_SUCCESS").write_text('{"committer": "s3a"}')
    _refused(tmp_path, layout, r"'_SUCCESS'.*a completion marker such as '_SUCCESS' must be empty")


def test_items_alone_is_still_nothing_landed(day_dir, tmp_path, layout):
    (day_dir / EVENTS_FILE).unlink()
    assert (day_dir / ITEMS_FILE).exists()
    with pytest.raises(FreshrecError, match="nothing landed"):
        ingest_day(DAY, tmp_path / "landing", layout)


@pytest.mark.parametrize("text", ["1998-01-15/../../x", "1998-1-5", "1998-13-40", "1998-02-30", "1998-03-01T00:00"])
def test_dates_are_parsed_strictly(text):
    with pytest.raises(FreshrecError, match="bad date"):
        parse_day(text)


def test_cli_refuses_a_path_posing_as_a_date(tmp_path):
    from tasks.ingest import main

    with pytest.raises(FreshrecError, match="expected exactly YYYY-MM-DD"):
        main(["--date", "1998-01-15/../../x"])


def test_a_malformed_partition_name_is_skipped_with_a_warning(day_dir, tmp_path, caplog):
    from tasks.landing import LandingZone

    (tmp_path / "landing" / "date=1997-09-25x").mkdir()
    (tmp_path / "landing" / "date=1997-09-25x" / EVENTS_FILE).write_bytes(b"x")
    assert LandingZone(str(tmp_path / "landing")).days() == [DAY]
    assert "ignoring partition 'date=1997-09-25x'" in caplog.text
