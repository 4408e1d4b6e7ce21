"""Serving side of the registry: follow the champion pointer, hot-reload, recommend with ONNX Runtime.

`ChampionFollower.refresh()` reads `champion.json`; when it names a new version, the
version's files are downloaded and verified end to end (the manifest against the digest the
pointer recorded, each file against the manifest's sha256 and size) before a new ONNX Runtime
session replaces the old one in a single assignment, so requests never see a half-loaded model.
A failed download keeps the current model.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    version: str
    session: object
    item_ids: list[str]
    index: dict[str, int]
    max_len: int
    serve_file: str


class ChampionFollower:
    def __init__(self, registry, cache_dir: Path | None = None, threads: int = 2):
        self.registry = registry
        self.cache_dir = Path(cache_dir or tempfile.mkdtemp(prefix="freshrec-serve-"))
        self.threads = threads
        self.current: Loaded | None = None
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        """Load the pointer's version if it changed; True if a new model is now serving."""
        pointer, _ = self.registry.pointer()
        if pointer is None or (self.current and self.current.version == pointer["version"]):
            return False
        with self._lock:
            version, serve_file = pointer["version"], pointer.get("serve_file", "model.onnx")
            dest = self.cache_dir / version
            self.registry.download(
                version, dest, [serve_file, "items.json", "config.json"], manifest_sha256=pointer.get("manifest_sha256")
            )
            from tasks.export import session

            items = json.loads((dest / "items.json").read_text())
            max_len = json.loads((dest / "config.json").read_text())["max_len"]
            loaded = Loaded(
                version,
                session(dest / serve_file, self.threads),
                items,
                {item: i + 1 for i, item in enumerate(items)},
                max_len,
                serve_file,
            )
            self.current = loaded  # one assignment: requests see the old model or the new one
        LOG.info("serving %s (%s)", version, serve_file)
        return True

    def recommend(self, history: list[str]) -> list[tuple[str, float]]:
        """Top-K (item id, score) after a user's history (oldest first); unknown items are ignored.
        Fewer than K where a graph that leaves out the user's seen items has too few others left: those
        slots score -inf in the graph and are dropped here."""
        from tasks.history import left_pad

        model = self.current
        if model is None:
            raise RuntimeError("no champion loaded yet: call refresh() once a champion is promoted")
        seq = np.array([model.index[i] for i in history if i in model.index], np.int64)
        scores, idx = model.session.run(None, {"item_ids": left_pad(seq, model.max_len)[None, :]})
        pairs = zip(idx[0], scores[0], strict=True)
        return [(model.item_ids[i - 1], float(s)) for i, s in pairs if i > 0 and np.isfinite(s)]
