"""Drift: compare day D with the champion's training window and decide skip / incremental / full.

Reference = the champion's training window (its last `reference_days` days of
events up to the day it was trained through); current = day D. Measured:
- PSI of ratings (per rating value) and of events per user (reference quantile bins);
- Jensen-Shannon distance (base 2, scipy) between item-popularity distributions;
- share of D's events on items the champion has never seen, share of new users;
- the champion's full-ranking NDCG@10 on D's holdout against its recorded baseline.
SASRec has no user embeddings, so new users need no retraining: their share is
reported, not acted on. Thresholds live in params.yaml (`drift:`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.common import Layout, read_json, step_cli, write_json
from tasks.history import day_mask, load_events

DRIFT_FILE = "drift.json"
_EPS = 1e-4  # floor for empty bins so PSI stays finite


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10, categorical: bool = False) -> float:
    """Population Stability Index; bins are reference quantiles (or the values, if categorical)."""
    if len(reference) == 0 or len(current) == 0:
        return float("nan")
    bins = max(2, min(bins, len(current) // 5))  # >= 5 expected current values per bin, or PSI is noise
    if categorical:
        cats = np.union1d(np.unique(reference), np.unique(current))
        ref = np.array([(reference == c).mean() for c in cats])
        cur = np.array([(current == c).mean() for c in cats])
    else:
        edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
        edges[0], edges[-1] = -np.inf, np.inf
        ref = np.histogram(reference, edges)[0] / len(reference)
        cur = np.histogram(current, edges)[0] / len(current)
    ref, cur = np.clip(ref, _EPS, None), np.clip(cur, _EPS, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def popularity_js(
    reference_items: pd.Series, current_items: pd.Series, resamples: int = 50, seed: int = 0
) -> dict[str, float]:
    """Jensen-Shannon distance (base 2, in [0, 1]) between item-popularity distributions,
    with its no-drift baseline for a sample of the same size.

    A day of a few hundred events over thousands of items is far from the reference even
    when nothing changed (sampling noise). So the reference is resampled to the day's size
    `resamples` times (NannyML-style): the day drifts when its JS exceeds that null's
    mean + 3 sigma, and `js_excess` (JS minus the null mean) is what thresholds compare.
    """
    from scipy.spatial.distance import jensenshannon

    ref = reference_items.value_counts()
    cur = current_items.value_counts()
    keys = ref.index.union(cur.index)
    p = ref.reindex(keys, fill_value=0).to_numpy(float)
    q = cur.reindex(keys, fill_value=0).to_numpy(float)
    if p.sum() == 0 or q.sum() == 0:
        return {"js": float("nan"), "null_mean": float("nan"), "null_std": float("nan"), "excess": float("nan")}
    p /= p.sum()
    js = float(jensenshannon(p, q / q.sum(), base=2))
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(int(q.sum()), p, size=resamples)
    null = np.array([jensenshannon(p, d / d.sum(), base=2) for d in draws])
    return {"js": js, "null_mean": float(null.mean()), "null_std": float(null.std()), "excess": js - float(null.mean())}


def events_per_user_day(events: pd.DataFrame) -> np.ndarray:
    """Events per (user, UTC day): the same unit for a 28-day reference and a one-day current."""
    days = events["event_ts"].dt.floor("D")
    return events.groupby([events["user_id"], days]).size().to_numpy()


def measure(
    reference: pd.DataFrame, current: pd.DataFrame, history_before: pd.DataFrame, champion_items: set[str], bins: int
) -> dict[str, float]:
    known_users = set(history_before["user_id"])
    day_users = current["user_id"].unique()
    js = popularity_js(reference["item_id"], current["item_id"])
    return {
        "events": len(current),
        "users": len(day_users),
        "user_days": len(events_per_user_day(current)),
        "psi_rating": round(psi(reference["rating"].to_numpy(), current["rating"].to_numpy(), categorical=True), 5),
        "psi_events_per_user": round(psi(events_per_user_day(reference), events_per_user_day(current), bins), 5),
        "js_item_popularity": round(js["js"], 5),
        "js_item_popularity_null": round(js["null_mean"], 5),
        "js_item_popularity_excess": round(js["excess"], 5),
        "js_item_popularity_drifted": bool(js["js"] > js["null_mean"] + 3 * js["null_std"]),
        "new_item_share": round(float((~current["item_id"].isin(champion_items)).mean()) if len(current) else 0.0, 5),
        "new_user_share": round(
            float(np.mean([u not in known_users for u in day_users])) if len(day_users) else 0.0, 5
        ),
    }


def decide(m: dict, thresholds: dict, champion: bool, ndcg_drop: float | None) -> tuple[str, list[str]]:
    """The decision and the reasons for it, in words an on-call engineer can act on."""
    t = thresholds
    if not champion:
        return "full", ["no champion yet: bootstrap with a full training run"]
    if m["events"] < t["min_events"]:
        return "skip", [f"only {m['events']} events (< {t['min_events']}): nothing worth learning"]
    full, notes = [], []
    js_txt = f"item popularity JS {m['js_item_popularity']:.3f} (no-drift baseline {m['js_item_popularity_null']:.3f})"
    if m["js_item_popularity_excess"] >= t["js_popularity_full"]:
        full.append(f"{js_txt} exceeds its baseline by >= {t['js_popularity_full']}")
    elif m["js_item_popularity_drifted"] and m["js_item_popularity_excess"] >= t["js_popularity"]:
        notes.append(f"{js_txt}: drifted (> baseline + 3 sigma, excess >= {t['js_popularity']})")
    if m["new_item_share"] >= t["new_item_share_full"]:
        full.append(f"new-item share {m['new_item_share']:.2f} >= {t['new_item_share_full']}")
    elif m["new_item_share"] >= t["new_item_share"]:
        notes.append(f"new-item share {m['new_item_share']:.2f} >= {t['new_item_share']}")
    for key in ("psi_rating", "psi_events_per_user"):
        n = m["events"] if key == "psi_rating" else m["user_days"]
        if n < t["psi_min_samples"]:
            continue  # too few values for PSI to mean anything; still reported in metrics
        if m[key] >= t["psi_significant"]:
            notes.append(f"{key} {m[key]:.3f} significant (>= {t['psi_significant']})")
        elif m[key] >= t["psi_moderate"]:
            notes.append(f"{key} {m[key]:.3f} moderate (>= {t['psi_moderate']})")
    if ndcg_drop is not None and ndcg_drop >= t["ndcg_drop_full"]:
        drop = f"champion NDCG@10 fell {ndcg_drop:.0%} below its baseline (>= {t['ndcg_drop_full']:.0%})"
        if m["users"] >= t["perf_min_users"]:
            full.append(drop)
        else:  # a handful of users' holdout swings NDCG by tens of percent: report, do not act
            notes.append(f"{drop}, on only {m['users']} users (< {t['perf_min_users']}): not acted on")
    if full:
        return "full", full + notes
    return "incremental", notes or ["no significant drift: fine-tune on the new day to stay fresh"]


def detect(events: pd.DataFrame, day: dt.date, champion_dir: Path | None, params: dict) -> dict:
    """Measure drift for `day` (events must include everything through `day`) and decide."""
    from tasks.evaluate import build_holdout, score_model
    from tasks.train import TRAIN_FILE, read_items

    t = params["drift"]
    current = events[day_mask(events, day)]
    before = events[~day_mask(events, day) & (events["event_ts"] < pd.Timestamp(day, tz="UTC"))]
    if champion_dir is None:
        ref_day, champion_items, baseline = day - dt.timedelta(days=1), set(), None
    else:
        ref_day = dt.date.fromisoformat(read_json(champion_dir / TRAIN_FILE)["day"])
        champion_items = set(read_items(champion_dir))
        metrics_file = champion_dir / "metrics.json"
        baseline = read_json(metrics_file)["challenger"]["all"]["ndcg@10"] if metrics_file.exists() else None
    since = pd.Timestamp(ref_day - dt.timedelta(days=t["reference_days"] - 1), tz="UTC")
    until = pd.Timestamp(ref_day + dt.timedelta(days=1), tz="UTC")
    reference = before[(before["event_ts"] >= since) & (before["event_ts"] < until)]
    m = measure(reference, current, before, champion_items, t["psi_bins"])
    m["reference_events"] = len(reference)
    perf: dict = {"baseline_ndcg@10": baseline, "ndcg@10": None, "relative_drop": None}
    if champion_dir is not None and len(current):
        holdout = build_holdout(events, day, params["evaluate"]["holdout_fraction"], params["train"]["max_len"])
        now = score_model(champion_dir, holdout, 10)["all"]["ndcg@10"]
        perf["ndcg@10"] = now
        if baseline and not math.isnan(now):
            perf["relative_drop"] = round(max(0.0, (baseline - now) / baseline), 5)
    decision, reasons = decide(m, t, champion_dir is not None, perf["relative_drop"])
    return {
        "day": str(day),
        "reference": {"from": str(since.date()), "through": str(ref_day)},
        "metrics": m,
        "performance": perf,
        "decision": decision,
        "reasons": reasons,
    }


def run(day: dt.date, params: dict, layout: Layout, force: str | None = None) -> dict:
    champion = layout.run(day) / "champion"
    report = detect(load_events(layout, day), day, champion if (champion / "items.json").exists() else None, params)
    if force:
        report["reasons"].insert(0, f"forced {force} by the operator (was {report['decision']})")
        report["decision"] = force
    write_json(layout.reports("drift", day) / DRIFT_FILE, report)
    return report


def main(argv: list[str] | None = None) -> None:
    def options(ap):
        ap.add_argument("--force", choices=["skip", "incremental", "full"], help="override the decision")

    args, params, day = step_cli(__doc__, argv, options)
    report = run(day, params, Layout.default(), args.force)
    print(json.dumps({"decision": report["decision"], "reasons": report["reasons"]}))


if __name__ == "__main__":
    main()
