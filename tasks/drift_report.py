"""The per-day drift report: one self-contained HTML file with plots (reference vs current, and the
drift history over past days), written beside drift.json and linked from the approval request."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tasks.drift import Distributions

HTML_FILE = "drift.html"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _share(counts: np.ndarray) -> np.ndarray:
    return counts / counts.sum() if counts.sum() else counts


def _plots(dists: Distributions, history: list[dict]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    fig, ax = plt.subplots(figsize=(5, 3))
    cats = dists.rating_values.tolist()
    w = 0.4
    x = np.arange(len(cats))
    ax.bar(x - w / 2, _share(dists.reference.ratings.sum(0)), w, label="reference")
    ax.bar(x + w / 2, _share(dists.current.ratings.sum(0)), w, label="current")
    ax.set_xticks(x, [str(c) for c in cats])
    ax.set_title("rating distribution")
    ax.legend()
    out.append(("Ratings", _png(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3))
    epu_ref, epu_cur = dists.reference.counts, dists.current.counts
    bins = np.logspace(0, np.log10(max(2, epu_ref.max(initial=1), epu_cur.max(initial=1))), 20)
    ax.hist(epu_ref, bins, density=True, alpha=0.6, label="reference")
    ax.hist(epu_cur, bins, density=True, alpha=0.6, label="current")
    ax.set_xscale("log")
    ax.set_title("events per user-day")
    ax.legend()
    out.append(("Events per user-day", _png(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3))
    ref_items, cur_items = dists.reference_items, dists.current_items
    top = (ref_items / max(1, ref_items.sum())).head(50)
    ax.plot(range(len(top)), top.to_numpy(), label="reference")
    ax.plot(range(len(top)), (cur_items / max(1, cur_items.sum())).reindex(top.index, fill_value=0), ".",
            label="current")  # fmt: skip
    ax.set_title("share of events, reference top-50 items")
    ax.set_xlabel("reference popularity rank")
    ax.legend()
    out.append(("Item popularity", _png(fig)))
    plt.close(fig)

    if history:
        days = [h["day"] for h in history]
        fig, ax = plt.subplots(figsize=(7, 3))
        for key in ("js_item_popularity_excess", "new_item_share", "psi_rating"):
            ax.plot(days, [h["metrics"].get(key, np.nan) for h in history], marker=".", label=key)
        ndcg = [h.get("performance", {}).get("ndcg@10") for h in history]
        ax.plot(days, [np.nan if v is None else v for v in ndcg], marker="x", label="champion NDCG@10")
        ax.set_xticks(days[:: max(1, len(days) // 8)])
        ax.tick_params(axis="x", rotation=30)
        ax.set_title("drift history")
        ax.legend(fontsize=7)
        out.append(("History", _png(fig)))
        plt.close(fig)
    return out


def render(report: dict, dists: Distributions, history: list[dict], path: Path) -> Path:
    """The report page; `dists` = drift.distributions(reference, current), as the signals used them."""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in report["metrics"].items())  # fmt: skip
    perf = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                   for k, v in report["performance"].items())  # fmt: skip
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in report["reasons"])
    hist = "".join(
        f"<tr><td>{h['day']}</td><td>{h['decision']}</td><td>{html.escape('; '.join(h['reasons']))}</td></tr>"
        for h in reversed(history)
    )
    figs = "".join(f"<figure><img src='data:image/png;base64,{b}'><figcaption>{t}</figcaption></figure>"
                   for t, b in _plots(dists, history))  # fmt: skip
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>freshrec drift {report["day"]}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td{{border:1px solid #ccc;
padding:2px 8px}}figure{{display:inline-block;margin:0 1em 1em 0}}</style></head><body>
<h1>Drift for {report["day"]}: <code>{report["decision"]}</code></h1>
<p>Reference: {report["reference"]["from"]} → {report["reference"]["through"]} (the champion's training
window); current: {report["day"]}.</p><ul>{reasons}</ul>{figs}
<h2>Measures</h2><table>{rows}</table><h2>Performance</h2><table>{perf}</table>
<h2>Decisions over past days</h2><table><tr><td>day</td><td>decision</td><td>why</td></tr>{hist}</table>
</body></html>"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
