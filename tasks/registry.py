"""The model registry on S3: immutable versions, a manifest with checksums, one champion pointer.

    s3://<bucket>/models/<name>/versions/<version>/<files...>, manifest.json
    s3://<bucket>/models/<name>/champion.json                 the pointer serving follows
    s3://<bucket>/models/<name>/promotions/<ts>-<version>.json append-only history

Every object of a version is written with `If-None-Match: *`, so a version can never
be overwritten; `manifest.json` is written after the files it lists. The pointer is
written last, with a compare-and-swap on its ETag, and only after every file of the
target version has been downloaded and matched its sha256. Downloads are verified
the same way before anything lands in the destination folder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tasks.common import FreshrecError, atomic_dir

LOG = logging.getLogger(__name__)
MANIFEST = "manifest.json"
POINTER = "champion.json"
AT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # a history record's `at` (UTC, microseconds): its key sorts by it


class IntegrityError(FreshrecError):
    """A stored artifact does not match its manifest (tampered, truncated or overwritten)."""


class ConcurrentPromotion(FreshrecError):
    """The champion pointer moved while we were promoting; nothing was changed."""


@dataclass
class Registry:
    s3: object
    bucket: str
    name: str

    @property
    def prefix(self) -> str:
        return f"models/{self.name}"

    def version_key(self, version: str, file: str) -> str:
        return f"{self.prefix}/versions/{version}/{file}"

    # ---- reading -------------------------------------------------------------------------
    def _get(self, key: str) -> tuple[bytes, str] | None:
        from tasks.s3 import get_or_none

        return get_or_none(self.s3, self.bucket, key)

    def pointer(self) -> tuple[dict | None, str | None]:
        got = self._get(f"{self.prefix}/{POINTER}")
        if got is None:
            return None, None
        return json.loads(got[0]), got[1]

    def _manifest_raw(self, version: str) -> bytes:
        got = self._get(self.version_key(version, MANIFEST))
        if got is None:
            raise FreshrecError(
                f"version {version!r} of {self.name} does not exist in s3://{self.bucket}/{self.prefix}"
            )
        return got[0]

    def manifest(self, version: str, expected_sha256: str | None = None) -> dict:
        """A version's manifest; with `expected_sha256` (the digest the pointer or the history recorded
        when it was promoted), checked end to end: a file rewritten together with its manifest entry
        passes the per-file check, not this one."""
        body = self._manifest_raw(version)
        if expected_sha256 is not None and hashlib.sha256(body).hexdigest() != expected_sha256:
            raise IntegrityError(
                f"the manifest of version {version} is not the one recorded when it was promoted (sha256 "
                f"{hashlib.sha256(body).hexdigest()[:12]}…, recorded {expected_sha256[:12]}…): the version was "
                "rewritten in the store; do not serve it — restore it from a backup or roll back to another version"
            )
        return json.loads(body)

    def recorded_manifest_sha(self, version: str) -> str | None:
        """The manifest digest recorded when `version` became champion (pointer, else history); None if never."""
        pointer, _ = self.pointer()
        if pointer is not None and pointer["version"] == version:
            return pointer.get("manifest_sha256")
        for record in reversed(self.history()):
            if record["version"] == version and record.get("manifest_sha256"):
                return record["manifest_sha256"]
        return None

    def versions(self) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}/versions/", Delimiter="/"
        )
        return sorted(
            p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for page in pages for p in page.get("CommonPrefixes", [])
        )

    def complete(self) -> tuple[list[str], list[str]]:
        """(versions, incomplete): versions with a manifest, and prefixes without one (a promotion killed
        mid-upload: not a version until a re-run of its day's promotion writes the manifest)."""
        from tasks.s3 import head_or_none

        done, partial = [], []
        for v in self.versions():
            (done if head_or_none(self.s3, self.bucket, self.version_key(v, MANIFEST)) else partial).append(v)
        return done, partial

    def history(self) -> list[dict]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}/promotions/"
        )
        keys = sorted(o["Key"] for page in pages for o in page.get("Contents", []))
        return [json.loads(self._get(k)[0]) for k in keys]

    def download(
        self, version: str, dest: Path, files: list[str] | None = None, manifest_sha256: str | None = None
    ) -> dict:
        """Fetch a version into `dest`, verifying sha256 and size of each file (and the manifest against
        `manifest_sha256` when given); all or nothing."""
        manifest = self.manifest(version, manifest_sha256)
        wanted = files or list(manifest["files"])
        with atomic_dir(dest) as tmp:
            for name in wanted:
                meta = manifest["files"].get(name)
                if meta is None:
                    raise FreshrecError(f"{name} is not part of version {version}")
                got = self._get(self.version_key(version, name))
                if got is None:
                    raise IntegrityError(f"{name} of version {version} is missing from the store")
                data = got[0]
                digest = hashlib.sha256(data).hexdigest()
                if digest != meta["sha256"] or len(data) != meta["size"]:
                    raise IntegrityError(
                        f"{name} of version {version} fails verification (sha256 {digest[:12]}…, "
                        f"{len(data)} bytes; manifest says {meta['sha256'][:12]}…, {meta['size']} bytes): "
                        "the stored artifact was altered; do not serve it — restore it or roll back"
                    )
                (tmp / name).write_bytes(data)
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return manifest

    def verify(self, version: str, manifest_sha256: str | None = None) -> dict:
        """Download every file of a version to a scratch dir and check it against the manifest."""
        scratch = Path(tempfile.mkdtemp(prefix="freshrec-verify-"))
        try:
            return self.download(version, scratch / "v", manifest_sha256=manifest_sha256)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # ---- writing -------------------------------------------------------------------------
    def _put_new(self, key: str, body: bytes, sha: str | None = None) -> bool:
        """Create `key`; False if it already holds exactly these bytes; error if it holds others."""
        from tasks.s3 import put_if_absent

        sha = sha or hashlib.sha256(body).hexdigest()
        if put_if_absent(self.s3, self.bucket, key, body, Metadata={"sha256": sha}):
            return True
        existing = self._get(key)
        if existing is not None and hashlib.sha256(existing[0]).hexdigest() == sha:
            return False
        raise IntegrityError(
            f"s3://{self.bucket}/{key} already exists with other content: versions are "
            "immutable; publish under a new version"
        )

    def publish(self, version: str, files: dict[str, Path], manifest: dict) -> dict:
        """Upload an immutable version: every file, then its manifest. Idempotent for equal content."""
        entries = {}
        for name, path in sorted(files.items()):
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            self._put_new(self.version_key(version, name), data, sha)
            entries[name] = {"sha256": sha, "size": len(data)}
        manifest = {**manifest, "version": version, "files": entries}
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        try:
            self._put_new(self.version_key(version, MANIFEST), body)
        except IntegrityError:  # same files re-published with another approver/time: keep the first manifest
            stored = self.manifest(version)
            if stored["files"] != entries:
                raise
            return stored
        return manifest

    def _history_key(self, record: dict) -> str:
        stamp = dt.datetime.strptime(record["at"], AT_FORMAT)
        action = record.get("action", "promote")
        suffix = "" if action in ("promote", "rollback") else f".{action}"  # pointer moves keep their old keys
        return f"{self.prefix}/promotions/{stamp:%Y%m%dT%H%M%S%fZ}-{record['version']}{suffix}.json"

    def record_decision(self, record: dict, at: dt.datetime | None = None) -> dict:
        """Append a decision that did not move the pointer (a rejection, a timed-out approval) to the
        history, so every outcome of an approval is on record (who, when, why, the evidence digest).
        `at`: when it was decided (the approver's answer); with it, recording the same decision again (a
        retry of a task killed after recording it) writes the same entry, not a second one."""
        at = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        record = {**record, "at": at.strftime(AT_FORMAT)}
        self.record_history(json.dumps(record, indent=2, sort_keys=True).encode())
        return record

    def record_history(self, body: bytes) -> None:
        """Append a pointer body to the history (idempotent: the key is derived from the body)."""
        self._put_new(self._history_key(json.loads(body)), body)

    def ensure_history(self) -> None:
        """Make sure the move that set the current pointer is in the history (idempotent)."""
        body, _ = self._pointer_raw()
        if body:
            self.record_history(body)

    def _pointer_raw(self) -> tuple[bytes | None, str | None]:
        got = self._get(f"{self.prefix}/{POINTER}")
        return (None, None) if got is None else got

    def set_champion(
        self,
        version: str,
        approver: str,
        reason: str,
        action: str = "promote",
        expected_etag: str | None = None,
        extra: dict | None = None,
    ) -> dict:
        """Verify `version`, then move the pointer to it in one conditional write.

        Before the pointer moves, the move that put the current champion there is made sure to be
        in the history (a process killed between its pointer write and its history write left it
        out), so the history never misses a pointer move. A write whose outcome is unclear (lost
        reply: botocore retries and gets 412; a timeout) is settled by reading the pointer back.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        # a version promoted before (a rollback target) must still be the version that was approved
        manifest = self.verify(version, self.recorded_manifest_sha(version))
        current_body, etag = self._pointer_raw()
        current = json.loads(current_body) if current_body else None
        if expected_etag is not None and etag != expected_etag:
            raise ConcurrentPromotion(f"champion pointer changed since it was read (now {current}); re-run the day")
        if current_body:
            self.record_history(current_body)
        stamp = dt.datetime.now(dt.UTC)
        record = {
            "version": version,
            "manifest": self.version_key(version, MANIFEST),
            "manifest_sha256": hashlib.sha256(self._manifest_raw(version)).hexdigest(),
            "serve_file": manifest.get("serve_file", "model.onnx"),
            "previous": current["version"] if current else None,
            "action": action,
            "approver": approver,
            "reason": reason,
            "at": stamp.strftime(AT_FORMAT),
            **(extra or {}),
        }
        body = json.dumps(record, indent=2, sort_keys=True).encode()
        cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self.s3.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{POINTER}", Body=body, **cond)
        except (ClientError, BotoCoreError) as exc:
            stored, _ = self._pointer_raw()
            if stored == body:  # our write committed; only its reply was lost
                LOG.warning("the pointer write's reply was lost (%s); read back: it committed", exc)
            elif stored != current_body:
                raise ConcurrentPromotion(
                    "another promotion moved the champion pointer first; nothing changed "
                    "— re-run to promote on top of it"
                ) from exc
            else:
                raise FreshrecError(
                    f"the champion pointer write failed ({exc}); read back, the pointer is unchanged "
                    f"({current['version'] if current else 'none'}): nothing changed, re-run when the store answers"
                ) from exc
        self.record_history(body)
        LOG.info("champion of %s is now %s (%s by %s)", self.name, version, action, approver)
        return record


def registry_from_env(params: dict, s3=None) -> Registry:
    """The registry of params' model in the configured bucket (tasks/s3.py), endpoint and credentials
    from the environment."""
    from tasks.s3 import bucket_name, client, ensure_bucket

    s3 = s3 or client()
    bucket = bucket_name(params)
    ensure_bucket(s3, bucket)
    return Registry(s3, bucket, params["run"]["model_name"])
