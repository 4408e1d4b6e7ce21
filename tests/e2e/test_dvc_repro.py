"""`dvc repro` on a laptop: a temporary clone runs the day's pipeline with real DVC, bootstraps a
champion when there is none, records every stage in dvc.lock, promotes from the command line with
that lineage, pushes to the DVC remote on the same S3 server, and a second repro is a no-op."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import DAY1, ROOT, tiny_params

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _sh(cmd: list[str], cwd: Path, env: dict) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    return res.stdout


@pytest.fixture
def clone(tmp_path):
    """The checkout's files (tracked and untracked-but-not-ignored) in a fresh git repo."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    repo = tmp_path / "repo"
    for f in files:
        if (ROOT / f).is_file():
            (repo / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, repo / f)
    params = tiny_params(tmp_path)
    params["source"]["landing_dir"] = "data/landing"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "clone"],
    ):
        subprocess.run(cmd, cwd=repo, check=True)
    return repo


def test_dvc_repro_runs_the_day_and_promotes_with_lineage(clone, s3_env, registry):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FRESHREC_") or k in ("FRESHREC_S3_ENDPOINT", "FRESHREC_BUCKET")
    }
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    dvc = [sys.executable, "-m", "dvc"]
    _sh([*dvc, "remote", "modify", "--local", "s3", "endpointurl", env["FRESHREC_S3_ENDPOINT"]], clone, env)
    _sh([*dvc, "remote", "modify", "--local", "s3", "url", f"s3://{env['FRESHREC_BUCKET']}/dvc"], clone, env)

    out = _sh([*dvc, "repro"], clone, env)
    for stage in ("replay", "ingest", "validate", "pull_champion", "drift", "train", "evaluate", "export", "benchmark"):
        assert f"Running stage '{stage}'" in out
    run = clone / "data" / "runs" / f"date={DAY1}"
    assert json.loads((clone / "data/reports/drift" / f"date={DAY1}" / "drift.json").read_text())["decision"] == "full"
    assert (run / "onnx" / "model.int8.onnx").exists()
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    assert f"data/runs/date={DAY1}/challenger" in [o["path"] for o in lock["stages"]["train"]["outs"]]

    _sh([sys.executable, "-m", "tasks.promote", "promote", "--workspace", "--approver", "laptop-user"], clone, env)
    pointer, _ = registry.pointer()
    assert pointer["version"].startswith(DAY1)
    assert pointer["approver"] == "laptop-user"
    lineage = registry.manifest(pointer["version"])["lineage"]
    assert lineage["dvc_lock"]["train"]["outs"][f"data/runs/date={DAY1}/challenger"]

    _sh([*dvc, "push"], clone, env)
    assert registry.s3.list_objects_v2(Bucket=registry.bucket, Prefix="dvc/")["KeyCount"] > 0

    again = _sh([*dvc, "repro"], clone, env)
    assert "Running stage 'train'" not in again  # nothing changed: nothing retrained
