"""Ranking metrics and the quality gate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.seqrec import SeqRecConfig, SeqRecModel
from tasks.evaluate import EXCLUDE, Holdout, gate, metrics_from_ranks, ranks_by_exclusion, target_ranks


def test_metrics_from_ranks():
    """HR@10 counts ranks <= 10; NDCG@10 = 1/log2(rank+1); unknown items (inf) are misses."""
    m = metrics_from_ranks(np.array([1, 3, 11, np.inf]), 10)
    assert m["n"] == 4
    assert m["hr@10"] == 0.5
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 4, abs=1e-5)
    assert math.isnan(metrics_from_ranks(np.array([]), 10)["ndcg@10"])


def test_target_ranks_full_ranking_and_seen_excluded():
    """Full ranking counts every better-scored item; exclude="history" skips the user's whole history
    (beyond the model's window too), "window" only the items in the model's window; never the target,
    and never other users' items."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = SeqRecModel(SeqRecConfig(n_items=31, max_len=4, hidden_size=8, num_layers=1, num_heads=1)).eval()
    items = [f"i{k}" for k in range(1, 31)]
    history = [f"i{k}" for k in range(1, 21)]  # 20 items: 16 of them outside the 4-slot window
    hold = Holdout([history] * 3, ["i25", "i3", "i19"], np.array(["u"] * 3), np.zeros(3, bool), np.zeros(3, bool))
    scores = model.last_scores(torch.tensor([[17, 18, 19, 20]]))[0]
    full = target_ranks(model, items, hold)
    seen = target_ranks(model, items, hold, exclude="history")
    window = target_ranks(model, items, hold, exclude="window")
    assert window[2] == np.inf  # a repeat of an item in the window: the served graph never recommends it
    for rank_all, rank_unseen, rank_window, t in zip(full[:2], seen[:2], window[:2], (25, 3), strict=True):
        better = (scores[1:] > scores[t]).nonzero().flatten() + 1  # item indices scored above the target
        assert rank_all == 1 + len(better)
        assert rank_unseen == 1 + sum(1 for b in better.tolist() if b > 20 or b == t)  # unseen items only
        assert rank_window == 1 + sum(1 for b in better.tolist() if not 17 <= b <= 20 or b == t)  # not in the window
    assert (seen <= window)[:2].all() and (window <= full)[:2].all()
    with pytest.raises(ValueError, match="exclude='seen': use one of nothing, history, window"):
        target_ranks(model, items, hold, exclude="seen")


def test_one_pass_ranks_every_exclusion_as_its_own_pass_would():
    """ranks_by_exclusion scores the holdout once for several exclusions; a user who rated an item twice
    (i2 below) loses it once from the better-scored count, as a one-exclusion pass does."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    model = SeqRecModel(SeqRecConfig(n_items=31, max_len=4, hidden_size=8, num_layers=1, num_heads=1)).eval()
    items = [f"i{k}" for k in range(1, 31)]
    histories = [["i2", "i5", "i2", "i7", "i9", "i2"], [f"i{k}" for k in range(1, 21)], []]
    hold = Holdout(histories, ["i11", "i30", "i4"], np.array(["a", "b", "c"]), np.zeros(3, bool), np.zeros(3, bool))
    together = ranks_by_exclusion(model, items, hold, EXCLUDE)
    for exclude in EXCLUDE:
        np.testing.assert_array_equal(together[exclude], target_ranks(model, items, hold, exclude=exclude))
    for u, (history, target) in enumerate(zip(histories, hold.targets, strict=True)):  # brute force, per user
        ids, t = [int(i[1:]) for i in history], int(target[1:])
        window = ids[-4:]
        row = model.last_scores(torch.tensor([[0] * (4 - len(window)) + window]))[0]
        above = {i for i in range(1, 31) if i != t and row[i] > row[t]}
        assert together["nothing"][u] == 1 + len(above)
        assert together["history"][u] == 1 + len(above - set(ids))
        assert together["window"][u] == (np.inf if t in window else 1 + len(above - set(window)))
    scores = model.last_scores(torch.tensor([[2, 7, 9, 2]]))[0]  # the first user's 4-slot window
    better = set(((scores[1:] > scores[11]).nonzero().flatten() + 1).tolist())
    assert together["history"][0] == 1 + len(better - {2, 5, 7, 9})  # i2 counted once although rated thrice
    assert together["window"][0] == 1 + len(better - {2, 7, 9})


GATE = {"max_ndcg_drop": 0.1, "gate_confidence": 0.9, "bootstrap_draws": 2000, "min_ndcg": 0.01}


def test_gate_blocks_a_credible_regression_and_not_noise():
    rng = np.random.default_rng(0)
    users = np.repeat([f"u{i}" for i in range(60)], 5)
    champion = rng.uniform(0.2, 0.6, len(users))
    assert gate(champion, champion * 0.97, users, GATE)["passed"]  # inside the tolerance
    worse = gate(champion, champion * 0.5, users, GATE)  # every user worse: certain
    assert not worse["passed"]
    assert worse["p_worse"] == 1.0
    # a big drop carried by one user out of three, others better: cannot tell it from noise
    few = np.repeat(["a", "b", "c"], 4)
    champ = np.array([1.0] * 4 + [0.1] * 8)
    chall = np.array([0.0] * 4 + [0.2] * 8)
    noisy = gate(champ, chall, few, GATE)
    assert noisy["relative_drop"] > 0.1
    assert noisy["passed"]
    assert "not distinguishable" in noisy["reason"]


def test_gate_for_a_first_champion_and_an_empty_holdout():
    assert gate(None, np.array([0.05, 0.1]), np.array(["a", "b"]), GATE)["passed"]
    assert not gate(None, np.array([0.0, 0.01]), np.array(["a", "b"]), GATE)["passed"]
    assert not gate(np.array([]), np.array([]), np.array([]), GATE)["passed"]
