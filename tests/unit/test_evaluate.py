"""Ranking metrics and the quality gate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.evaluate import gate, metrics_from_ranks


def test_metrics_from_ranks():
    """HR@10 counts ranks <= 10; NDCG@10 = 1/log2(rank+1); unknown items (inf) are misses."""
    m = metrics_from_ranks(np.array([1, 3, 11, np.inf]), 10)
    assert m["n"] == 4
    assert m["hr@10"] == 0.5
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 4, abs=1e-5)
    assert math.isnan(metrics_from_ranks(np.array([]), 10)["ndcg@10"])


def _m(v):
    return {"all": {"ndcg@10": v}}


def test_gate():
    assert gate(_m(0.10), _m(0.09), 10, max_drop=0.02, min_ndcg=0.01)["passed"]
    assert not gate(_m(0.10), _m(0.07), 10, max_drop=0.02, min_ndcg=0.01)["passed"]
    assert gate(None, _m(0.05), 10, max_drop=0.02, min_ndcg=0.01)["passed"]
    assert not gate(None, _m(0.005), 10, max_drop=0.02, min_ndcg=0.01)["passed"]
    assert not gate(_m(0.1), _m(float("nan")), 10, max_drop=0.02, min_ndcg=0.01)["passed"]
