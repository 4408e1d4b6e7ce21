"""Item text features: MiniLM embeddings of title + genres, cached per item id.

`data/features/items.safetensors` holds one 384-d row per item id listed in
`data/features/item_ids.json`. Items already embedded are reused; only new catalogue
entries are embedded on a later day, so a daily run pays for its new items only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import torch

from tasks.common import Layout, atomic_dir
from tasks.params import step_cli

LOG = logging.getLogger(__name__)
IDS_FILE = "item_ids.json"
EMB_FILE = "items.safetensors"


def load_features(feature_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not (feature_dir / IDS_FILE).exists():
        return {}
    ids = json.loads((feature_dir / IDS_FILE).read_text())
    emb = load_file(str(feature_dir / EMB_FILE))["text"]
    return dict(zip(ids, emb, strict=True))


def update_features(items: pd.DataFrame, feature_dir: Path, batch_size: int = 128) -> dict[str, torch.Tensor]:
    """Embed every catalogue item not embedded yet; return item_id -> (384,) vector."""
    from safetensors.torch import save_file

    from models.text import embed_texts, item_text

    cached = load_features(feature_dir)
    todo = items[~items["item_id"].isin(cached.keys())]
    if todo.empty:
        return cached
    LOG.info("embedding %d new items with MiniLM", len(todo))
    texts = [item_text(t, g, y) for t, g, y in zip(todo["title"], todo["genres"], todo["year"], strict=True)]
    vecs = embed_texts(texts, batch_size=batch_size)
    cached.update(zip(todo["item_id"].tolist(), vecs, strict=True))
    ids = list(cached)
    with atomic_dir(feature_dir) as tmp:
        save_file({"text": torch.stack([cached[i] for i in ids]).contiguous()}, str(tmp / EMB_FILE))
        (tmp / IDS_FILE).write_text(json.dumps(ids))
    return cached


def main(argv: list[str] | None = None) -> None:
    _args, params, day = step_cli(__doc__, argv)

    layout = Layout.default()
    from tasks.history import load_items

    feats = update_features(load_items(layout, day), layout.features(), params["features"]["batch_size"])
    print(f"{len(feats)} items embedded in {layout.features()}")


if __name__ == "__main__":
    main()
