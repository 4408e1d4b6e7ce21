"""Drift: compare day D with the champion's training window and decide skip / incremental / full.

Reference = the champion's training window (its last `reference_days` days of
events up to the day it was trained through); current = day D. Measured:
- ratings and events per user-day: PSI, normed Wasserstein; ratings and event types: Jensen-Shannon;
  each against its no-drift baseline (the reference resampled by user-days to the day's size);
- Jensen-Shannon distance (base 2, scipy) between item-popularity distributions, likewise;
- share of D's events on items the champion has never seen, share of new users;
- representation drift: MMD between the champion's embeddings of reference and current users;
- the champion's full-ranking NDCG@10 on D's holdout against its recorded baseline.
SASRec has no user embeddings, so new users need no retraining: their share is
reported, not acted on. Thresholds live in params.yaml (`drift:`); docs/drift.md says why.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from tasks.common import Layout, day_bounds, read_json, write_json
from tasks.history import day_mask, load_events, user_day_codes
from tasks.params import step_cli
from tasks.units import METRICS_FILE, MODEL_ITEMS_FILE, TRAIN_FILE, model_items

LOG = logging.getLogger(__name__)

DRIFT_FILE = "drift.json"
_EPS = 1e-4  # floor for empty bins so PSI stays finite


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population Stability Index of a numeric feature over reference-quantile bins."""
    if len(reference) == 0 or len(current) == 0:
        return float("nan")
    bins = max(2, min(bins, len(current) // 5))  # >= 5 expected current values per bin, or PSI is noise
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    return _hist_psi(np.histogram(reference, edges)[0], np.histogram(current, edges)[0])


def popularity_js(ref: pd.Series, cur: pd.Series, resamples: int = 50, seed: int = 0) -> dict[str, float]:
    """Jensen-Shannon distance (base 2, in [0, 1]) between item-popularity distributions, given as events
    per item (value_counts) of the reference and of the day, with its no-drift baseline for a sample of
    the same size.

    A day of a few hundred events over thousands of items is far from the reference even
    when nothing changed (sampling noise). So the reference is resampled to the day's size
    `resamples` times (NannyML-style): the day drifts when its JS exceeds that null's
    mean + 3 sigma, and `js_excess` (JS minus the null mean) is what thresholds compare.
    """
    from scipy.spatial.distance import jensenshannon

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


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int = 200, seed: int = 0) -> dict[str, float]:
    """Maximum mean discrepancy (RBF kernel, median-distance bandwidth) with a permutation p-value."""
    from scipy.spatial.distance import cdist

    if len(x) < 5 or len(y) < 5:
        return {"mmd2": float("nan"), "p_value": float("nan")}
    z = np.vstack([x, y])
    d2 = cdist(z, z, "sqeuclidean")
    bandwidth = np.median(d2[np.triu_indices(len(z), 1)]) or 1.0
    k = np.exp(-d2 / bandwidth)
    n = len(x)

    def stat(idx: np.ndarray) -> float:
        a, b = idx[:n], idx[n:]
        return k[np.ix_(a, a)].mean() + k[np.ix_(b, b)].mean() - 2 * k[np.ix_(a, b)].mean()

    rng = np.random.default_rng(seed)
    observed = stat(np.arange(len(z)))
    null = np.array([stat(rng.permutation(len(z))) for _ in range(permutations)])
    return {"mmd2": float(observed), "p_value": float((1 + (null >= observed).sum()) / (1 + permutations))}


def sequence_embeddings(champion_dir: Path, events: pd.DataFrame, users: list[str], max_len: int) -> np.ndarray:
    """The champion's state after each user's sequence (L2-normalised): how the model sees them."""
    import torch

    from models.seqrec import SeqRecModel
    from tasks.history import left_pad, sequences

    model = SeqRecModel.load(champion_dir)
    index = {item: i + 1 for i, item in enumerate(model_items(champion_dir))}
    seqs = sequences(events[events["user_id"].isin(users)], index)
    x = np.stack([left_pad(seqs.get(u, np.zeros(0, np.int64)), max_len) for u in users])
    with torch.inference_mode():
        states = model(torch.from_numpy(x))[:, -1, :]
    return torch.nn.functional.normalize(states, dim=-1).numpy()


FEATURE_SIGNALS = {  # signal -> the params threshold its excess over the no-drift baseline is compared with
    "psi_rating": "psi_moderate",
    "psi_events_per_user": "psi_moderate",
    "wasserstein_rating": "wasserstein",
    "wasserstein_events_per_user": "wasserstein",
    "js_rating": "js_categorical",
    "js_event_type": "js_categorical",
}


@dataclass(frozen=True)
class UserDays:
    """Per (user, UTC day): event count and histograms over rating values and event types.

    Every feature signal is a function of these, so resampling user-days (the no-drift
    baseline) is summing small histograms, not re-slicing millions of events.
    """

    counts: np.ndarray  # (G,)
    ratings: np.ndarray  # (G, R) counts per rating value
    types: np.ndarray  # (G, E) counts per event type

    def take(self, idx: np.ndarray) -> UserDays:
        return UserDays(self.counts[idx], self.ratings[idx], self.types[idx])


@dataclass(frozen=True)
class Distributions:
    """What the signals and the report's plots are computed from, in one pass over each window: ids are
    factorised once (10M events: seconds a pass), not again by each consumer."""

    rating_values: np.ndarray  # the sorted rating values of both windows
    reference: UserDays
    current: UserDays
    reference_items: pd.Series  # events per item (value_counts)
    current_items: pd.Series


def distributions(reference: pd.DataFrame, current: pd.DataFrame) -> Distributions:
    rating_values = np.union1d(reference["rating"].unique(), current["rating"].unique())
    event_types = np.union1d(reference["event_type"].unique().astype(str), current["event_type"].unique().astype(str))
    return Distributions(
        rating_values,
        user_days(reference, rating_values, event_types),
        user_days(current, rating_values, event_types),
        reference["item_id"].value_counts(),
        current["item_id"].value_counts(),
    )


def user_days(events: pd.DataFrame, rating_values: np.ndarray, event_types: np.ndarray) -> UserDays:
    codes = user_day_codes(events)
    g = int(codes.max()) + 1 if len(codes) else 0
    r = np.searchsorted(rating_values, events["rating"].to_numpy())
    e = pd.Categorical(events["event_type"].astype(str), categories=event_types).codes

    def per_group(col: np.ndarray, width: int) -> np.ndarray:  # np.add.at's counts, by one bincount
        return np.bincount(codes * width + col, minlength=g * width).reshape(g, width).astype(float)

    return UserDays(np.bincount(codes, minlength=g).astype(float), per_group(r, len(rating_values)),
                    per_group(e, len(event_types)))  # fmt: skip


def _hist_js(p: np.ndarray, q: np.ndarray) -> float:
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(p / p.sum(), q / q.sum(), base=2)) if p.sum() and q.sum() else float("nan")


def _hist_psi(p: np.ndarray, q: np.ndarray) -> float:
    if not p.sum() or not q.sum():
        return float("nan")
    p, q = np.clip(p / p.sum(), _EPS, None), np.clip(q / q.sum(), _EPS, None)
    return float(np.sum((q - p) * np.log(q / p)))


def _hist_wasserstein(values: np.ndarray, p: np.ndarray, q: np.ndarray) -> float:
    """Normed 1-Wasserstein between two histograms on the same sorted support (what
    scipy.stats.wasserstein_distance computes, without its per-call overhead): the area between the
    CDFs, in units of the reference's standard deviation."""
    if not p.sum() or not q.sum():
        return float("nan")
    p, q = p / p.sum(), q / q.sum()
    mean = (values * p).sum()
    scale = float(np.sqrt((p * (values - mean) ** 2).sum())) or 1.0
    return float(np.sum(np.abs(np.cumsum(p) - np.cumsum(q))[:-1] * np.diff(values)) / scale)


def _count_hist(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    support = np.union1d(ref, cur)
    return support, np.bincount(np.searchsorted(support, ref), minlength=len(support)), np.bincount(
        np.searchsorted(support, cur), minlength=len(support))  # fmt: skip


def feature_metrics(ref: UserDays, cur: UserDays, rating_values: np.ndarray, bins: int) -> dict[str, float]:
    r_ref, r_cur = ref.ratings.sum(0), cur.ratings.sum(0)
    return {
        "psi_rating": _hist_psi(r_ref, r_cur),
        "psi_events_per_user": psi(ref.counts, cur.counts, bins),
        "wasserstein_rating": _hist_wasserstein(rating_values.astype(float), r_ref, r_cur),
        "wasserstein_events_per_user": _hist_wasserstein(*_count_hist(ref.counts, cur.counts)),
        "js_rating": _hist_js(r_ref, r_cur),
        "js_event_type": _hist_js(ref.types.sum(0), cur.types.sum(0)),
    }


def user_day_null(ref: UserDays, n_user_days: int, rating_values: np.ndarray, bins: int, resamples: int = 100,
                  seed: int = 0) -> dict[str, tuple[float, float]]:  # fmt: skip
    """Each feature metric's no-drift distribution for a day of `n_user_days` user-days: the reference
    resampled by whole user-days (a user's events are correlated; events are not independent draws)."""
    if n_user_days == 0 or len(ref.counts) == 0:
        return {k: (float("nan"), float("nan")) for k in FEATURE_SIGNALS}
    rng = np.random.default_rng(seed)
    draws = [
        feature_metrics(ref, ref.take(rng.integers(0, len(ref.counts), n_user_days)), rating_values, bins)
        for _ in range(resamples)
    ]
    # (mean, 99th percentile): these nulls are skewed, so a quantile, not mean + 3 sigma, bounds them
    return {k: (float(np.mean([d[k] for d in draws])), float(np.quantile([d[k] for d in draws], 0.99)))
            for k in FEATURE_SIGNALS}  # fmt: skip


def measure(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    history_before: pd.DataFrame,
    champion_items: set[str],
    bins: int,
    max_user_days: int | None = None,
    dists: Distributions | None = None,
) -> dict[str, float]:
    """Every drift statistic of the day against the reference. The feature signals compare at most
    `max_user_days` of the day's user-days (a fixed sample beyond it) with a null of the same size: the
    resampled baseline costs O(user-days) a draw, and a sample of thousands already detects a shift.
    `dists`: distributions(reference, current), where the caller has it already."""
    dists = dists or distributions(reference, current)
    day_users = pd.Index(current["user_id"].unique())
    js = popularity_js(dists.reference_items, dists.current_items)
    rating_values, ref_days, cur_days = dists.rating_values, dists.reference, dists.current
    n_user_days = len(cur_days.counts)
    if max_user_days is not None and n_user_days > max_user_days:
        cur_days = cur_days.take(np.sort(np.random.default_rng(0).choice(n_user_days, max_user_days, replace=False)))
    observed = feature_metrics(ref_days, cur_days, rating_values, bins)
    null = user_day_null(ref_days, len(cur_days.counts), rating_values, bins)
    features = {}
    for key, value in observed.items():
        mean, q99 = null[key]
        features[key] = round(value, 5)
        features[f"{key}_null"] = round(mean, 5)
        features[f"{key}_excess"] = round(value - mean, 5)
        features[f"{key}_drifted"] = bool(value > q99)
    return {
        "events": len(current),
        "users": len(day_users),
        "user_days": n_user_days,
        "user_days_compared": len(cur_days.counts),
        **features,
        "js_item_popularity": round(js["js"], 5),
        "js_item_popularity_null": round(js["null_mean"], 5),
        "js_item_popularity_excess": round(js["excess"], 5),
        "js_item_popularity_drifted": bool(js["js"] > js["null_mean"] + 3 * js["null_std"]),
        "new_item_share": round(
            float((~current["item_id"].isin(pd.Index(list(champion_items)))).mean()) if len(current) else 0.0, 5
        ),
        "new_user_share": round(
            float((~day_users.isin(history_before["user_id"].unique())).mean()) if len(day_users) else 0.0, 5
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
    js_txt = f"js_item_popularity {m['js_item_popularity']:.3f} (no-drift baseline {m['js_item_popularity_null']:.3f})"
    if m["js_item_popularity_excess"] >= t["js_popularity_full"]:
        full.append(f"{js_txt} exceeds its baseline by >= {t['js_popularity_full']}")
    elif m["js_item_popularity_drifted"] and m["js_item_popularity_excess"] >= t["js_popularity"]:
        notes.append(f"{js_txt}: drifted (> baseline + 3 sigma, excess >= {t['js_popularity']})")
    if m["new_item_share"] >= t["new_item_share_full"]:
        full.append(f"new_item_share {m['new_item_share']:.2f} >= {t['new_item_share_full']}")
    elif m["new_item_share"] >= t["new_item_share"]:
        notes.append(f"new_item_share {m['new_item_share']:.2f} >= {t['new_item_share']}")
    # feature signals act on their excess over a same-size no-drift baseline (ratings and activity
    # cluster by user: a few users' habits are not a population shift), and only beyond 3 sigma of it
    for key, threshold in FEATURE_SIGNALS.items():
        excess = m.get(f"{key}_excess", 0.0)
        if not m.get(f"{key}_drifted") or not excess >= t[threshold]:
            continue
        band = "significant" if key.startswith("psi") and excess >= t["psi_significant"] else "moderate"
        notes.append(f"{key} {m[key]:.3f}, {excess:+.3f} over its no-drift baseline ({band}, >= {t[threshold]})")
    rep = m.get("representation_p_value")
    if rep is not None and not math.isnan(rep) and rep < t["representation_p"]:
        notes.append(f"representation: user-sequence embeddings moved, MMD p = {rep:.3f} (< {t['representation_p']})")
    if ndcg_drop is not None and ndcg_drop >= t["ndcg_drop_full"]:
        drop = f"ndcg_drop: champion NDCG@10 fell {ndcg_drop:.0%} below its baseline (>= {t['ndcg_drop_full']:.0%})"
        if m["users"] >= t["perf_min_users"]:
            full.append(drop)
        else:  # a handful of users' holdout swings NDCG by tens of percent: report, do not act
            notes.append(f"{drop}, on only {m['users']} users (< {t['perf_min_users']}): not acted on")
    if full:
        return "full", full + notes
    return "incremental", notes or ["no significant drift: fine-tune on the new day to stay fresh"]


def signals(report: dict, t: dict) -> list[dict]:
    """Each drift signal of a report with what it is compared with: {signal, value, compared, threshold}.
    `compared` is what acts on the threshold (the excess over the no-drift baseline, where there is one)."""
    m, rows = report["metrics"], []

    def row(name, value, compared, threshold):
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            rows.append({"signal": name, "value": value, "compared": compared, "threshold": threshold})

    if "js_item_popularity" in m:
        row("js_item_popularity", m["js_item_popularity"], f"excess {m['js_item_popularity_excess']:+.3f}",
            f"{t['js_popularity']} / full {t['js_popularity_full']}")  # fmt: skip
    if "new_item_share" in m:
        row("new_item_share", m["new_item_share"], "value", f"{t['new_item_share']} / full {t['new_item_share_full']}")
    for key, threshold in FEATURE_SIGNALS.items():
        if key in m:
            row(key, m[key], f"excess {m.get(f'{key}_excess', 0.0):+.3f}", f"{t[threshold]}")
    row("representation_p_value", m.get("representation_p_value"), "value", f"< {t['representation_p']}")
    drop = (report.get("performance") or {}).get("relative_drop")
    row("ndcg_relative_drop", drop, "value", f"full {t['ndcg_drop_full']}")
    return rows


class Windows(NamedTuple):
    """Slices of one time-ordered frame (10M rows: no copies). Reference = the champion's training window:
    `reference_days` days through the day it was trained through (no champion: the days before D)."""

    reference: pd.DataFrame
    current: pd.DataFrame  # day D
    before: pd.DataFrame  # everything before D
    through: pd.DataFrame  # everything through D
    ref_day: dt.date
    since: pd.Timestamp  # the reference's first instant
    until: pd.Timestamp  # the instant after the reference


def windows(events: pd.DataFrame, day: dt.date, champion_dir: Path | None, reference_days: int) -> Windows:
    ref_day = (
        day - dt.timedelta(days=1)
        if champion_dir is None
        else dt.date.fromisoformat(read_json(champion_dir / TRAIN_FILE)["day"])
    )
    since = pd.Timestamp(ref_day - dt.timedelta(days=reference_days - 1), tz="UTC")
    until = pd.Timestamp(ref_day + dt.timedelta(days=1), tz="UTC")
    start, end = (pd.Timestamp(t, unit="s", tz="UTC") for t in day_bounds(day))
    if not events["event_ts"].is_monotonic_increasing:  # load_events' frames are; anything else is ordered first
        events = events.sort_values("event_ts", kind="stable")
    at = events["event_ts"].searchsorted
    before, through = events.iloc[: at(start)], events.iloc[: at(end)]
    reference = events.iloc[at(since) : min(at(until), len(before))]
    return Windows(reference, through.iloc[len(before) :], before, through, ref_day, since, until)


def champion_performance(
    events: pd.DataFrame, day: dt.date, champion_dir: Path | None, params: dict, scored: bool = True
) -> dict:
    """The champion's NDCG@10 on day D's holdout (`scored`: D has events) against its own baseline (its
    evaluation when it was the challenger), ranked the way that baseline was: an evaluation records which
    items it left out of the ranking (`excluded`; none before `export.exclude_seen`), and two protocols
    are never mixed."""
    perf: dict = {"baseline_ndcg@10": None, "ndcg@10": None, "relative_drop": None, "excluded": None}
    if champion_dir is None:
        return perf
    metrics_file = champion_dir / METRICS_FILE
    if metrics_file.exists():
        metrics = read_json(metrics_file)
        perf["baseline_ndcg@10"] = metrics["challenger"]["all"]["ndcg@10"]
        perf["excluded"] = metrics.get("excluded", "nothing")
    if not scored:
        return perf
    from tasks.evaluate import build_holdout, score_model  # the model stack: only when there is a model

    day_users = pd.unique(events.loc[day_mask(events, day), "user_id"])
    cap = params["drift"]["perf_max_users"]
    if len(day_users) > cap:  # a signal, not the gate: a fixed sample of the day's users measures it
        picked = np.random.default_rng(0).choice(np.sort(day_users.astype(str)), cap, replace=False)
        events = events[events["user_id"].isin(picked)]
        perf["sampled_users"] = cap
    holdout = build_holdout(events, day, params["evaluate"]["holdout_fraction"], params["train"]["max_len"])
    now = score_model(champion_dir, holdout, 10, perf["excluded"] or "nothing")["all"]["ndcg@10"]
    perf["ndcg@10"] = now
    baseline = perf["baseline_ndcg@10"]
    if baseline and not math.isnan(now):
        perf["relative_drop"] = round(max(0.0, (baseline - now) / baseline), 5)
    return perf


def detect(
    events: pd.DataFrame, day: dt.date, champion_dir: Path | None, params: dict, wins: Windows, dists: Distributions
) -> dict:
    """Measure drift for `day` (events must include everything through `day`; `wins` = windows(), `dists` =
    distributions(wins.reference, wins.current)) and decide."""
    t = params["drift"]
    reference, current, before = wins.reference, wins.current, wins.before
    champion_items = set(model_items(champion_dir)) if champion_dir is not None else set()
    m = measure(reference, current, before, champion_items, t["psi_bins"], t["null_max_user_days"], dists)
    m["reference_events"] = len(reference)
    if champion_dir is not None and len(current):
        rng = np.random.default_rng(0)
        cap = t["representation_max_users"]
        ref_users = sorted(reference["user_id"].unique())
        cur_users = sorted(current["user_id"].unique())
        ref_users = list(rng.choice(ref_users, min(cap, len(ref_users)), replace=False)) if ref_users else []
        cur_users = list(rng.choice(cur_users, min(cap, len(cur_users)), replace=False))
        max_len = params["train"]["max_len"]
        until_reference = before.iloc[: before["event_ts"].searchsorted(wins.until)]
        mmd = mmd_test(
            sequence_embeddings(champion_dir, until_reference, ref_users, max_len) if ref_users else np.zeros((0, 1)),
            sequence_embeddings(champion_dir, wins.through, cur_users, max_len),
        )
        m["representation_mmd2"] = round(mmd["mmd2"], 6)
        m["representation_p_value"] = round(mmd["p_value"], 4)
    perf = champion_performance(events, day, champion_dir, params, scored=len(current) > 0)
    decision, reasons = decide(m, t, champion_dir is not None, perf["relative_drop"])
    drifted = [r.split(" ")[0].rstrip(":") for r in reasons if not r.startswith(("no ", "only ", "forced "))]
    return {
        "day": str(day),
        "reference": {"from": str(wins.since.date()), "through": str(wins.ref_day)},
        "metrics": m,
        "performance": perf,
        "decision": decision,
        "reasons": reasons,
        "drifted": drifted,
    }


def run(day: dt.date, params: dict, layout: Layout, force: str | None = None) -> dict:
    """Measure, decide, and write drift.json plus the HTML report (plots and the drift history)."""
    from tasks.drift_report import HTML_FILE, render

    champion = layout.run(day) / "champion"
    champion_dir = champion if (champion / MODEL_ITEMS_FILE).exists() else None
    events = load_events(layout, day)
    wins = windows(events, day, champion_dir, params["drift"]["reference_days"])
    dists = distributions(wins.reference, wins.current)  # for the signals and the report's plots alike
    report = detect(events, day, champion_dir, params, wins, dists)
    if force:
        report["reasons"].insert(0, f"forced {force} by the operator (was {report['decision']})")
        report["decision"] = force
    out = layout.reports("drift", day)
    report["html"] = HTML_FILE  # beside drift.json in reports/drift/date=D (served by the reports plugin)
    write_json(out / DRIFT_FILE, report)
    ref, m = report["reference"], report["metrics"]
    LOG.info("drift %s: %d events vs reference %s..%s (%d events)", day, m["events"], ref["from"], ref["through"],
             m.get("reference_events", 0))  # fmt: skip
    for sig in signals(report, params["drift"]):
        LOG.info("drift signal %s = %.4f (acts on %s; threshold %s)", sig["signal"], sig["value"], sig["compared"],
                 sig["threshold"])  # fmt: skip
    LOG.info("drift decision: %s — %s", report["decision"], "; ".join(report["reasons"]))
    render(report, dists, history(layout, day, params["drift"]["history_days"]), out / HTML_FILE)
    return report


def history(layout: Layout, day: dt.date, days: int) -> list[dict]:
    """The drift reports of the `days` days before D and D's (oldest first), for the report's history plot."""
    root = layout.root / "reports" / "drift"
    since = str(day - dt.timedelta(days=days))
    files = sorted(root.glob("date=*/drift.json")) if root.exists() else []
    return [read_json(f) for f in files if since <= f.parent.name[5:] <= str(day)]


def main(argv: list[str] | None = None) -> None:
    def options(ap):
        ap.add_argument("--force", choices=["skip", "incremental", "full"], help="override the decision")

    args, params, day = step_cli(__doc__, argv, options)
    report = run(day, params, Layout.default(), args.force)
    print(json.dumps({"decision": report["decision"], "reasons": report["reasons"]}))


if __name__ == "__main__":
    main()
