"""Ingest: move day D from the landing zone into `data/raw/events/date=D/`, idempotently.

Bytes are copied untouched (validation reads them; quarantine keeps them intact).
Re-ingesting the same delivery is a no-op. A delivery is its events file and its catalogue, if any
(`delivery_id`): a re-delivery with other bytes in either, a corrected catalogue alone included, never
destroys the earlier one: both are kept under `raw/deliveries/date=D/<id12>/`; the new one replaces the
partition in use only if no later day was trained on the earlier one, or with `replace` (the
`replace_delivery` Param), and `ingest.json` there records which days were trained on what.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from tasks.common import FreshrecError, Layout, ValidationFailed, atomic_dir, sha256_file, write_json
from tasks.landing import EVENTS_FILE, ITEMS_FILE, LandingZone
from tasks.params import step_cli

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    day: str
    status: str  # new | unchanged | redelivered
    path: str
    sha256: str
    bytes: int


class Redelivered(ValidationFailed):
    """Day D came again with other bytes after later days were trained on the earlier delivery."""


INGEST_REPORT = "ingest.json"  # beside the deliveries: which delivery is in use and what replaced what


def ingest_day(
    day: dt.date,
    landing: LandingZone | Path | str,
    layout: Layout,
    trained_on: list[str] | None = None,
    replace: bool = False,
) -> IngestResult:
    """Ingest day D. `trained_on`: the days whose training read the current delivery of D (a
    re-delivery then needs `replace`); None = look at this layout's runs."""
    landing = landing if isinstance(landing, LandingZone) else LandingZone(str(landing))
    with landing.open(day) as landed:
        return _ingest(day, landed, landing.uri(day), layout, trained_on, replace)


def delivery_id(events: Path, items: Path | None = None) -> str:
    """A delivery's identity: its events file's sha256 or, with a catalogue, the sha256 of both files'
    digests, so a corrected catalogue with the same events is a delivery of its own."""
    sha = sha256_file(events)
    if items is None or not items.exists():
        return sha
    return hashlib.sha256(f"{sha}\n{sha256_file(items)}".encode()).hexdigest()


def _keep(layout: Layout, day: dt.date, events: Path, items: Path | None) -> str:
    """Keep a delivery under deliveries/date=D/<id12>/ (idempotent); returns its `delivery_id`."""
    ident = delivery_id(events, items)
    dest = layout.deliveries(day) / ident[:12]
    if not (dest / EVENTS_FILE).exists():
        with atomic_dir(dest) as tmp:
            shutil.copy2(events, tmp / EVENTS_FILE)
            if items is not None and items.exists():
                shutil.copy2(items, tmp / ITEMS_FILE)
    return ident


def trained_days(layout: Layout, day: dt.date) -> list[str]:
    """Days >= D whose challenger was trained with day D in its history (from this layout's runs)."""
    runs = layout.root / "runs"
    found = sorted(p.name[5:] for p in runs.glob("date=*") if (p / "challenger").is_dir()) if runs.exists() else []
    return [d for d in found if d >= str(day)]


def _ingest(
    day: dt.date, landed: Path, where: str, layout: Layout, trained_on: list[str] | None, replace: bool
) -> IngestResult:
    src = landed / EVENTS_FILE
    if not src.exists():
        raise FreshrecError(
            f"nothing landed for {day}: {where} does not exist. Check the upstream export for that day "
            "or land it with `python -m tasks.replay --date <day>`"
        )
    digest = sha256_file(src)
    items_src = landed / ITEMS_FILE
    dest_dir, items_dir = layout.raw(day), layout.items(day)
    dest, items_dest = dest_dir / EVENTS_FILE, items_dir / ITEMS_FILE
    same_events = dest.exists() and sha256_file(dest) == digest
    same_items = not items_src.exists() or (items_dest.exists() and sha256_file(items_dest) == sha256_file(items_src))
    if same_events and same_items:
        return IngestResult(str(day), "unchanged", str(dest), digest, dest.stat().st_size)
    status = "redelivered" if dest.exists() else "new"
    if status == "redelivered":  # nothing is destroyed: both deliveries are kept side by side
        previous = _keep(layout, day, dest, items_dest)
        current = _keep(layout, day, src, items_src)
        changed = " and ".join(w for w, same in (("events", same_events), ("catalogue", same_items)) if not same)
        trained = trained_days(layout, day) if trained_on is None else sorted(trained_on)
        report = {
            "day": str(day),
            "status": "redelivered",
            "changed": changed,
            "delivery": current,
            "events_sha256": digest,
            "previous": previous,
            "trained_on_previous": trained,
            "replaced": not trained or replace,
            "kept": sorted(p.name for p in layout.deliveries(day).iterdir() if not p.name.startswith(".")),
        }
        write_json(layout.deliveries(day) / INGEST_REPORT, report)
        if trained and not replace:
            raise Redelivered(
                f"day {day} was re-delivered with other {changed} (delivery {current[:12]}…, in use "
                f"{previous[:12]}…), but days {', '.join(trained)} were already trained on the delivery in use. "
                f"Nothing was replaced; both deliveries are kept under {layout.deliveries(day)}. To train on the new "
                "one, re-run the day with the `replace_delivery` Param (the replacement is recorded), then re-run "
                "the later days."
            )
        LOG.warning("day %s re-delivered with other %s: %s replaces %s (trained on it: %s); both kept", day, changed,
                    current[:12], previous[:12], trained)  # fmt: skip
    if items_src.exists():  # catalogue first: a visible events partition always has its catalogue
        with atomic_dir(items_dir) as tmp:
            shutil.copy2(items_src, tmp / ITEMS_FILE)
    with atomic_dir(dest_dir) as tmp:
        shutil.copy2(src, tmp / EVENTS_FILE)
    return IngestResult(str(day), status, str(dest), digest, dest.stat().st_size)


def run(
    day: dt.date, params: dict, layout: Layout, trained_on: list[str] | None = None, replace: bool = False
) -> IngestResult:
    from tasks.history import drop_history_after

    landing = LandingZone.from_params(params)
    res = ingest_day(day, landing, layout, trained_on, replace)
    if res.status != "unchanged":  # a late day or a replaced delivery: later days' history units held the old
        drop_history_after(layout, day)
    LOG.info("ingest %s from %s: %s delivery %s (%d bytes) -> %s", day, landing, res.status, res.sha256[:12],
             res.bytes, res.path)  # fmt: skip
    return res


def ingest_history(day: dt.date, params: dict, layout: Layout) -> list[IngestResult]:
    """Ingest every landed day up to and including D (idempotent: unchanged days are no-ops)."""
    landing = LandingZone.from_params(params)
    return [ingest_day(d, landing, layout) for d in landing.days() if d <= day]


def main(argv: list[str] | None = None) -> None:
    def options(ap):
        ap.add_argument("--history", action="store_true", help="ingest every landed day up to --date")

    args, params, day = step_cli(__doc__, argv, options)
    if args.history:
        results = ingest_history(day, params, Layout.default())
        print({s: sum(r.status == s for r in results) for s in ("new", "unchanged", "redelivered")})
    else:
        print(asdict(run(day, params, Layout.default())))


if __name__ == "__main__":
    main()
