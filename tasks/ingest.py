"""Ingest: move day D from the landing zone into `data/raw/events/date=D/`, idempotently.

Bytes are copied untouched (validation reads them; quarantine keeps them intact).
Re-ingesting the same delivery is a no-op; a re-delivery with other bytes replaces
the partition atomically and says so.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from tasks.common import (
    FreshrecError,
    Layout,
    atomic_dir,
    sha256_file,
    step_cli,
)
from tasks.landing import EVENTS_FILE, ITEMS_FILE, LandingZone

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    day: str
    status: str  # new | unchanged | redelivered
    path: str
    sha256: str
    bytes: int


def ingest_day(day: dt.date, landing: LandingZone | Path | str, layout: Layout) -> IngestResult:
    landing = landing if isinstance(landing, LandingZone) else LandingZone(str(landing))
    with landing.open(day) as landed:
        return _ingest(day, landed, landing.uri(day), layout)


def _ingest(day: dt.date, landed: Path, where: str, layout: Layout) -> IngestResult:
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
    if status == "redelivered":
        LOG.warning("day %s was re-delivered with different bytes: replacing the partition", day)
    if items_src.exists():  # catalogue first: a visible events partition always has its catalogue
        with atomic_dir(items_dir) as tmp:
            shutil.copy2(items_src, tmp / ITEMS_FILE)
    with atomic_dir(dest_dir) as tmp:
        shutil.copy2(src, tmp / EVENTS_FILE)
    return IngestResult(str(day), status, str(dest), digest, dest.stat().st_size)


def run(day: dt.date, params: dict, layout: Layout) -> IngestResult:
    return ingest_day(day, LandingZone.from_params(params), layout)


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
