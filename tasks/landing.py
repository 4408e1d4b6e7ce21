"""The landing zone: where the upstream export drops each UTC day, `date=YYYY-MM-DD/events.parquet`
(its presence means "the day has landed") and optionally `items.parquet` (the catalogue that day).

Two kinds, chosen by `source.landing_dir` (or `FRESHREC_LANDING_DIR` in a deployment): a local
folder (the laptop default; relative paths are relative to the project root) or an object-store
prefix `s3://bucket/prefix`, which every worker of a cluster reads the same way. Ingest reads a day
through `LandingZone.open`, a local folder either way (for S3, a scratch copy of the day's objects).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tasks.common import day_str, parse_day, project_path

EVENTS_FILE = "events.parquet"
ITEMS_FILE = "items.parquet"


def landing_path(landing_dir: Path, day: dt.date) -> Path:
    return Path(landing_dir) / f"date={day_str(day)}"


@dataclass(frozen=True)
class LandingZone:
    location: str

    @classmethod
    def from_params(cls, params: dict) -> LandingZone:
        loc = os.environ.get("FRESHREC_LANDING_DIR") or str(params["source"]["landing_dir"])  # a deployment's endpoint
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
            return sorted(parse_day(p.name[5:]) for p in root.glob("date=*") if (p / EVENTS_FILE).exists())
        from botocore.exceptions import ClientError

        from tasks.s3 import client

        bucket, prefix = self._bucket_prefix()
        pages = client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "")
        try:
            keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        except ClientError as exc:  # nothing has landed yet: the bucket may not exist
            if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
                raise
            keys = []
        return sorted(parse_day(k.split("/")[-2][5:]) for k in keys if k.endswith(f"/{EVENTS_FILE}"))

    @contextmanager
    def open(self, day: dt.date) -> Iterator[Path]:
        """A local folder holding day D's landed files (for S3 a scratch copy, removed afterwards)."""
        if not self.is_s3:
            yield landing_path(Path(self.location), day)
            return
        from botocore.exceptions import ClientError

        from tasks.s3 import client

        s3, (bucket, _) = client(), self._bucket_prefix()
        scratch = Path(tempfile.mkdtemp(prefix="freshrec-landing-"))
        try:
            for name in (ITEMS_FILE, EVENTS_FILE):
                try:
                    s3.download_file(bucket, self._key(day, name), str(scratch / name))
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                        raise
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
