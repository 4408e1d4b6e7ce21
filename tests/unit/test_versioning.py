"""`make reproduce` on a mismatch says what explains it: another torch, instruction set, GPU or
data-parallel training, a version older than the record, or nothing (then the inputs or the code differ)."""

from __future__ import annotations

from tasks.versioning import environment_differences, format_report

CPU = {"torch": "2.13.0+cpu", "cpu_capability": "AVX512", "threads": 2, "device": "cpu"}
ONE_PROCESS = {"train": {"processes": 1}}


def _report(recorded: dict, reproduced: dict, run_params: dict = ONE_PROCESS, match: bool = False, earlier=()) -> dict:
    return {
        "version": "1998-03-03-2b34f058",
        "weights_sha256": {"recorded": "a" * 64, "reproduced": ("a" if match else "b") * 64},
        "metrics": {"final_loss": {"recorded": 7.1, "reproduced": 7.1}},
        "seconds": 3.2,
        "environment": {"recorded": recorded, "reproduced": reproduced},
        "git_commit": "4353f13",
        "match": match,
        "differences": environment_differences(recorded, reproduced, run_params, earlier),
    }


def test_the_same_machine_numerics_leave_the_inputs_or_the_code_to_blame():
    out = format_report(_report(CPU, dict(CPU)))
    assert "weights sha256 mismatch" in out
    assert "the inputs or the code differ from the version's (it was trained at commit 4353f13)" in out
    assert "expected:" not in out


def test_a_match_prints_no_explanation_and_each_field_once():
    report = _report(CPU, {**CPU, "cpu_capability": "AVX2"}, match=True)
    report["metrics"]["device"] = {"recorded": "cpu", "reproduced": "cpu"}  # train.json's own field
    out = format_report(report)
    assert "weights sha256 match" in out and "expected:" not in out and "differ" not in out
    assert [line.split()[0] for line in out.splitlines()].count("device") == 1
    assert "cpu_capability   AVX512                   AVX2" in out


def test_each_machine_difference_is_named():
    cases = {
        "CPU instruction set AVX512 when trained, AVX2 here": {**CPU, "cpu_capability": "AVX2"},
        "torch 2.13.0+cpu when trained, 2.14.0+cpu here": {**CPU, "torch": "2.14.0+cpu"},
        "intra-op threads 2 when trained, 4 here: kernels round differently": {**CPU, "threads": 4},
        "trained on cpu, retrained on cuda:0: GPU kernels are not deterministic": {**CPU, "device": "cuda:0"},
    }
    for sentence, here in cases.items():
        out = format_report(_report(CPU, here))
        assert f"  expected: {sentence}" in out, out
        assert "the inputs or the code differ" not in out
    resumed = format_report(_report(CPU, dict(CPU), earlier=[{**CPU, "threads": 8}]))
    assert "expected: the training was resumed from a checkpoint made at 8 threads, AVX512" in resumed
    ddp = format_report(_report(CPU, dict(CPU), {"train": {"processes": 2}}))
    assert "expected: trained data-parallel over 2 processes, retrained in one" in ddp


def test_a_version_from_before_the_record_says_the_machine_may_explain_it():
    legacy = {"torch": None, "cpu_capability": None, "threads": None, "device": "cpu"}  # timing.json had device only
    out = format_report(_report(legacy, dict(CPU)))
    assert "expected: the version does not record its training machine's numerics" in out
    assert "threads          None" in out
