"""Evaluate: champion and challenger on the same holdout, full ranking over the catalogue.

The holdout is the last share of each active user's day-D events (tasks.history.
holdout_mask); the challenger never trained on it. Every held-out event is ranked
against every item the model knows (nothing excluded but padding); an item a model
does not know yet is a miss for that model, so a champion that cannot recommend a
new item pays for it. HR@10 and NDCG@10 overall, and on slices: new items (first
seen in the last 7 days) and cold users (fewer than 5 earlier events).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models.seqrec import SeqRecModel
from tasks.common import GateFailed, Layout, step_cli, write_json
from tasks.history import holdout_mask, left_pad, load_events
from tasks.train import ITEMS_FILE, read_items

NEW_ITEM_DAYS = 7
COLD_USER_EVENTS = 5
EVALUATION_FILE = "evaluation.json"


@dataclass(frozen=True)
class Holdout:
    """Held-out targets with the user's history before each, as external item ids."""

    histories: list[list[str]]
    targets: list[str]
    new_item: np.ndarray  # bool per target
    cold_user: np.ndarray  # bool per target


def build_holdout(events: pd.DataFrame, day: dt.date, fraction: float, max_len: int) -> Holdout:
    held = holdout_mask(events, day, fraction)
    first_seen = events.groupby("item_id")["event_ts"].min()
    new_since = pd.Timestamp(day, tz="UTC") - pd.Timedelta(days=NEW_ITEM_DAYS - 1)
    histories, targets, new_item, cold = [], [], [], []
    items = events["item_id"].to_numpy()
    for _user, group in pd.Series(np.arange(len(events))).groupby(events["user_id"].to_numpy()):
        rows = group.to_numpy()
        for pos in np.flatnonzero(held[rows]):
            before = items[rows[:pos]].tolist()
            target = items[rows[pos]]
            histories.append(before[-4 * max_len :])
            targets.append(target)
            new_item.append(first_seen[target] >= new_since)
            cold.append(pos < COLD_USER_EVENTS)
    return Holdout(histories, targets, np.array(new_item, bool), np.array(cold, bool))


@torch.inference_mode()
def target_ranks(model: SeqRecModel, item_ids: list[str], holdout: Holdout, batch_size: int = 256) -> np.ndarray:
    """1-based full-ranking rank of each target; +inf where the model does not know the item."""
    index = {item: i + 1 for i, item in enumerate(item_ids)}
    ranks = np.full(len(holdout.targets), np.inf)
    device = next(model.parameters()).device
    for start in range(0, len(holdout.targets), batch_size):
        hist = holdout.histories[start : start + batch_size]
        x = np.stack(
            [left_pad(np.array([index[i] for i in h if i in index], np.int64), model.config.max_len) for h in hist]
        )
        scores = model.last_scores(torch.from_numpy(x).to(device)).float().cpu()  # (B, N)
        for j, target in enumerate(holdout.targets[start : start + batch_size]):
            t = index.get(target)
            if t is not None:
                ranks[start + j] = 1 + int((scores[j] > scores[j, t]).sum())
    return ranks


def metrics_from_ranks(ranks: np.ndarray, k: int) -> dict[str, float | int]:
    if len(ranks) == 0:
        return {"n": 0, f"hr@{k}": float("nan"), f"ndcg@{k}": float("nan")}
    hit = ranks <= k
    ndcg = np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 1) + 1), 0.0)
    return {"n": len(ranks), f"hr@{k}": round(float(hit.mean()), 5), f"ndcg@{k}": round(float(ndcg.mean()), 5)}


def score_model(model_dir: Path, holdout: Holdout, k: int) -> dict:
    model = SeqRecModel.load(model_dir)
    ranks = target_ranks(model, read_items(model_dir), holdout)
    return {
        "all": metrics_from_ranks(ranks, k),
        "new_items": metrics_from_ranks(ranks[holdout.new_item], k),
        "cold_users": metrics_from_ranks(ranks[holdout.cold_user], k),
    }


def gate(champion: dict | None, challenger: dict, k: int, max_drop: float, min_ndcg: float) -> dict:
    key = f"ndcg@{k}"
    chall = challenger["all"][key]
    if champion is None:
        ok = not math.isnan(chall) and chall >= min_ndcg
        return {"passed": ok, "reason": f"first champion: {key} {chall:.4f} {'>=' if ok else '<'} floor {min_ndcg}"}
    champ = champion["all"][key]
    if math.isnan(chall):
        return {"passed": False, "reason": "empty holdout: nothing to compare on"}
    ok = chall >= champ - max_drop
    return {"passed": ok, "reason": f"{key} {champ:.4f} -> {chall:.4f} (may drop at most {max_drop})"}


def evaluate(
    events: pd.DataFrame, day: dt.date, champion_dir: Path | None, challenger_dir: Path, params: dict, max_len: int
) -> dict:
    k = params["k"]
    holdout = build_holdout(events, day, params["holdout_fraction"], max_len)
    champion = score_model(champion_dir, holdout, k) if champion_dir is not None else None
    challenger = score_model(challenger_dir, holdout, k)
    return {
        "day": str(day),
        "k": k,
        "holdout_events": len(holdout.targets),
        "champion": champion,
        "challenger": challenger,
        "gate": gate(champion, challenger, k, params["max_ndcg_drop"], params["min_ndcg"]),
    }


def run(day: dt.date, params: dict, layout: Layout) -> dict:
    """Score champion and challenger on day D's holdout; raise GateFailed if the challenger loses."""
    run_dir = layout.run(day)
    champion = run_dir / "champion" if (run_dir / "champion" / ITEMS_FILE).exists() else None
    report = evaluate(
        load_events(layout, day), day, champion, run_dir / "challenger", params["evaluate"], params["train"]["max_len"]
    )
    write_json(run_dir / EVALUATION_FILE, report)
    if not report["gate"]["passed"]:
        raise GateFailed(f"quality gate failed for {day}: {report['gate']['reason']}; nothing will be promoted")
    return report


def main(argv: list[str] | None = None) -> None:
    _args, params, day = step_cli(__doc__, argv)
    report = run(day, params, Layout.default())
    print(json.dumps(report["gate"]))


if __name__ == "__main__":
    main()
