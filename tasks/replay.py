"""Landing-zone replayer: drops day D's events the way an upstream app would.

The embedded default has no live app, so this replays a real dataset one UTC day at a
time: `<landing>/date=D/events.parquet` (that day's events) and `items.parquet` (the
catalogue as the app knows it on D: every item first seen on or before D). Files are
written to a temp name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.common import FreshrecError, day_bounds, epoch_seconds
from tasks.landing import EVENTS_FILE, ITEMS_FILE, LandingZone, landing_path  # noqa: F401 (re-exported)
from tasks.params import step_cli
from tasks.sources import Dataset, load_dataset


@dataclass(frozen=True)
class Landed:
    day: dt.date
    path: str
    rows: int


def day_slice(events: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    start, end = day_bounds(day)
    ts = epoch_seconds(events["event_ts"])
    return events[(ts >= start) & (ts < end)]


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def land_day(data: Dataset, day: dt.date, landing: LandingZone | Path | str) -> Landed:
    """Write day D's events and catalogue snapshot into the landing zone."""
    landing = landing if isinstance(landing, LandingZone) else LandingZone(str(landing))
    events = day_slice(data.events, day).reset_index(drop=True)
    _, end = day_bounds(day)
    seen = data.events.loc[epoch_seconds(data.events["event_ts"]) < end, "item_id"].unique()
    items = data.items[data.items["item_id"].isin(seen)].reset_index(drop=True)
    with tempfile.TemporaryDirectory(prefix="freshrec-replay-") as tmp:
        write_parquet_atomic(items, Path(tmp) / ITEMS_FILE)
        write_parquet_atomic(events, Path(tmp) / EVENTS_FILE)
        landing.put(day, {ITEMS_FILE: Path(tmp) / ITEMS_FILE, EVENTS_FILE: Path(tmp) / EVENTS_FILE})
    return Landed(day=day, path=landing.uri(day), rows=len(events))


def run(day: dt.date, params: dict, history: bool = False) -> list[Landed]:
    """Land day D (with `history`, every day of the dataset up to D: a laptop's first run)."""
    src = params["source"]
    data = load_dataset(src["dataset"], src.get("path"))
    first, last = data.events["event_ts"].min().date(), data.events["event_ts"].max().date()
    if day > last or day < first:
        raise FreshrecError(f"{data.name} has events from {first} to {last}: pick a day inside that range")
    days = [first + dt.timedelta(days=i) for i in range((day - first).days + 1)] if history else [day]
    landing = LandingZone.from_params(params)
    return [land_day(data, d, landing) for d in days]


def main(argv: list[str] | None = None) -> None:
    def options(ap):
        ap.add_argument("--history", action="store_true", help="also land every earlier day of the dataset")

    args, params, day = step_cli(__doc__, argv, options)
    landed = run(day, params, args.history)
    print(f"landed {sum(x.rows for x in landed)} events over {len(landed)} day(s), last at {landed[-1].path}")


if __name__ == "__main__":
    main()
