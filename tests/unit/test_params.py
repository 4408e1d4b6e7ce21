"""params.yaml as one typed model (tasks/params.py) and the day's params snapshot (tasks/day.py): a typo'd
key, a bad enum, a wrong type or an impossible day is refused at load with the key's path and the reason;
the repository's params.yaml is valid and complete; a day keeps the params its first task took, and only
the `refresh_params` Param replaces them, on record."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from tasks.common import ROOT_PARAMS, FreshrecError, Layout
from tasks.day import day_params, snapshot_params
from tasks.params import digest, load_params, resolve
from tasks.store import MissingInput, Store

D = dt.date(1998, 3, 1)


def _raw() -> dict:
    return yaml.safe_load(ROOT_PARAMS.read_text())


def test_the_repositorys_params_are_valid_and_their_defaults_agree_with_the_model():
    """Every key params.yaml spells out equals what the model would give without it, or is a deliberate
    choice listed here; so removing a key from params.yaml never changes what trains."""
    raw, resolved = _raw(), load_params(ROOT_PARAMS)
    assert resolve(raw) == resolved
    required = {"run.date", "source.warmup_end", "train.full.epochs", "train.full.batch_size", "train.full.lr",
                "train.incremental.epochs", "train.incremental.batch_size", "train.incremental.lr"}  # fmt: skip

    def leaves(d, prefix=""):
        for k, v in d.items():
            yield from leaves(v, f"{prefix}{k}.") if isinstance(v, dict) and k != "policy" else [(f"{prefix}{k}", v)]

    for key, value in leaves(raw):
        if key in required:
            continue
        trimmed = _raw()
        *parents, last = key.split(".")
        node = trimmed
        for p in parents:
            node = node[p]
        del node[last]
        got = resolve(trimmed)
        for p in [*parents, last]:
            got = got[p]
        assert got == value, f"{key}: params.yaml says {value!r}, the model's default is {got!r}"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p["train"]["incremental"].update(chunk="all"), r"train\.incremental\.chunk: unknown key"),
        (lambda p: p["train"].update(block="gpt3"), r"train\.block: Input should be 'gpt2' or 'ligr'"),
        (lambda p: p["train"]["incremental"].update(trainable="some"), r"train\.incremental\.trainable"),
        (lambda p: p["validate"]["policy"].update(row_count="maybe"), r"validate\.policy\.row_count"),
        (lambda p: p["evaluate"].update(k="ten"), r"evaluate\.k: Input should be a valid integer"),
        (lambda p: p["source"].update(warmup_end="1998-02-30"), r"source\.warmup_end: .*1998-02-30"),
        (lambda p: p.update(trian={}), r"trian: unknown key"),
        (lambda p: p["run"].pop("date"), r"run\.date: required key is missing"),
    ],
)
def test_a_bad_params_file_is_refused_at_load_with_the_key_and_the_reason(tmp_path, edit, message):
    raw = _raw()
    edit(raw)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(FreshrecError, match=message):
        load_params(tmp_path / "params.yaml")


def test_the_day_keeps_the_params_its_first_task_took(s3_env, params, tmp_path, caplog):
    store = Store.from_env(params)
    with pytest.raises(MissingInput, match="wait_for_landing"):
        day_params(D, Layout(tmp_path / "a"), store)
    assert snapshot_params(D, params, Layout(tmp_path / "first"), store) == params
    edited = resolve({**params, "train": {**params["train"], "seed": 7}})
    # a re-run of the first task after params.yaml changed, and every later task: the snapshot
    assert snapshot_params(D, edited, Layout(tmp_path / "again"), store) == params
    assert "keeps its snapshot" in caplog.text
    assert day_params(D, Layout(tmp_path / "b"), store) == params

    assert snapshot_params(D, edited, Layout(tmp_path / "refresh"), store, refresh=True, by="run r2") == edited
    assert day_params(D, Layout(tmp_path / "c"), store) == edited
    record = store.read(f"runs/date={D}/params.json")
    import json

    change = json.loads(record)["changes"]
    assert change == [{"from": digest(params), "to": digest(edited), "by": "run r2", "keys": ["train.seed"]}]
