"""Drift measures and the decision policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.drift import decide, popularity_js, psi

THRESHOLDS = {
    "min_events": 20, "js_popularity": 0.1, "js_popularity_full": 0.3, "new_item_share": 0.05,
    "new_item_share_full": 0.5, "psi_moderate": 0.1, "psi_significant": 0.2,
    "ndcg_drop_full": 0.5, "perf_min_users": 30, "wasserstein": 0.1, "js_categorical": 0.1,
    "representation_p": 0.01,
}  # fmt: skip
CALM = {
    "events": 500, "users": 40, "user_days": 40, "js_item_popularity": 0.5, "js_item_popularity_null": 0.5,
    "js_item_popularity_excess": 0.0, "js_item_popularity_drifted": False, "new_item_share": 0.0,
    "psi_rating": 0.01, "psi_rating_excess": 0.0, "psi_rating_drifted": False,
    "psi_events_per_user": 0.01, "psi_events_per_user_excess": 0.0, "psi_events_per_user_drifted": False,
}  # fmt: skip


def test_psi_is_zero_for_identical_and_large_for_shifted():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 5000)
    assert psi(ref, ref) == pytest.approx(0, abs=1e-9)
    assert psi(ref, rng.normal(0, 1, 5000)) < 0.02
    assert psi(ref, rng.normal(1.5, 1, 5000)) > 0.2


def test_histogram_wasserstein_equals_scipy():
    """The fast discrete Wasserstein used for the no-drift baselines is scipy's, normed by the reference std."""
    from scipy.stats import wasserstein_distance

    from tasks.drift import _count_hist, _hist_wasserstein

    rng = np.random.default_rng(0)
    ref, cur = rng.integers(1, 50, 3000).astype(float), rng.integers(5, 80, 500).astype(float)
    expected = wasserstein_distance(ref, cur) / np.std(ref)
    assert _hist_wasserstein(*_count_hist(ref, cur)) == pytest.approx(expected, rel=1e-9)


def test_popularity_js_is_calibrated_against_sampling_noise():
    """A small same-distribution sample has a large raw JS but ~zero excess; a real shift does not."""
    rng = np.random.default_rng(1)
    items = np.array([f"i{i}" for i in range(1000)])
    weights = 1 / np.arange(1, 1001)
    weights /= weights.sum()
    ref = pd.Series(rng.choice(items, 20000, p=weights)).value_counts()
    same = popularity_js(ref, pd.Series(rng.choice(items, 200, p=weights)).value_counts())
    shifted = popularity_js(ref, pd.Series(rng.choice(items[500:], 200)).value_counts())
    assert same["js"] > 0.3 and abs(same["excess"]) < 0.05
    assert shifted["excess"] > 0.3


def test_decision_policy():
    assert decide(CALM, THRESHOLDS, champion=False, ndcg_drop=None)[0] == "full"
    assert decide({**CALM, "events": 5}, THRESHOLDS, champion=True, ndcg_drop=None)[0] == "skip"
    assert decide(CALM, THRESHOLDS, champion=True, ndcg_drop=0.1)[0] == "incremental"
    assert decide({**CALM, "js_item_popularity_excess": 0.4}, THRESHOLDS, True, None)[0] == "full"
    assert decide({**CALM, "new_item_share": 0.6}, THRESHOLDS, True, None)[0] == "full"
    assert decide(CALM, THRESHOLDS, champion=True, ndcg_drop=0.6)[0] == "full"
    decision, reasons = decide({**CALM, "users": 9}, THRESHOLDS, champion=True, ndcg_drop=0.6)
    assert decision == "incremental"  # a 9-user holdout is too noisy to act on
    assert "not acted on" in reasons[0]
    shifted = {**CALM, "psi_rating": 0.35, "psi_rating_excess": 0.3, "psi_rating_drifted": True}
    decision, reasons = decide(shifted, THRESHOLDS, True, None)
    assert decision == "incremental"
    assert reasons[0].startswith("psi_rating") and "significant" in reasons[0]
    # a large raw PSI that sampling noise explains (no excess over its baseline) does not fire
    calm = decide({**CALM, "psi_rating": 0.5, "psi_rating_drifted": False}, THRESHOLDS, True, None)
    assert calm[1] == ["no significant drift: fine-tune on the new day to stay fresh"]
