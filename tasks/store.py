"""The data plane: every file a step hands to the next lives in the object store; a worker's disk
is only a cache of it.

    s3://<bucket>/state/blobs/<sha[:2]>/<sha256>          content-addressed bytes (immutable)
    s3://<bucket>/state/units/<path>/UNIT.json           what <path> holds now: {file: sha256, size}

A *unit* is a file or a folder under the data root (`raw/events/date=D`, `runs/date=D/challenger`,
`runs/date=D/evaluation.json`, ...), named by its path relative to that root, so the store mirrors
`Layout`. Publishing a unit uploads the blobs it lacks, then rewrites its UNIT.json in one PUT:
a reader sees the old snapshot or the new one, never a mix, and a push killed midway leaves the
old snapshot standing. Pulling a unit verifies every blob's sha256 and swaps the local copy in
atomically; a unit that is absent from the store is absent locally too (a cache never keeps what
the store dropped, e.g. a day quarantined on another worker).

Blobs no unit lists any more (superseded snapshots, finished training checkpoints) are reclaimed by
`python -m tasks.store gc`, safely beside running tasks (`Store.mark` / `Store.sweep`):

    s3://<bucket>/state/gc/candidates.json               each unlisted blob: when a gc first saw it so
    s3://<bucket>/state/gc/lease.json                    held while a gc runs (one at a time)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tasks.common import FreshrecError, atomic_dir, sha256_file
from tasks.workspace import BlobCache

LOG = logging.getLogger(__name__)
UNIT_FILE = "UNIT.json"
GC_FILE = "gc/candidates.json"
GC_LEASE = "gc/lease.json"
LEASE_SECONDS = 6 * 3600  # a gc lease older than this was left by a gc that died: taken over
FRESHEN_SECONDS = 3600  # a push that reuses a blob older than this rewrites its date (what gc's grace counts from)
GC_GRACE_SECONDS = 24 * 3600
MAX_PUSH_SECONDS = 3600  # a push's blobs to its listing: far under this (gc's grace must cover it plus FRESHEN)


class MissingInput(FreshrecError):
    """A step's input is not in the object store: the step that writes it has not run (or failed)."""


def _local_files(path: Path) -> dict[str, Path]:
    """Relative name -> path of a unit's files ("" for a file unit); dot-files are scratch, never data."""
    if path.is_file():
        return {"": path}
    if not path.is_dir():
        return {}
    return {
        str(p.relative_to(path)): p
        for p in sorted(path.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    }


@dataclass
class Store:
    s3: object
    bucket: str
    prefix: str = "state"
    cache: BlobCache | None = None  # this machine's shared blob cache (tasks/workspace.py), if any
    freshen_seconds: float = FRESHEN_SECONDS
    push_seconds: float = MAX_PUSH_SECONDS

    @classmethod
    def from_env(cls, params: dict, s3=None, cache: BlobCache | None = None) -> Store:
        from tasks.s3 import bucket_name, client, ensure_bucket

        s3 = s3 or client()
        bucket = bucket_name(params)
        ensure_bucket(s3, bucket)
        return cls(s3, bucket, cache=cache)

    def _unit_key(self, rel: str) -> str:
        return f"{self.prefix}/units/{rel.strip('/')}/{UNIT_FILE}"

    def _blob_key(self, sha: str) -> str:
        return f"{self.prefix}/blobs/{sha[:2]}/{sha}"

    def uri(self, rel: str) -> str:
        return f"s3://{self.bucket}/{self._unit_key(rel)}"

    def _get(self, key: str) -> bytes | None:
        from tasks.s3 import get_or_none

        got = get_or_none(self.s3, self.bucket, key)
        return None if got is None else got[0]

    # ---- units ---------------------------------------------------------------------------
    def unit(self, rel: str) -> dict | None:
        """The stored snapshot of `rel` ({"kind", "files": {name: {sha256, size}}}), or None."""
        body = self._get(self._unit_key(rel))
        return None if body is None else json.loads(body)

    def exists(self, rel: str) -> bool:
        return self.unit(rel) is not None

    def children(self, parent: str) -> list[str]:
        """Names of the units directly under `parent` (e.g. `date=1998-03-01` under raw/events)."""
        base = f"{self.prefix}/units/{parent.strip('/')}/"
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base)
        keys = [o["Key"][len(base) :] for page in pages for o in page.get("Contents", [])]
        return sorted(k[: -len(UNIT_FILE) - 1] for k in keys if k.count("/") == 1 and k.endswith(f"/{UNIT_FILE}"))

    def push(self, root: Path, rel: str) -> dict | None:
        """Publish the local `root/rel` as the unit's new snapshot; a missing local unit is
        removed from the store (the step's outcome is "no such output", e.g. a quarantined day)."""
        files = _local_files(root / rel)
        if not files:
            self.remove(rel)
            return None
        entries, freshened = {}, []
        for name, path in files.items():
            sha = sha256_file(path)
            if self._put_blob(path, sha):
                freshened.append((path, sha))
            entries[name] = {"sha256": sha, "size": path.stat().st_size}
        snapshot = {"kind": "file" if "" in entries else "dir", "files": entries}
        body = json.dumps(snapshot, indent=1, sort_keys=True).encode()
        self.s3.put_object(Bucket=self.bucket, Key=self._unit_key(rel), Body=body)
        for path, sha in freshened:  # an old blob, now listed: a gc that read its old date may have taken it
            self._restore_blob(path, sha, rel)
        return snapshot

    def _put_blob(self, path: Path, sha: str) -> bool:
        """Store the bytes of `path` as blob `sha`. A blob already there is kept only if it holds these bytes
        (its size, and its ETag: the MD5 of a single-part upload); one that was overwritten or truncated
        is written again, so re-running the task that made it repairs it. Whether it reused an old blob
        (and freshened it: `_freshen`), which `push` looks at again once the unit lists it."""
        from tasks.s3 import head_or_none, put_if_absent

        key = self._blob_key(sha)
        head = head_or_none(self.s3, self.bucket, key)
        if head is not None and _holds(head, path):
            freshened = self._freshen(key, head)
            if freshened is not None:
                return freshened
            head = None  # a gc took it since the HEAD: stored again below
        body = path.read_bytes()
        if head is None and put_if_absent(self.s3, self.bucket, key, body):
            return False
        head = head_or_none(self.s3, self.bucket, key)  # a concurrent writer stored it first, or it is damaged
        if head is None or not _holds(head, path):
            LOG.warning("blob %s… in s3://%s does not hold its bytes: writing it again", sha[:12], self.bucket)
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        return False

    def _freshen(self, key: str, head: dict) -> bool | None:
        """A reused blob older than `freshen_seconds` gets a new date (copied onto itself, as git freshens a
        reused object): gc deletes only blobs whose date is older than its grace, so one a push is about
        to list again is not taken from under it (Store.sweep). Whether it was freshened; None if the
        blob is gone since `head` (a gc took it)."""
        from botocore.exceptions import ClientError

        from tasks.s3 import is_absent

        if _server_now(head) - head["LastModified"].timestamp() <= self.freshen_seconds:
            return False
        try:
            self.s3.copy_object(Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": key},
                                MetadataDirective="REPLACE", Metadata={"freshened": "1"})  # fmt: skip
        except ClientError as exc:
            if is_absent(exc):
                return None
            raise
        return True

    def _restore_blob(self, path: Path, sha: str, rel: str) -> None:
        """After `rel`'s listing names the freshened blob `sha`: if a gc deleted it in the instant between
        reading its old date and the freshening, store it again (this push holds its bytes)."""
        from tasks.s3 import head_or_none

        key = self._blob_key(sha)
        if head_or_none(self.s3, self.bucket, key) is None:
            LOG.warning("blob %s… of %s was deleted by a gc as it was listed again: storing it again", sha[:12], rel)
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=path.read_bytes())

    # ---- garbage collection ----------------------------------------------------------------
    def mark(self) -> dict:
        """What every unit lists now: {"at": the server's time before the first listing was read,
        "listed": the sha256 of every blob some unit lists, "units": how many}. An unreadable listing
        stops it (nothing can be deleted without knowing everything that is listed)."""
        from concurrent.futures import ThreadPoolExecutor

        base = f"{self.prefix}/units/"
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base)
        at, keys = None, []
        for page in pages:
            at = at if at is not None else _server_now(page)
            keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(f"/{UNIT_FILE}")]

        def listed(key: str) -> set[str]:
            body = self._get(key)
            if body is None:  # removed since the listing: it lists nothing now
                return set()
            try:
                return {meta["sha256"] for meta in json.loads(body)["files"].values()}
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise FreshrecError(
                    f"gc: s3://{self.bucket}/{key} is not a unit listing ({exc!r}): nothing was deleted; "
                    "re-run the task that writes that unit (or remove it) and run gc again"
                ) from exc

        with ThreadPoolExecutor(8) as pool:
            sets = list(pool.map(listed, keys))
        return {"at": at, "listed": set().union(*sets), "units": len(keys)}

    def sweep(self, marked: dict, grace_seconds: float = GC_GRACE_SECONDS, dry_run: bool = False) -> dict:
        """Delete the blobs that `marked` (a `mark()`) found unlisted, where it is safe beside running tasks:

        - a gc at least `grace_seconds` earlier found the blob unlisted too (<prefix>/gc/candidates.json
          keeps when each was first seen so): a reader still fetching from a listing that stopped naming
          the blob shortly before that gc has had about the grace to finish; and
        - the blob was written, or freshened, more than `grace_seconds` before the mark, when this sweep
          lists it and again just before it deletes it (a HEAD, then the DELETE): a push that uploaded
          it or reused it (and freshened it: `_freshen`) has had `grace - freshen_seconds` to write its
          listing. A push that freshens it between that HEAD and the DELETE finds it gone after listing
          it, and stores it again (`_restore_blob`); only a push whose freshening, listing and check all
          fall between one HEAD and the DELETE after it (three requests inside one) would miss it.

        A first gc deletes nothing: it records what it would. A delete the store refuses keeps the blob a
        candidate and fails the sweep once the rest is done. Returns what it found and did."""
        from botocore.exceptions import ClientError

        from tasks.s3 import error_code, head_or_none, is_absent

        if grace_seconds < self.freshen_seconds + self.push_seconds:
            raise FreshrecError(
                f"gc: a grace of {grace_seconds:g} s is shorter than a reused blob's freshening interval plus a "
                f"push ({self.freshen_seconds:g} + {self.push_seconds:g} s): a blob a running task is listing "
                "again could be deleted; give a longer grace"
            )
        at, listed = marked["at"], marked["listed"]
        before = self._candidates()
        base = f"{self.prefix}/blobs/"
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base)
        blobs, due, candidates = 0, [], {}
        for page in pages:
            for obj in page.get("Contents", []):
                blobs += 1
                sha = obj["Key"].rsplit("/", 1)[-1]
                if sha in listed:
                    continue
                first = before.get(sha, at)
                if at - first >= grace_seconds and at - obj["LastModified"].timestamp() > grace_seconds:
                    due.append((obj["Key"], obj["Size"], sha, first))
                else:
                    candidates[sha] = first
        if blobs and not marked["units"]:
            raise FreshrecError(
                f"gc: s3://{self.bucket}/{self.prefix}/units lists no unit but {blobs} blobs are stored: a wrong "
                "bucket or prefix, or listings lost; nothing was deleted"
            )
        deleted, deleted_bytes, refused = 0, 0, []
        for key, size, sha, first in due:
            if dry_run:
                deleted, deleted_bytes = deleted + 1, deleted_bytes + size
                continue
            head = head_or_none(self.s3, self.bucket, key)
            if head is None:
                continue  # gone already (another gc)
            if at - head["LastModified"].timestamp() <= grace_seconds:  # freshened since the listing
                candidates[sha] = first
                continue
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:  # e.g. AccessDenied: counted, kept, and said at the end
                if not is_absent(exc):
                    refused.append(f"{key}: {error_code(exc)}")
                    candidates[sha] = first
                continue
            deleted, deleted_bytes = deleted + 1, deleted_bytes + size
        if not dry_run:
            body = json.dumps({"marked_at": at, "first_unlisted": candidates}, sort_keys=True).encode()
            self.s3.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{GC_FILE}", Body=body)
        report = {"units": marked["units"], "blobs": blobs, "listed": len(listed), "deleted": deleted,
                  "deleted_bytes": deleted_bytes, "waiting": len(candidates), "grace_seconds": grace_seconds,
                  "dry_run": dry_run}  # fmt: skip
        LOG.info("gc of s3://%s/%s: %s", self.bucket, self.prefix, report)
        if refused:
            raise FreshrecError(
                f"gc: the store refused {len(refused)} deletes (e.g. {refused[0]}): they stay candidates; give gc "
                f"credentials that may delete under {self.prefix}/blobs ({deleted} blobs were deleted)"
            )
        return report

    def gc(self, grace_seconds: float = GC_GRACE_SECONDS, dry_run: bool = False) -> dict:
        """`mark` then `sweep`, one gc at a time: a run holds <prefix>/gc/lease.json (a lease older than
        LEASE_SECONDS, left by a gc that died, is taken over); a second one refuses while it is held."""
        if dry_run:
            return self.sweep(self.mark(), grace_seconds, dry_run=True)
        with self._lease():
            return self.sweep(self.mark(), grace_seconds)

    @contextlib.contextmanager
    def _lease(self):
        import socket

        from tasks.s3 import get_or_none, head_or_none, put_if_absent

        key = f"{self.prefix}/{GC_LEASE}"
        mine = json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode()
        if not put_if_absent(self.s3, self.bucket, key, mine):
            head = head_or_none(self.s3, self.bucket, key)
            age = _server_now(head) - head["LastModified"].timestamp() if head else LEASE_SECONDS
            if age < LEASE_SECONDS:
                held = (get_or_none(self.s3, self.bucket, key) or (b"?", ""))[0].decode(errors="replace")
                raise FreshrecError(
                    f"gc: another gc holds s3://{self.bucket}/{key} ({held}, {age:.0f} s old): wait for it; if it "
                    "died, delete that object (a lease is taken over after "
                    f"{LEASE_SECONDS / 3600:g} h)"
                )
            LOG.warning("gc: taking over a lease %.0f s old (a gc that died)", age)
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=mine)
        try:
            yield
        finally:
            self.s3.delete_object(Bucket=self.bucket, Key=key)

    def _candidates(self) -> dict[str, float]:
        body = self._get(f"{self.prefix}/{GC_FILE}")
        try:
            return {} if body is None else {k: float(v) for k, v in json.loads(body)["first_unlisted"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            LOG.warning("gc: %s is unreadable: every unlisted blob starts its grace again", GC_FILE)
            return {}

    def remove(self, rel: str, root: Path | None = None) -> None:
        """Drop a unit from the store (its blobs stay: other snapshots may share them)."""
        self.s3.delete_object(Bucket=self.bucket, Key=self._unit_key(rel))
        if root is not None:
            _remove_local(root / rel)

    def pull(self, root: Path, rel: str, required: bool = True, writer: str = "") -> bool:
        """Make the local `root/rel` equal to the stored unit, verifying every byte.

        Absent from the store: removed locally, and MissingInput if `required` (the message names
        the task that writes it). Returns whether the unit exists."""
        snapshot = self.unit(rel)
        target = root / rel
        if snapshot is None:
            _remove_local(target)
            if required:
                raise MissingInput(
                    f"{rel} is not in the object store ({self.uri(rel)})"
                    + (f": the `{writer}` task writes it — run that task for this day first" if writer else "")
                    + "; a worker never falls back to what its own disk may hold"
                )
            return False
        local = _local_files(target)
        wanted = snapshot["files"]
        current = {  # local files that already hold the stored bytes (each hashed once)
            n for n, m in wanted.items() if n in local and local[n].stat().st_size == m["size"]
            and sha256_file(local[n]) == m["sha256"]
        }  # fmt: skip
        if set(local) == set(wanted) == current:
            return True  # the cache is current
        if snapshot["kind"] == "file":
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.pull")
            self._fetch(wanted[""], tmp, rel)
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(tmp, target)
            return True
        with atomic_dir(target) as tmp:
            for name, meta in wanted.items():
                dest = tmp / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                if name in current:
                    shutil.copy2(local[name], dest)
                else:
                    self._fetch(meta, dest, f"{rel}/{name}")
        return True

    def _blob(self, meta: dict, what: str) -> bytes:
        from tasks.registry import IntegrityError

        data = self._get(self._blob_key(meta["sha256"]))
        if data is None or hashlib.sha256(data).hexdigest() != meta["sha256"] or len(data) != meta["size"]:
            raise IntegrityError(
                f"{what}: its stored bytes (blob {meta['sha256'][:12]}…) are missing or altered in "
                f"s3://{self.bucket}/{self.prefix}/blobs; re-run the task that wrote it"
            )
        return data

    def _fetch(self, meta: dict, dest: Path, what: str) -> None:
        if self.cache is None:
            dest.write_bytes(self._blob(meta, what))
        elif not self.cache.link(meta["sha256"], meta["size"], dest):
            self.cache.add(meta["sha256"], self._blob(meta, what), dest)

    def read(self, rel: str, name: str = "", snapshot: dict | None = None) -> bytes | None:
        """One file of a stored unit (`name` inside a folder unit, "" for a file unit), sha256 checked;
        None if the unit or the file is not there. Only names the unit lists are ever looked up.
        `snapshot`: the unit's listing when the caller already holds it (one GET fewer)."""
        snapshot = snapshot if snapshot is not None else self.unit(rel)
        meta = (snapshot or {}).get("files", {}).get(name)
        return None if meta is None else self._blob(meta, f"{rel}/{name}" if name else rel)

    def pull_children(self, root: Path, parent: str, keep=lambda name: True) -> list[str]:
        """Mirror every stored unit under `parent` that `keep(name)` selects; local ones the store
        does not hold (and `keep` selects) are dropped. Returns the names pulled."""
        stored = [n for n in self.children(parent) if keep(n)]
        local_dir = root / parent
        if local_dir.is_dir():
            for p in local_dir.iterdir():
                if not p.name.startswith(".") and keep(p.name) and p.name not in stored:
                    _remove_local(p)
        for name in stored:
            self.pull(root, f"{parent}/{name}")
        return stored

    def push_children(self, root: Path, parent: str) -> list[str]:
        """Publish every local unit under `parent` (used once, by the bootstrap)."""
        local_dir = root / parent
        names = sorted(p.name for p in local_dir.iterdir() if not p.name.startswith(".")) if local_dir.is_dir() else []
        for name in names:
            self.push(root, f"{parent}/{name}")
        return names


def _holds(head: dict, path: Path) -> bool:
    """Whether a stored object (its HEAD) holds exactly the bytes of `path`."""
    if head.get("ContentLength") != path.stat().st_size:
        return False
    with path.open("rb") as f:
        md5 = hashlib.file_digest(f, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()
    return head.get("ETag", "").strip('"') == md5


def _server_now(response: dict) -> float:
    """The object store's own clock (its reply's Date header), as epoch seconds: gc and freshening compare
    it with the dates the store gave its objects, so no machine's clock enters."""
    from email.utils import parsedate_to_datetime

    return parsedate_to_datetime(response["ResponseMetadata"]["HTTPHeaders"]["date"]).timestamp()


def _remove_local(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def main(argv: list[str] | None = None) -> None:
    """`python -m tasks.store gc [--grace-hours H] [--dry-run]`: reclaim the blobs no unit lists (Store.sweep)."""
    import argparse

    from tasks.common import setup_cli
    from tasks.params import load_params

    setup_cli()
    ap = argparse.ArgumentParser(prog="python -m tasks.store", description=main.__doc__)
    ap.add_argument("command", choices=["gc"])
    ap.add_argument("--grace-hours", type=float, default=GC_GRACE_SECONDS / 3600,
                    help="a blob is deleted after two gc runs at least this far apart found it unlisted, and "
                    "only if it was last written this long ago (default 24; at least 2)")  # fmt: skip
    ap.add_argument("--dry-run", action="store_true", help="report what would be deleted; change nothing")
    ap.add_argument("--params", default=None)
    args = ap.parse_args(argv)
    store = Store.from_env(load_params(args.params))
    print(json.dumps(store.gc(args.grace_hours * 3600, args.dry_run), indent=2))


if __name__ == "__main__":
    main()
