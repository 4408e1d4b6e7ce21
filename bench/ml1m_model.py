"""An ML-1M-sized serving model for the latency and load benchmarks: ML-1M's real catalogue (3,883
items) and real user histories at sequence length 200, the project's architecture (params.yaml `train`
with max_len 200), exported to ONNX fp32 and int8 by the pipeline's own export (tasks/export.py).

The weights are the model's seeded initialisation, not trained: a latency figure depends on the graph's
shapes (catalogue, window, width, depth), not on the values in it. Built once into `.run/bench/ml1m/`
(reused while params.yaml's `train` and `export` sections and the graph's code are unchanged).

    from bench.ml1m_model import build
    folder, inputs = build()   # folder: challenger/ + onnx/ ; inputs: (users, 200) int64 real histories
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 200
USERS = 256  # real histories kept as inputs (the longest-tailed users first: full windows)


def build(out: Path | None = None) -> tuple[Path, np.ndarray]:
    import torch

    from models.seqrec import SeqRecConfig, SeqRecModel
    from tasks.export import export
    from tasks.params import load_params
    from tasks.sources import load_dataset

    params = load_params()
    train = params["train"]
    graph = [(ROOT / f).read_text() for f in ("models/seqrec.py", "tasks/export.py")]  # the code that builds it
    key = hashlib.sha256(json.dumps([train, params["export"], WINDOW, graph], sort_keys=True, default=str).encode())
    out = out or ROOT / ".run" / "bench" / f"ml1m-{key.hexdigest()[:10]}"
    inputs_file = out / "inputs.npy"
    if (out / "onnx" / "export.json").exists() and inputs_file.exists():
        return out, np.load(inputs_file)
    data = load_dataset("ml-1m")
    items = sorted(data.items["item_id"].astype(str).unique())
    torch.manual_seed(train["seed"])
    config = SeqRecConfig(
        n_items=len(items) + 1, max_len=WINDOW, hidden_size=train["hidden_size"], num_layers=train["num_layers"],
        num_heads=train["num_heads"], dropout=train["dropout"], block=train["block"],
        repeat_score=train["repeat_score"],
    )  # fmt: skip
    model = SeqRecModel(config).eval()
    challenger = out / "challenger"
    model.save(challenger)
    (challenger / "items.json").write_text(json.dumps(items))
    inputs = longest_windows(data.events, items, WINDOW)
    export(challenger, out / "onnx", inputs, params["export"])
    np.save(inputs_file, inputs)
    return out, inputs


def longest_windows(events, items: list[str], window: int, users: int = USERS) -> np.ndarray:
    """The last `window` events of the `users` users with the longest histories (full windows), encoded
    against `items`. `events` are in time order (tasks/sources.py), so each user's group is too."""
    from tasks.export import encode_histories

    longest = events.groupby("user_id").size().sort_values(ascending=False).index[:users]
    kept = events[events.user_id.isin(longest)]
    return encode_histories([g["item_id"].astype(str).tolist()[-window:] for _, g in kept.groupby("user_id")], items,
                            window)  # fmt: skip


def publish(registry, folder: Path, version: str, serve_file: str) -> None:
    """The built model as a registry version (the files serving reads, and a metrics.json like a
    promotion's), with the champion pointer on it."""
    export_report = json.loads((folder / "onnx" / "export.json").read_text())
    metrics = folder / "metrics.json"
    metrics.write_text(json.dumps({"export": export_report}))
    files = {name: folder / "challenger" / name for name in ("config.json", "items.json")}
    files |= {"model.onnx": folder / "onnx" / "model.onnx", "model.int8.onnx": folder / "onnx" / "model.int8.onnx"}
    files["metrics.json"] = metrics
    registry.publish(version, files, {"serve_file": serve_file, "base": None})
    registry.set_champion(version, "bench", "ML-1M-sized serving benchmark")
