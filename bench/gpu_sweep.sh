#!/usr/bin/env bash
# The ML-1M quality sweep for a lent GPU machine (one device call: SWEEP_SECONDS, default 540), prepared
# here and run there. Step 1, on this machine: export ML-1M and its MiniLM features into .gpu/ (the
# GPU machine reaches no package index or hub). Step 2, on the GPU machine (device `run`, with the carry
# and install line below): each recipe of bench/quality.py, one after the other, JSON per recipe in $OUT.
#
# Step 3, here: add the reports that came back to the record. The GPU machine has no .git, so prepare
# (run it just before the device call) writes the commit the tree is at, and whether files differ
# from it, to .gpu/COMMIT.
#
#   bash bench/gpu_sweep.sh prepare          # here: .gpu/ml1m/{events.parquet,features/}, .gpu/COMMIT, .whl/
#   (each device call carries [".gpu/ml1m", ".gpu/COMMIT", ".whl"] and starts with: python3 -m pip install -q
#    --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site)
#   bash bench/gpu_sweep.sh run              # there; OUT=<dir> (default .gpu/out)
#   bash bench/gpu_sweep.sh replay           # there: ML-1M's daily replay, seed 43, with a daily full retrain
#   python bench/record.py <files_at>/quality_*.json --commit "$(cat .gpu/COMMIT)" --into bench/results/quality_ml1m.json
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=.gpu/ml1m
case "${1:-run}" in
  prepare)
    source scripts/env.sh
    mkdir -p .gpu
    commit=$(git rev-parse HEAD)
    if [ -n "$(git status --porcelain)" ]; then commit="$commit plus uncommitted changes"; fi
    echo "$commit" > .gpu/COMMIT
    # the device's image lacks pydantic (tasks/params.py): its wheels, at the venv's versions, for Python 3.12
    pins=$(python -c "import importlib.metadata as m; print(' '.join(f'{p}=={m.version(p)}' for p in
        ('pydantic', 'pydantic_core', 'annotated_types', 'typing_inspection', 'typing_extensions')))")
    rm -rf .whl && python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $pins
    python - <<'PY'
import shutil, sys
from pathlib import Path
sys.path.insert(0, "bench")
from benchdata import ROOT, features_for
from tasks.sources import load_dataset
out = Path(".gpu/ml1m"); out.mkdir(parents=True, exist_ok=True)
ds = load_dataset("ml-1m")
ds.events.to_parquet(out / "events.parquet")
ds.events.to_parquet(out / "ml-1m.parquet")  # the replay's --events: its stem names the dataset in the report
ds.items.to_parquet(out / "items.parquet")
cached = ROOT / ".run" / "features" / ds.name  # what an earlier quality run here already embedded
if cached.is_dir() and not (out / "features").exists():
    shutil.copytree(cached, out / "features")
class Args: features = out / "features"
features_for(Args, ds.items, ds.name)  # embeds only what the cache lacks
print(f"{len(ds.events):,} events, {len(ds.items):,} items -> {out}")
PY
    ;;
  run)
    OUT="${OUT:-.gpu/out}"
    mkdir -p "$OUT"
    common=(--events "$DATA/events.parquet" --features "$DATA/features" --max-len 200 --eval-every 5 --patience 4
            --max-epochs 200 --lr-schedule warmup_cosine)
    # one device call runs at most 600 s: the recipes run in priority order until SWEEP_SECONDS are spent
    deadline=$(( $(date +%s) + ${SWEEP_SECONDS:-540} ))
    run() {  # a checkpoint folder per recipe: one cut short does not block the next (nor is replaced by it)
      local name=$1 left=$(( deadline - $(date +%s) )); shift
      if (( left < 60 )); then echo "== $name: skipped, ${left} s of the sweep left"; return; fi
      echo "== $name"
      timeout "$left" python bench/quality.py "${common[@]}" "$@" --checkpoint-dir "$OUT/ckpt/$name" \
        --out "$OUT/quality_$name.json" || true
    }
    # the learned repeat score first (the CPU run with it: docs/BENCHMARKS.md), on LiGR blocks: on this CPU's
    # ML-1M runs (same recipe) they led GPT-2 blocks at every epoch, +0.0051 on test
    run h128l3_ligr_rep --hidden 128 --layers 3 --heads 4 --dropout 0.3 --block ligr --repeat-score
    run h128l3_ligr     --hidden 128 --layers 3 --heads 4 --dropout 0.3 --block ligr
    run h128l3_full     --hidden 128 --layers 3 --heads 4 --dropout 0.3
    run h128l3_s1024    --hidden 128 --layers 3 --heads 4 --dropout 0.3 --loss sampled --negatives 1024
    run h128l3_s256     --hidden 128 --layers 3 --heads 4 --dropout 0.3 --loss sampled --negatives 256 --bucketing
    run h256l3_full     --hidden 256 --layers 3 --heads 4 --dropout 0.4
    run h128l4_full     --hidden 128 --layers 4 --heads 4 --dropout 0.3
    run esasrec_ml1m    --hidden 64 --layers 2 --heads 1 --dropout 0.1 --loss sampled --negatives 256 --block ligr
    ;;
  replay)
    # bench/replay.py's ML-1M window (the 14 densest days) under a second seed, with the bounded-replay
    # recipes beside today's default and a daily full retrain (a CPU day of it takes ~1,300 s). The models
    # and the partial report stay in .gpu/replay_s$SEED, so a second call on the same (still warm) machine
    # continues after the last finished day; the report is copied to $OUT either way.
    OUT="${OUT:-.gpu/out}"; SEED="${SEED:-43}"; WORK=".gpu/replay_s$SEED"
    mkdir -p "$OUT" "$WORK"
    timeout "${REPLAY_SECONDS:-540}" "${PYTHON:-python3}" bench/replay.py --events "$DATA/ml-1m.parquet" \
      --items "$DATA/items.parquet" --features "$DATA/features" --window densest --days 14 --set "train.seed=$SEED" \
      --strategies stale,incremental_all_replay,full \
      --variant recent_r1_x2:replay=recent,replay_ratio=1,day_repeats=2 \
      --variant users_r1_x2:replay=users,replay_ratio=1,day_repeats=2 \
      --variant uniform_r1_x2:replay=uniform,replay_ratio=1,day_repeats=2 \
      --variant uniform_r2_x1:replay=uniform,replay_ratio=2,day_repeats=1 \
      --work "$WORK/models" --out "$WORK/report.json" || echo "== replay stopped (rc $?): continue with the same call"
    cp "$WORK/report.json" "$OUT/replay_ml-1m_s${SEED}_gpu.json" 2>/dev/null || true
    ;;
  *) echo "usage: $0 prepare|run|replay" >&2; exit 2 ;;
esac
