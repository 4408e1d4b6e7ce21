"""One loaded champion version: its ONNX Runtime session, catalogue and window, and scoring.

Imports numpy and onnxruntime only (no torch, no pandas): the serving image carries neither.
The graph (tasks/export.py) takes left-padded internal indices (batch, window) and answers the
top K (scores, indices) in one call; index i is `items.json[i - 1]`, 0 is padding.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FILES = ("items.json", "config.json", "metrics.json")  # besides the served graph


@dataclass(frozen=True)
class Encoded:
    """A batch of histories as graph input, with what was left out of each."""

    inputs: np.ndarray  # (batch, window) int64, left-padded
    unknown: list[int]  # ids not in this version's catalogue, dropped
    truncated: list[int]  # known ids older than the window, not seen by the model


@dataclass(frozen=True)
class Model:
    version: str
    manifest_sha256: str | None
    serve_file: str
    session: object = field(repr=False)
    items: list[str] = field(repr=False)
    index: dict[str, int] = field(repr=False)
    window: int
    top_k: int
    exclude_seen: bool  # the graph never returns an item of its input window
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def load(cls, folder: Path, version: str, serve_file: str, manifest_sha256: str | None, threads: int) -> Model:
        """Open a downloaded (already verified) version folder and check the graph answers a real request."""
        items = json.loads((folder / "items.json").read_text())
        window = int(json.loads((folder / "config.json").read_text())["max_len"])
        exported = json.loads((folder / "metrics.json").read_text()).get("export", {})
        sess = session(folder / serve_file, threads)
        probe = np.zeros((1, window), np.int64)
        probe[0, -min(window, len(items)) :] = np.arange(1, min(window, len(items)) + 1)
        top_k = int(sess.run(None, {"item_ids": probe})[0].shape[1])
        model = cls(
            version, manifest_sha256, serve_file, sess, items, {item: i + 1 for i, item in enumerate(items)},
            window, top_k, bool(exported.get("exclude_seen", False)),
        )  # fmt: skip
        model.warm()
        return model

    def encode(self, histories: list[list[str]]) -> Encoded:
        inputs = np.zeros((len(histories), self.window), np.int64)
        unknown, truncated = [], []
        for row, history in enumerate(histories):
            known = [i for i in map(self.index.get, history) if i is not None]
            unknown.append(len(history) - len(known))
            truncated.append(max(0, len(known) - self.window))
            kept = known[-self.window :]
            if kept:
                inputs[row, self.window - len(kept) :] = kept
        return Encoded(inputs, unknown, truncated)

    def score(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores, idx = self.session.run(None, {"item_ids": inputs})
        return scores, idx

    def top(self, scores: np.ndarray, idx: np.ndarray, k: int, exclude: set[str] | None) -> list[tuple[str, float]]:
        """One row's answer: up to k (item id, score), best first; -inf entries (nothing else left to
        recommend) and `exclude` (seen items older than the window) dropped."""
        out = []
        for i, s in zip(idx.tolist(), scores.tolist(), strict=True):
            if i <= 0 or s == float("-inf"):
                continue
            item = self.items[i - 1]
            if exclude and item in exclude:
                continue
            out.append((item, s))
            if len(out) == k:
                break
        return out

    def warm(self) -> None:
        """A real request (batch 1 and 2) through the graph: a version whose graph fails, answers the
        wrong shape or non-finite scores for a real history is refused before it serves anything."""
        history = self.items[: min(5, len(self.items))]
        enc = self.encode([history, history[:1]])
        for batch in (enc.inputs[:1], enc.inputs):
            scores, idx = self.score(batch)
            if scores.shape != (len(batch), self.top_k) or idx.shape != scores.shape:
                raise ValueError(f"the graph answered shape {scores.shape} for {len(batch)} histories")
            if not np.isfinite(scores[:, 0]).all() or not ((idx > 0) & (idx <= len(self.items))).all():
                raise ValueError("the graph answered non-finite scores or indices outside the catalogue")


def session(path: Path, threads: int = 1, optimization: str = "all", arena: bool = True):
    """An ONNX Runtime session for serving: CUDA where the image has it, else CPU with `threads`
    intra-op threads (1 per worker process: workers, not threads, use the cores; bench/serve_load.py), every
    graph optimisation and the CPU memory arena (the other levels and no arena: bench/serve_parts.py)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{optimization.upper()}")
    opts.enable_cpu_mem_arena = arena
    opts.log_severity_level = 3
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    return ort.InferenceSession(str(path), opts, providers=providers)
