"""DVC-versioned training: every challenger the pipeline trains is recorded by real DVC, and any
promoted version can be retrained from what DVC kept.

`version_training` runs after `train` (in the DAG's train task and the bootstrap). In a scratch DVC
workspace it lays out exactly what training read (the history unit of the days before D and D's
partition, the catalogue standing on D, the item-text features, the base champion, the drift decision,
params.yaml) and what it wrote (the challenger), `dvc add`s the inputs, records the `train` stage
(`dvc commit`: dvc.lock holds every md5) and `dvc push`es all of it to the DVC remote on the same S3
(`s3://<bucket>/dvc`). The stage files (dvc.yaml, dvc.lock, *.dvc, params.yaml) are kept beside the
run (runs/date=D/dvc) and go into the promoted version's manifest (`lineage.dvc`).

`python -m tasks.versioning reproduce --version V` (`make reproduce VERSION=V`) takes those files
from the manifest, `dvc pull`s the inputs in a fresh workspace, retrains with the same code path,
and prints `weights sha256 match` (or `mismatch`) with the metrics side by side. CPU training is
deterministic for a given torch build, instruction set and intra-op thread count: the version's
manifest records them (`timings.train`, from `tasks.train.numerics`), the retrain runs at the recorded
thread count whatever this machine's cores, and a mismatch is reported with the difference that
explains it (another torch, another instruction set, a GPU, data-parallel training, a training
resumed on a worker with other numerics), or with none: then the inputs or the code differ.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tasks.common import (
    FreshrecError,
    Layout,
    day_str,
    intra_op_threads,
    link_or_copy,
    parse_day,
    setup_cli,
    sha256_file,
)
from tasks.params import load_params
from tasks.units import DVC_STAGE, TRAIN_FILE
from tasks.workspace import scratch_dir

LOG = logging.getLogger(__name__)
STAGE_FILES = ("dvc.yaml", "dvc.lock", "params.yaml")


def _inputs(day: dt.date, layout: Layout) -> list[str]:
    """What `train` reads for day D, as paths under a Layout root (see tasks/day.py): the days before D as
    their history unit (a few compacted files) and D's partition, not every partition again (every
    partition through D where the unit was never built, as tasks.history.load_events reads them then)."""
    from tasks.history import HISTORY_LINEAGE

    history = f"index/history/date={day_str(day)}"
    events = [history, f"raw/events/date={day_str(day)}"]
    return [
        *(events if (layout.root / history / HISTORY_LINEAGE).exists() else ["raw/events"]),
        "raw/items",
        "features",
        f"runs/date={day_str(day)}/champion",
        f"reports/drift/date={day_str(day)}/drift.json",
    ]


# One interpreter for a whole DVC job (init, config, add, commit, push; or init, pull): DVC's command line
# costs ~0.7 s of start-up a call, and a training's record took eight calls. DVC runs in a process of its own
# all the same, so its logging and its state never mix with the task's.
_DVC_JOB = """
import json, sys
from dvc.repo import Repo

job = json.loads(sys.argv[1])
try:
    repo = Repo.init(".", no_scm=True)
    with repo.config.edit() as conf:  # the repo's config is reloaded as the block ends
        conf["core"].update(analytics=False, check_update=False, remote="store")
        conf["remote"]["store"] = {"url": job["url"]}
    if job["endpoint"]:  # credentials stay in the environment (AWS_*), never in a file
        with repo.config.edit("local") as conf:
            conf["remote"]["store"] = {"endpointurl": job["endpoint"]}
    if job["add"]:
        repo.add(job["add"])
    if job["commit"]:
        repo.commit(job["commit"], force=True)  # the stage ran (in the train task): record it
    if job["push"]:
        repo.push()
    if job["pull"]:
        repo.pull(job["pull"])
except Exception as exc:  # DVC's own words, as its command line prints them, not a page of traceback
    sys.exit(f"{type(exc).__name__}: {exc}" + (f" ({exc.__cause__})" if exc.__cause__ else ""))
"""


def _dvc_job(work: Path, bucket: str, add=(), commit: str | None = None, push=False, pull=()) -> None:
    """A DVC workspace at `work` with the store's remote (`s3://<bucket>/dvc`), then the job, in one process."""
    from tasks.settings import settings

    job = {"url": f"s3://{bucket}/dvc", "endpoint": settings().s3_endpoint, "add": list(add), "commit": commit,
           "push": push, "pull": list(pull)}  # fmt: skip
    env = {**os.environ, "DVC_SITE_CACHE_DIR": str(work / ".dvc" / "site")}  # not /var/tmp/dvc: one dir a job, kept
    res = subprocess.run(
        [sys.executable, "-c", _DVC_JOB, json.dumps(job)], cwd=work, env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    if res.returncode != 0:
        steps = ", ".join(["init", *(k for k in ("add", "commit", "push", "pull") if job[k])])
        raise FreshrecError(f"dvc ({steps}) failed in {work}: {(res.stderr or res.stdout)[-1500:]}")


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dest, copy_function=link_or_copy)
    else:
        link_or_copy(src, dest)


def _bucket(params: dict) -> str:
    from tasks.s3 import bucket_name

    return bucket_name(params)


def version_training(day: dt.date, params: dict, layout: Layout) -> dict:
    """Record day D's training with DVC and push it; returns the stage files (also written to runs/D/dvc)."""
    with scratch_dir("dvc") as work:  # removed at the end, or by the next scratch's sweep if this is killed
        data = work / "data"
        inputs = _inputs(day, layout)
        for rel in inputs:
            src = layout.root / rel
            if rel in ("raw/items", "raw/events"):  # the snapshots / partitions through D the worker holds
                for part in sorted(src.glob("date=*")):
                    if part.name[5:] <= day_str(day):
                        _copy(part, data / rel / part.name)
            elif src.exists():
                _copy(src, data / rel)
        challenger = f"runs/date={day_str(day)}/challenger"
        _copy(layout.root / challenger, data / challenger)
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        tracked = [f"data/{rel}" for rel in inputs if (data / rel).exists()]
        stage = {
            "cmd": f"python -m tasks.train --date {day_str(day)}",
            "deps": tracked,
            "params": ["train", "features", "evaluate.holdout_fraction"],
            "outs": [f"data/{challenger}"],
        }
        (work / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": stage}}, sort_keys=False))
        _dvc_job(work, _bucket(params), add=tracked, commit="train", push=True)
        files = {name: (work / name).read_text() for name in STAGE_FILES}
        files |= {str(p.relative_to(work)): p.read_text() for p in sorted(data.rglob("*.dvc"))}
        out = DVC_STAGE.path(layout, day)
        shutil.rmtree(out, ignore_errors=True)
        for name, text in files.items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(text)
        LOG.info(
            "training of %s versioned with DVC: %d inputs, pushed to s3://%s/dvc", day, len(tracked), _bucket(params)
        )
        return files


def train_and_version(
    day: dt.date, params: dict, layout: Layout, mode: str | None = None, on_checkpoint=None, progress: bool = True
):
    """Train day D's challenger, then record the run with DVC: what the pipeline's train task runs."""
    from tasks import train

    if params["train"]["processes"] > 1:  # torchrun on this worker: DDP, one process per GPU
        res = train.run_distributed(day, params, layout, mode)
    else:
        res = train.run(day, params, layout, mode, progress=progress, on_checkpoint=on_checkpoint)
    version_training(day, params, layout)
    return res


def reproduce(version: str, params: dict, registry, keep: Path | None = None) -> dict:
    """Restore version V's training inputs through DVC, retrain, and compare with the version."""
    from tasks import train

    manifest = registry.manifest(version)
    files = (manifest.get("lineage") or {}).get("dvc")
    if not files:
        raise FreshrecError(f"version {version} carries no DVC lineage (it predates DVC-versioned training)")
    day = parse_day(manifest["lineage"]["day"])
    with contextlib.nullcontext(keep) if keep else scratch_dir("reproduce") as work:
        for name, text in files.items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_text(text)
        _dvc_job(work, _bucket(params), pull=sorted(n for n in files if n.endswith(".dvc")))
        run_params = yaml.safe_load((work / "params.yaml").read_text())
        layout = Layout(work / "data")
        shutil.rmtree(layout.run(day) / "challenger", ignore_errors=True)
        timing = (manifest.get("timings") or {}).get("train") or {}
        recorded_env = {k: timing.get(k) for k in ENVIRONMENT}
        with intra_op_threads(recorded_env["threads"]):  # a reduction's sums are split by thread
            result = train.run(day, run_params, layout, progress=False)
            reproduced_env = {**train.numerics(), "device": result.device}
        weights = layout.run(day) / "challenger" / "weights.safetensors"
        recorded = json.loads(_version_file(registry, version, TRAIN_FILE))
        new = json.loads((layout.run(day) / "challenger" / TRAIN_FILE).read_text())
        report = {
            "version": version,
            "day": day_str(day),
            "weights_sha256": {
                "recorded": manifest["files"]["weights.safetensors"]["sha256"],
                "reproduced": sha256_file(weights),
            },
            "metrics": {k: {"recorded": recorded.get(k), "reproduced": new.get(k)} for k in sorted(new)},
            "seconds": result.seconds,
            "environment": {"recorded": recorded_env, "reproduced": reproduced_env},
            "git_commit": manifest["lineage"].get("git_commit"),
        }
        report["match"] = report["weights_sha256"]["recorded"] == report["weights_sha256"]["reproduced"]
        report["differences"] = environment_differences(
            recorded_env, reproduced_env, run_params, timing.get("earlier_attempts", [])
        )
        return report


ENVIRONMENT = ("torch", "cpu_capability", "threads", "device")


def environment_differences(
    recorded: dict, reproduced: dict, run_params: dict, earlier_attempts: list[dict] | None = None
) -> list[str]:
    """Why a retrain may round differently from the version, beyond its inputs and code: each a sentence."""
    out = [
        f"the training was resumed from a checkpoint made at {a.get('threads')} threads, {a.get('cpu_capability')}, "
        f"torch {a.get('torch')}: its bits mix two machines' rounding, which one retrain does not repeat"
        for a in earlier_attempts or []
    ]
    if recorded["threads"] is None:
        out.append(
            "the version does not record its training machine's numerics (it predates the record), so the retrain "
            "ran at this machine's thread count: a mismatch may be the machine"
        )
    if any(str(env["device"]).startswith("cuda") for env in (recorded, reproduced)):
        out.append(
            f"trained on {recorded['device']}, retrained on {reproduced['device']}: GPU kernels are not deterministic"
        )
    for key, what in (("torch", "torch"), ("cpu_capability", "CPU instruction set"), ("threads", "intra-op threads")):
        if recorded[key] is not None and recorded[key] != reproduced[key]:
            out.append(f"{what} {recorded[key]} when trained, {reproduced[key]} here: kernels round differently")
    processes = run_params["train"].get("processes", 1)
    if processes > 1:
        out.append(
            f"trained data-parallel over {processes} processes, retrained in one: "
            "the gradients are summed in another order"
        )
    return out


def _version_file(registry, version: str, name: str) -> str:
    with scratch_dir("version-file") as scratch:
        registry.download(version, scratch / "v", [name])
        return (scratch / "v" / name).read_text()


def format_report(r: dict) -> str:
    lines = [f"{'':<16} {'recorded':<24} reproduced"]
    sha = r["weights_sha256"]
    lines.append(f"{'weights sha256':<16} {sha['recorded'][:20] + '…':<24} {sha['reproduced'][:20]}…")
    lines += [f"{k:<16} {v['recorded']!s:<24} {v['reproduced']}" for k, v in r["metrics"].items()]
    env = r["environment"]
    lines += [  # train.json already holds the device
        f"{k:<16} {env['recorded'][k]!s:<24} {env['reproduced'][k]}" for k in ENVIRONMENT if k not in r["metrics"]
    ]
    lines.append(
        f"weights sha256 {'match' if r['match'] else 'mismatch'} ({r['version']}, retrained in {r['seconds']:.1f} s)"
    )
    if not r["match"]:
        lines += [f"  expected: {d}" for d in r["differences"]] or [
            "  the same torch, instruction set, threads and device: the inputs or the code differ from the "
            f"version's (it was trained at commit {r['git_commit']})"
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from tasks.registry import registry_from_env

    setup_cli(logging.WARNING)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["reproduce"])
    ap.add_argument("--version", required=True, help="a version id, or `champion` for the live one")
    ap.add_argument("--params", default=None)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    registry = registry_from_env(params)
    version = args.version
    if version == "champion":
        pointer, _ = registry.pointer()
        if pointer is None:
            raise FreshrecError("there is no champion yet")
        version = pointer["version"]
    report = reproduce(version, params, registry)
    print(format_report(report))
    sys.exit(0 if report["match"] else 1)


if __name__ == "__main__":
    main()
