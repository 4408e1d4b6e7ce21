"""Evaluate: champion and challenger on the same holdout, full ranking over the catalogue.

The holdout is the last share of each active user's day-D events (tasks.history.
holdout_mask); the challenger never trained on it. Every held-out event is ranked
against every item the model knows, as the exported graph serves: padding is never
ranked, and with `export.exclude_seen` neither are the items of the user's input
window (a held-out item in the window is a miss, as the graph never recommends it).
An item a model does not know yet is a miss for that model, so a champion that
cannot recommend a new item pays for it. HR@10 and NDCG@10 overall, and on slices:
new items (first seen in the last 7 days) and cold users (fewer than 5 earlier events).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models.seqrec import PAD, SeqRecModel
from tasks.common import GateFailed, Layout, write_json
from tasks.history import holdout_mask, left_pad, load_events
from tasks.params import step_cli
from tasks.units import MODEL_ITEMS_FILE, model_items

LOG = logging.getLogger(__name__)

NEW_ITEM_DAYS = 7
COLD_USER_EVENTS = 5
EVALUATION_FILE = "evaluation.json"


@dataclass(frozen=True)
class Holdout:
    """Held-out targets with the user's history before each, as external item ids."""

    histories: list[list[str]]
    targets: list[str]
    users: np.ndarray  # user of each target: the unit the gate's bootstrap resamples
    new_item: np.ndarray  # bool per target
    cold_user: np.ndarray  # bool per target


def build_holdout(events: pd.DataFrame, day: dt.date, fraction: float, max_len: int) -> Holdout:
    held = holdout_mask(events, day, fraction)
    first_seen = events.groupby("item_id")["event_ts"].min()
    new_since = pd.Timestamp(day, tz="UTC") - pd.Timedelta(days=NEW_ITEM_DAYS - 1)
    histories, targets, new_item, cold, users = [], [], [], [], []
    items = events["item_id"].to_numpy()
    user_ids = events["user_id"].to_numpy()
    mine = np.flatnonzero(events["user_id"].isin(pd.unique(user_ids[held])).to_numpy())  # only the day's users
    for user, group in pd.Series(mine).groupby(user_ids[mine]):
        rows = group.to_numpy()
        for pos in np.flatnonzero(held[rows]):
            before = items[rows[:pos]].tolist()
            target = items[rows[pos]]
            histories.append(before[-4 * max_len :])
            targets.append(target)
            users.append(user)
            new_item.append(first_seen[target] >= new_since)
            cold.append(pos < COLD_USER_EVENTS)
    return Holdout(histories, targets, np.array(users, dtype=object), np.array(new_item, bool), np.array(cold, bool))


EXCLUDE = ("nothing", "history", "window")


@torch.inference_mode()
def ranks_by_exclusion(
    model: SeqRecModel, item_ids: list[str], holdout: Holdout, excludes: tuple[str, ...], batch_size: int = 256
) -> dict[str, np.ndarray]:
    """1-based full-ranking rank of each target under each of `excludes`, from one pass of the model
    over the holdout; +inf where the model does not know the item.

    An exclusion says which of the user's items are not ranked, never the target itself: "nothing"
    (every item competes), "history" (all of the user's history: the "filter seen" protocol of the
    published figures on data without repeats), or "window" (the items of the model's input window,
    as the served graph does with `export.exclude_seen`: a target in the window is a miss, since the
    graph never recommends it)."""
    if unknown := [e for e in excludes if e not in EXCLUDE]:
        raise ValueError(f"exclude={unknown[0]!r}: use one of {', '.join(EXCLUDE)}")
    index = {item: i + 1 for i, item in enumerate(item_ids)}
    ranks = {e: np.full(len(holdout.targets), np.inf) for e in excludes}
    device = next(model.parameters()).device
    for start in range(0, len(holdout.targets), batch_size):
        hist = [
            np.array([index[i] for i in h if i in index], np.int64)
            for h in holdout.histories[start : start + batch_size]
        ]
        x = np.stack([left_pad(h, model.config.max_len) for h in hist])
        t = np.array([index.get(target, PAD) for target in holdout.targets[start : start + batch_size]])
        known = t != PAD  # an item the model does not know is a miss (rank +inf)
        scores = model.last_scores(torch.from_numpy(x).to(device)).float().cpu()  # (B, N), column i is item i
        t_col = torch.from_numpy(t).unsqueeze(1)
        target = scores.gather(1, t_col)  # (B, 1)
        n_better = (scores > target).sum(1)
        for exclude, out in ranks.items():
            rank = 1 + n_better
            if exclude != "nothing":
                seen = (
                    x if exclude == "window" else np.stack([left_pad(h, max(map(len, hist), default=1)) for h in hist])
                )
                seen_t = torch.from_numpy(np.sort(seen, axis=1))
                first = torch.ones_like(seen_t, dtype=torch.bool)
                first[:, 1:] = seen_t[:, 1:] != seen_t[:, :-1]  # a repeat is one item, not two
                others = first & (seen_t != PAD) & (seen_t != t_col)
                rank = rank - ((scores.gather(1, seen_t) > target) & others).sum(1)
            rank = rank.numpy().astype(float)
            if exclude == "window":
                rank[(x == t[:, None]).any(1)] = np.inf  # never served: a miss
            rank[~known] = np.inf
            out[start : start + len(t)] = rank
    return ranks


def target_ranks(
    model: SeqRecModel, item_ids: list[str], holdout: Holdout, batch_size: int = 256, exclude: str = "nothing"
) -> np.ndarray:
    """The targets' ranks under one exclusion (ranks_by_exclusion)."""
    return ranks_by_exclusion(model, item_ids, holdout, (exclude,), batch_size)[exclude]


def event_ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k of each held-out event (one relevant item): 1/log2(rank+1) inside the top k, else 0."""
    hit = ranks <= k
    return np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 1) + 1), 0.0)


def metrics_from_ranks(ranks: np.ndarray, k: int) -> dict[str, float | int]:
    if len(ranks) == 0:
        return {"n": 0, f"hr@{k}": float("nan"), f"ndcg@{k}": float("nan")}
    return {
        "n": len(ranks),
        f"hr@{k}": round(float((ranks <= k).mean()), 5),
        f"ndcg@{k}": round(float(event_ndcg(ranks, k).mean()), 5),
    }


def model_ranks(model_dir: Path, holdout: Holdout, *excludes: str) -> dict[str, np.ndarray]:
    """A saved model's ranks on the holdout under each of `excludes` (default: nothing excluded), one pass."""
    excludes = excludes or ("nothing",)
    return ranks_by_exclusion(SeqRecModel.load(model_dir), model_items(model_dir), holdout, excludes)


def slice_metrics(ranks: np.ndarray, holdout: Holdout, k: int) -> dict:
    return {
        "all": metrics_from_ranks(ranks, k),
        "new_items": metrics_from_ranks(ranks[holdout.new_item], k),
        "cold_users": metrics_from_ranks(ranks[holdout.cold_user], k),
    }


def score_model(model_dir: Path, holdout: Holdout, k: int, exclude: str = "nothing") -> dict:
    return slice_metrics(model_ranks(model_dir, holdout, exclude)[exclude], holdout, k)


def prob_worse(champion: np.ndarray, challenger: np.ndarray, users: np.ndarray, draws: int, seed: int = 0) -> float:
    """P(challenger's mean NDCG < champion's) by a paired bootstrap over users.

    Events of one user are correlated, so users, not events, are resampled; both models are
    scored on the same events, so the difference is paired.
    """
    codes, uniq = pd.factorize(pd.Series(users))
    diff_per_user = np.bincount(codes, weights=challenger - champion, minlength=len(uniq))
    events_per_user = np.bincount(codes, minlength=len(uniq))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(uniq), size=(draws, len(uniq)))
    deltas = diff_per_user[picks].sum(1) / events_per_user[picks].sum(1)
    return float((deltas < 0).mean())


def gate(champion: np.ndarray | None, challenger: np.ndarray, users: np.ndarray, params: dict) -> dict:
    """Refuse a challenger that is worse by more than the tolerance *and* credibly worse.

    champion/challenger: per-event NDCG@k on the same holdout. A drop beyond `max_ndcg_drop`
    (relative) blocks when the bootstrap says the challenger is worse with probability >=
    `gate_confidence`; a drop the holdout cannot tell from noise does not block (it is reported).
    """
    if len(challenger) == 0:
        return {"passed": False, "reason": "empty holdout: nothing to compare on"}
    chall = float(challenger.mean())
    if champion is None:
        ok = chall >= params["min_ndcg"]
        return {
            "passed": ok,
            "reason": f"first champion: NDCG {chall:.4f} {'>=' if ok else '<'} floor {params['min_ndcg']}",
        }
    champ = float(champion.mean())
    drop = (champ - chall) / champ if champ > 0 else 0.0
    p_worse = prob_worse(champion, challenger, users, params["bootstrap_draws"])
    blocked = drop > params["max_ndcg_drop"] and p_worse >= params["gate_confidence"]
    reason = (
        f"NDCG {champ:.4f} -> {chall:.4f} ({-drop:+.1%}; tolerance -{params['max_ndcg_drop']:.0%}), "
        f"P(worse) {p_worse:.2f} over {len(np.unique(users))} users"
        + (
            " — credibly worse"
            if blocked
            else ""
            if drop <= params["max_ndcg_drop"]
            else " — drop not distinguishable from noise"
        )
    )
    return {"passed": not blocked, "reason": reason, "relative_drop": round(drop, 5), "p_worse": round(p_worse, 4)}


def evaluate(
    events: pd.DataFrame,
    day: dt.date,
    champion_dir: Path | None,
    challenger_dir: Path,
    params: dict,
    max_len: int,
    exclude: str = "nothing",
) -> dict:
    """Both models on the day's holdout, ranked as served: `exclude` is "window" where the served graph
    leaves out the input window's items (`export.exclude_seen`), so the gate compares what users get."""
    k = params["k"]
    holdout = build_holdout(events, day, params["holdout_fraction"], max_len)
    champ_ranks = model_ranks(champion_dir, holdout, exclude)[exclude] if champion_dir is not None else None
    chall_ranks = model_ranks(challenger_dir, holdout, exclude)[exclude]
    return {
        "day": str(day),
        "k": k,
        "excluded": exclude,
        "holdout_events": len(holdout.targets),
        "holdout_users": len(np.unique(holdout.users)),
        "champion": slice_metrics(champ_ranks, holdout, k) if champ_ranks is not None else None,
        "challenger": slice_metrics(chall_ranks, holdout, k),
        "gate": gate(
            event_ndcg(champ_ranks, k) if champ_ranks is not None else None,
            event_ndcg(chall_ranks, k),
            holdout.users,
            params,
        ),
    }


def run(day: dt.date, params: dict, layout: Layout) -> dict:
    """Score champion and challenger on day D's holdout; raise GateFailed if the challenger loses."""
    run_dir = layout.run(day)
    champion = run_dir / "champion" if (run_dir / "champion" / MODEL_ITEMS_FILE).exists() else None
    exclude = "window" if params["export"]["exclude_seen"] else "nothing"
    report = evaluate(load_events(layout, day), day, champion, run_dir / "challenger", params["evaluate"],
                      params["train"]["max_len"], exclude)  # fmt: skip
    write_json(run_dir / EVALUATION_FILE, report)
    champ = (report["champion"] or {}).get("all", {})
    chall = report["challenger"]["all"]
    LOG.info("evaluate %s on %d held-out events (full ranking, excluded: %s): NDCG@10 champion %s, challenger "
             "%.4f; HR@10 champion %s, challenger %.4f; gate %s: %s", day, report["holdout_events"], exclude,
             champ.get("ndcg@10", "—"), chall["ndcg@10"], champ.get("hr@10", "—"), chall["hr@10"],
             "passed" if report["gate"]["passed"] else "FAILED", report["gate"]["reason"])  # fmt: skip
    if not report["gate"]["passed"]:
        raise GateFailed(f"quality gate failed for {day}: {report['gate']['reason']}; nothing will be promoted")
    return report


def main(argv: list[str] | None = None) -> None:
    _args, params, day = step_cli(__doc__, argv)
    report = run(day, params, Layout.default())
    print(json.dumps(report["gate"]))


if __name__ == "__main__":
    main()
