"""dvc.yaml says what each stage really depends on: every project module its command imports
(directly or through other project modules, at any depth) is a dep, and every params.yaml key its
module reads is a declared param. Otherwise `dvc repro` skips a stage whose inputs changed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
SECTIONS = set(yaml.safe_load((ROOT / "params.yaml").read_text()))


def _module_file(name: str) -> Path | None:
    path = ROOT / (name.replace(".", "/") + ".py")
    return path if path.exists() else None


def _project_imports(path: Path) -> set[Path]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {f for n in names if n.split(".")[0] in ("tasks", "models") and (f := _module_file(n))}
    return found


def _closure(path: Path) -> set[Path]:
    seen, todo = {path}, [path]
    while todo:
        for dep in _project_imports(todo.pop()) - seen:
            seen.add(dep)
            todo.append(dep)
    return {p for p in seen if p.name != "__init__.py"}


def _stage_module(stage: dict) -> Path:
    return _module_file(re.search(r"python -m (tasks\.\w+)", stage["cmd"]).group(1))


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_declares_every_module_it_imports(name):
    stage = STAGES[name]
    deps = set(stage.get("deps", []))
    missing = sorted(
        str(p.relative_to(ROOT)) for p in _closure(_stage_module(stage)) if str(p.relative_to(ROOT)) not in deps
    )
    assert not missing, f"stage {name} imports {missing} but dvc.yaml does not list them as deps"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_declares_every_params_key_its_module_reads(name):
    stage = STAGES[name]
    declared = set(stage.get("params", []))
    text = _stage_module(stage).read_text()
    reads = {(a, b) for a, b in re.findall(r'params\["(\w+)"\](?:\["(\w+)"\])?', text) if a in SECTIONS}
    missing = sorted(f"{a}.{b}" if b else a for a, b in reads if a not in declared and f"{a}.{b}" not in declared)
    assert not missing, f"stage {name} reads params {missing} that dvc.yaml does not declare"


def test_a_dvc_job_that_fails_says_why_in_dvcs_words_and_leaves_no_site_cache(tmp_path, monkeypatch):
    """The training record's DVC job (tasks/versioning.py) runs in one process through DVC's API: a failure
    is DVC's message, not a page of traceback, and the job's site cache goes with its scratch workspace
    (DVC's default, /var/tmp/dvc, kept a folder for every workspace ever made)."""
    from tasks.common import FreshrecError
    from tasks.versioning import _dvc_job

    site = tmp_path / "default-site-cache"
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(site))  # where DVC would leave it, were the job not to say
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(FreshrecError, match=r"(?s)dvc \(init, pull\) failed .*\w+Error: .*missing\.dvc") as err:
        _dvc_job(work, "some-bucket", pull=["missing.dvc"])
    assert "Traceback" not in str(err.value) and len(str(err.value)) < 800
    assert (work / ".dvc" / "config").exists() and not site.exists()
