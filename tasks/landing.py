"""The landing zone: where the upstream export drops each UTC day, `date=YYYY-MM-DD/events.parquet`
(its presence means "the day has landed") and optionally `items.parquet` (the catalogue that day).

Two kinds, chosen by `source.landing_dir` (or `FRESHREC_LANDING_DIR` in a deployment): a local
folder (the laptop default; relative paths are relative to the project root) or an object-store
prefix `s3://bucket/prefix`, which every worker of a cluster reads the same way. Ingest reads a day
through `LandingZone.open`, a local folder either way (for S3, a scratch copy of the day's objects).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tasks.common import FreshrecError, ValidationFailed, day_str, parse_day, project_path
from tasks.settings import settings

EVENTS_FILE = "events.parquet"
ITEMS_FILE = "items.parquet"
LANDED_FILES = (EVENTS_FILE, ITEMS_FILE)
# empty files an export writes beside its data to say it has finished (Hadoop/Spark's _SUCCESS and the usual
# others): allowed and ignored when they are empty; with any content they are unexpected files like any other
COMPLETION_MARKERS = ("_SUCCESS", "_DONE", "DONE", "_COMPLETE", "_COMPLETED", "_READY", "READY")
LOG = logging.getLogger(__name__)


def landing_path(landing_dir: Path, day: dt.date) -> Path:
    return Path(landing_dir) / f"date={day_str(day)}"


class UntrustedLanding(ValidationFailed):
    """A landed partition that is not plain files we expect: refused before anything is read."""


def _days(names) -> list[dt.date]:
    """Days of `date=YYYY-MM-DD` partition names; a malformed name is reported and skipped, never cut to a day."""
    days = []
    for name in names:
        try:
            days.append(parse_day(name[len("date=") :]))
        except FreshrecError as exc:
            LOG.warning("landing zone: ignoring partition %r: %s", name, exc)
    return sorted(days)


def _is_marker(name: str, size: int | None) -> bool:
    return name in COMPLETION_MARKERS and size == 0


def _refuse_unexpected(sizes: dict[str, int | None], where: str) -> list[str]:
    """The partition's data files (`sizes`: every entry's size, None for what is not a regular file); any
    entry but those, an empty completion marker or a hidden temporary is refused."""
    unexpected = [
        n for n, size in sizes.items() if n not in LANDED_FILES and not n.startswith(".") and not _is_marker(n, size)
    ]
    if unexpected:
        shown = ", ".join(repr(n[:80]) for n in unexpected[:10]) + (
            f" and {len(unexpected) - 10} more" if len(unexpected) > 10 else ""
        )
        markers = [n for n in unexpected if n in COMPLETION_MARKERS]
        raise UntrustedLanding(
            f"the partition {where} holds {shown} besides {list(LANDED_FILES)}: every landed file must be "
            "read or the day refused, so it is refused. Deliver the day as one events.parquet (and optionally "
            "one items.parquet"
            + (f"; a completion marker such as {markers[0]!r} must be empty" if markers else "")
            + "), then re-run it"
        )
    return [n for n in sizes if n in LANDED_FILES]


def _checked_local(day_dir: Path) -> Path:
    """The day's folder, after checking that it and its entries are what they claim to be."""
    if day_dir.is_symlink():
        raise UntrustedLanding(f"{day_dir} is a symbolic link: landed partitions must be real folders; refused")
    if not day_dir.exists():
        return day_dir  # nothing landed: ingest says so
    if not day_dir.is_dir():
        raise UntrustedLanding(f"{day_dir} is not a folder: a landed day is a folder date=YYYY-MM-DD/; refused")
    sizes = {}
    for entry in sorted(day_dir.iterdir()):
        st = os.lstat(entry)
        sizes[entry.name] = st.st_size if stat.S_ISREG(st.st_mode) else None
    for name in _refuse_unexpected(sizes, str(day_dir)):
        mode = os.lstat(day_dir / name).st_mode
        if stat.S_ISLNK(mode):
            raise UntrustedLanding(
                f"{day_dir / name} is a symbolic link: landed files must be regular files (a link could point "
                "anywhere on this machine); refused, nothing was read"
            )
        if not stat.S_ISREG(mode):
            raise UntrustedLanding(
                f"{day_dir / name} is a {'folder' if stat.S_ISDIR(mode) else 'special file'}, not a regular file: "
                "deliver the day as one Parquet file; refused"
            )
    return day_dir


@dataclass(frozen=True)
class LandingZone:
    location: str

    @classmethod
    def from_params(cls, params: dict) -> LandingZone:
        loc = settings().landing_dir or str(params["source"]["landing_dir"])  # a deployment's endpoint
        return cls(loc if loc.startswith("s3://") else str(project_path(loc)))

    @property
    def is_s3(self) -> bool:
        return self.location.startswith("s3://")

    def _bucket_prefix(self) -> tuple[str, str]:
        bucket, _, prefix = self.location[len("s3://") :].partition("/")
        return bucket, prefix.strip("/")

    def _key(self, day: dt.date, name: str) -> str:
        _, prefix = self._bucket_prefix()
        return "/".join(p for p in (prefix, f"date={day_str(day)}", name) if p)

    def __str__(self) -> str:
        return self.location

    def uri(self, day: dt.date, name: str = EVENTS_FILE) -> str:
        if self.is_s3:
            return f"s3://{self._bucket_prefix()[0]}/{self._key(day, name)}"
        return str(landing_path(Path(self.location), day) / name)

    def has(self, day: dt.date) -> bool:
        """Has day D landed (its events file is there)?"""
        if not self.is_s3:
            return (landing_path(Path(self.location), day) / EVENTS_FILE).exists()
        from botocore.exceptions import ClientError

        from tasks.s3 import client

        bucket, _ = self._bucket_prefix()
        try:
            client().head_object(Bucket=bucket, Key=self._key(day, EVENTS_FILE))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def days(self) -> list[dt.date]:
        """Every day that has landed, oldest first."""
        if not self.is_s3:
            root = Path(self.location)
            return _days(p.name for p in root.glob("date=*") if (p / EVENTS_FILE).exists())
        from tasks.s3 import client

        _, prefix = self._bucket_prefix()
        keys = self._list(client(), f"{prefix}/" if prefix else "")
        return _days(k.split("/")[-2] for k in keys if k.endswith(f"/{EVENTS_FILE}"))

    def _list(self, s3, prefix: str) -> dict[str, int]:
        """Keys under `prefix` in the zone's bucket with their sizes; none if nothing has landed yet (no bucket)."""
        from botocore.exceptions import ClientError

        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket_prefix()[0], Prefix=prefix)
        try:
            return dict(sorted((o["Key"], o["Size"]) for page in pages for o in page.get("Contents", [])))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
                raise
            return {}

    @contextmanager
    def open(self, day: dt.date) -> Iterator[Path]:
        """A local folder holding day D's landed files (for S3 a scratch copy, removed afterwards).

        The zone is untrusted: only regular files named events.parquet / items.parquet are taken.
        A link, a folder posing as a file, or any other entry in the partition is refused
        (`UntrustedLanding`) before a byte is read, so nothing is followed and nothing is skipped."""
        if not self.is_s3:
            yield _checked_local(landing_path(Path(self.location), day))
            return
        from tasks.s3 import client

        s3, (bucket, _) = client(), self._bucket_prefix()
        prefix = self._key(day, "") + "/"
        names = _refuse_unexpected(
            {k[len(prefix) :]: size for k, size in self._list(s3, prefix).items()}, self.uri(day, "")
        )
        scratch = Path(tempfile.mkdtemp(prefix="freshrec-landing-"))
        try:
            for name in names:
                s3.download_file(bucket, prefix + name, str(scratch / name))
            yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def put(self, day: dt.date, files: dict[str, Path]) -> None:
        """Land local files as day D; the events file goes last (its presence means "landed")."""
        order = sorted(files, key=lambda n: n == EVENTS_FILE)
        if not self.is_s3:
            out = landing_path(Path(self.location), day)
            out.mkdir(parents=True, exist_ok=True)
            for name in order:
                tmp = out / f".{name}.tmp"
                shutil.copyfile(files[name], tmp)
                tmp.replace(out / name)
            return
        from tasks.s3 import client, ensure_bucket

        s3, (bucket, _) = client(), self._bucket_prefix()
        ensure_bucket(s3, bucket)
        for name in order:
            s3.upload_file(str(files[name]), bucket, self._key(day, name))
