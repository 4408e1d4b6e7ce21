"""Follow the champion pointer: download, verify, warm, then swap; refuse what fails and keep serving.

`ChampionFollower.poll()` reads `champion.json`. When it names a version not yet served, the version's
files are downloaded and verified end to end (the manifest against the digest the pointer recorded,
each file against the manifest's sha256 and size), opened, and warmed with real requests
(serve/model.py); only then does one assignment make it `current`. A version that fails any of that is
refused: the old one keeps serving, the refusal is logged and counted, and it is not tried again until
the pointer names something else. Readiness: a verified model is loaded and the pointer was read
successfully within the last `stale_after` seconds.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from serve.model import FILES, Model

LOG = logging.getLogger(__name__)


class ChampionFollower:
    def __init__(
        self,
        registry,
        cache_dir: Path | None = None,
        threads: int = 1,
        stale_after: float = 90.0,
        on_event: Callable[[str, str], None] | None = None,
    ):
        self.registry = registry
        self.cache_dir = Path(cache_dir or tempfile.mkdtemp(prefix="freshrec-serve-"))
        self.threads = threads
        self.stale_after = stale_after
        self.on_event = on_event or (lambda outcome, version: None)  # ("loaded" | "refused", version): metrics
        self.current: Model | None = None
        self.pointer_version: str | None = None
        self.last_read: float | None = None  # monotonic time of the last successful pointer read
        self.refused: dict[tuple[str, str | None], str] = {}  # (version, manifest digest) -> why
        self.last_error: str | None = None

    # ---- state ---------------------------------------------------------------------------
    def pointer_age(self) -> float | None:
        return None if self.last_read is None else time.monotonic() - self.last_read

    def ready(self) -> tuple[bool, str]:
        age = self.pointer_age()
        if self.current is None:
            return False, self.last_error or "no champion loaded yet"
        if age is None or age > self.stale_after:
            return False, f"the pointer was not read for {age or 0:.0f} s: {self.last_error or 'not read yet'}"
        return True, f"serving {self.current.version}"

    # ---- polling -------------------------------------------------------------------------
    def poll(self) -> bool:
        """Read the pointer and load what it names if that is new; True if a new model now serves.
        Raises if the pointer cannot be read; a version that fails to load is refused, not raised.
        Called from one thread (the app's poller; `--once`)."""
        try:
            pointer, _ = self.registry.pointer()
        except Exception as exc:
            self.last_error = f"pointer read failed: {type(exc).__name__}: {exc}"
            raise
        self.last_read = time.monotonic()
        if pointer is None:
            self.last_error = "no champion in the registry yet (run the bootstrap)"
            return False
        self.pointer_version = pointer["version"]
        key = (pointer["version"], pointer.get("manifest_sha256"))
        if self.current is not None and (self.current.version, self.current.manifest_sha256) == key:
            return False
        if key in self.refused:
            return False
        try:
            model = self._load(pointer)
        except Exception as exc:  # anything: a version we cannot verify, open or warm never serves
            why = f"{type(exc).__name__}: {exc}"
            self.refused[key] = why
            self.last_error = f"refused {pointer['version']}: {why}"
            LOG.error("refused version %s (still serving %s): %s", pointer["version"],
                      self.current.version if self.current else "nothing", why)  # fmt: skip
            self.on_event("refused", pointer["version"])
            return False
        previous, self.current = self.current, model  # one assignment: a request sees one model
        self.last_error = None
        LOG.info("serving %s (%s)%s", model.version, model.serve_file,
                 f", was {previous.version}" if previous else "")  # fmt: skip
        self.on_event("loaded", model.version)
        if previous is not None:
            shutil.rmtree(self.cache_dir / previous.version, ignore_errors=True)  # the session holds its bytes
        return True

    def _load(self, pointer: dict) -> Model:
        version, serve_file = pointer["version"], pointer.get("serve_file", "model.onnx")
        dest = self.cache_dir / version
        shutil.rmtree(dest, ignore_errors=True)
        self.registry.download(version, dest, [serve_file, *FILES], manifest_sha256=pointer.get("manifest_sha256"))
        return Model.load(dest, version, serve_file, pointer.get("manifest_sha256"), self.threads)
