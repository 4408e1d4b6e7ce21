"""Training wall time and quality of one full training run, on whatever device torch sees.

The pipeline's own code path (tasks.train.train, tasks.evaluate.evaluate) on the ingested
ML-100K warm-up window, params from params.yaml. Run it on the CPU here and on a GPU worker to
compare; prints a table and writes JSON.

    python bench/train_speed.py --data data --day 1998-02-28 --out bench/results/train_speed_cpu.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runs from a bare checkout too


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="data root with raw/ and features/")
    ap.add_argument("--day", default="1998-02-28")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    import torch

    from tasks.common import Layout, git_commit
    from tasks.evaluate import evaluate
    from tasks.features import load_features
    from tasks.history import load_events, load_items
    from tasks.params import load_params
    from tasks.train import train

    params = load_params()
    layout = Layout(args.data.resolve())
    day = dt.date.fromisoformat(args.day)
    events, catalogue = load_events(layout, day), load_items(layout, day)
    features = load_features(layout.features())
    rows = []
    for i in range(args.repeats):
        out = Path(tempfile.mkdtemp(prefix="freshrec-train-speed-")) / f"run{i}"
        t0 = time.perf_counter()
        res = train(
            events,
            catalogue,
            day,
            "full",
            params["train"],
            features,
            None,
            out,
            params["evaluate"]["holdout_fraction"],
            progress=False,
        )
        wall = time.perf_counter() - t0
        ev = evaluate(events, day, None, out, params["evaluate"], params["train"]["max_len"])
        rows.append(
            {
                "device": res.device,
                "seconds": round(wall, 2),
                "steps": res.steps,
                "loss": res.final_loss,
                "ndcg@10": ev["challenger"]["all"]["ndcg@10"],
                "hr@10": ev["challenger"]["all"]["hr@10"],
                "holdout": ev["holdout_events"],
            }
        )
    device_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    report = {
        "command": " ".join(sys.argv),
        "machine": {
            "device": device_name,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
        },
        "git_commit": git_commit(),
        "params": {k: params["train"][k] for k in ("max_len", "hidden_size", "num_layers", "num_heads")}
        | {"epochs": params["train"]["full"]["epochs"], "batch_size": params["train"]["full"]["batch_size"]},
        "runs": rows,
    }
    print(f"{'device':<8} {'seconds':>8} {'steps':>6} {'loss':>7} {'NDCG@10':>8} {'HR@10':>7}")
    for r in rows:
        print(
            f"{r['device']:<8} {r['seconds']:>8.1f} {r['steps']:>6} {r['loss']:>7.3f} {r['ndcg@10']:>8.4f} "
            f"{r['hr@10']:>7.4f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
