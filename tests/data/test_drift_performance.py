"""The performance-drift signal compares the champion with its own evaluation on one protocol."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import torch

from models.seqrec import SeqRecConfig, SeqRecModel
from tasks.drift import champion_performance
from tasks.evaluate import build_holdout, score_model
from tasks.history import sequences, windows
from tasks.params import load_params
from tasks.sources import load_dataset
from tasks.train import Recipe, fit
from tasks.units import MODEL_ITEMS_FILE


@pytest.mark.slow  # trains a model on real ML-100K (about 20 s)
def test_champion_is_scored_the_way_its_baseline_was_ranked(tmp_path):
    """A baseline ranked as served (the input window left out: `export.exclude_seen`) is compared with
    a score ranked the same way, so the same model on the same holdout shows no drop; an evaluation
    from before `excluded` was recorded is compared with an unfiltered score."""
    events = load_dataset("ml-100k").events
    day = dt.date(1998, 3, 3)
    events = events[events["event_ts"] < "1998-03-04"]
    params = load_params()
    params["evaluate"]["holdout_fraction"] = 1.0  # every event of the day: enough hits to tell protocols apart
    items = sorted(events["item_id"].unique())
    max_len = params["train"]["max_len"]
    torch.manual_seed(0)
    model = SeqRecModel(SeqRecConfig(n_items=len(items) + 1, max_len=max_len, hidden_size=16, num_layers=1,
                                     num_heads=1))  # fmt: skip
    index = {item: i + 1 for i, item in enumerate(items)}
    before = events[events["event_ts"] < "1998-03-03"]
    examples = [w for s in sequences(before, index).values() for w in windows(s, max_len, all_chunks=True)]
    fit(model, examples, Recipe(2, 128, 3e-3), 0, torch.device("cpu"), progress=False)  # a little skill
    model.save(tmp_path)
    (tmp_path / MODEL_ITEMS_FILE).write_text(json.dumps(items))
    holdout = build_holdout(events, day, params["evaluate"]["holdout_fraction"], params["train"]["max_len"])
    served, unfiltered = (score_model(tmp_path, holdout, 10, e)["all"] for e in ("window", "nothing"))
    assert served["ndcg@10"] > unfiltered["ndcg@10"]  # the two protocols differ for this model
    for recorded, figures in (({"excluded": "window"}, served), ({}, unfiltered)):
        (tmp_path / "metrics.json").write_text(json.dumps({**recorded, "challenger": {"all": figures}}))
        perf = champion_performance(events, day, tmp_path, params)
        assert perf["ndcg@10"] == perf["baseline_ndcg@10"] == figures["ndcg@10"]
        assert perf["relative_drop"] == 0.0 and perf["excluded"] == recorded.get("excluded", "nothing")
    assert champion_performance(events, day, tmp_path, params, scored=False)["ndcg@10"] is None
