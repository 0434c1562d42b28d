import math

import numpy as np
import pytest

from evaluation.metrics import (
    METRICS,
    MetricSummary,
    PairedResult,
    bootstrap_ci,
    paired_test,
    summarize,
    target_rank,
    user_metrics,
)


def test_target_rank_found_absent_and_failed():
    assert target_rank([7, 3, 9], 3) == 2
    assert target_rank([7, 3, 9], 7) == 1
    assert target_rank([7, 3, 9], 4) == 0
    assert target_rank(None, 3) == 0
    assert target_rank([], 3) == 0


def test_target_rank_matches_string_and_int_ids_and_first_occurrence():
    assert target_rank(["a", "b", "c"], "c") == 3
    assert target_rank(["10", "5"], 5) == 2
    assert target_rank([np.int64(4), 2], 4) == 1
    assert target_rank([1, 2, 1], 1) == 1


def test_user_metrics_hand_computed():
    m = user_metrics(np.array([1, 2, 0, 4]))
    assert tuple(m) == METRICS
    assert m["H@1"].mean() == pytest.approx(0.25)
    assert m["H@3"].mean() == pytest.approx(0.5)
    assert m["H@5"].mean() == pytest.approx(0.75)
    assert m["N@3"].mean() == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert m["N@5"].mean() == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5)) / 4)
    assert m["MRR"].mean() == pytest.approx((1 + 0.5 + 0 + 0.25) / 4)


def test_user_metrics_per_user_values():
    m = user_metrics([3, 6, 0])
    np.testing.assert_allclose(m["H@1"], [0, 0, 0])
    np.testing.assert_allclose(m["H@3"], [1, 0, 0])
    np.testing.assert_allclose(m["H@5"], [1, 0, 0])
    np.testing.assert_allclose(m["N@3"], [0.5, 0, 0])  # 1/log2(4)
    np.testing.assert_allclose(m["N@5"], [0.5, 0, 0])
    np.testing.assert_allclose(m["MRR"], [1 / 3, 1 / 6, 0])


@pytest.mark.parametrize("bad", [[-1, 2], [1.5, 2], [[1, 2]]])
def test_user_metrics_rejects_bad_ranks(bad):
    with pytest.raises(ValueError, match="ranks"):
        user_metrics(np.array(bad))


def test_bootstrap_interval_contains_mean_and_shrinks_with_more_data():
    rng = np.random.default_rng(1)
    small = (rng.random(50) < 0.3).astype(float)
    large = (rng.random(5000) < 0.3).astype(float)
    s = bootstrap_ci(small, n_boot=1000, seed=0)
    big = bootstrap_ci(large, n_boot=1000, seed=0)
    assert s.lo <= s.mean <= s.hi
    assert big.lo <= big.mean <= big.hi
    assert s.mean == pytest.approx(small.mean())
    assert (big.hi - big.lo) < (s.hi - s.lo) / 4
    assert big.lo < 0.3 < big.hi


def test_bootstrap_constant_values_give_zero_width_interval():
    summary = bootstrap_ci(np.full(20, 0.5))
    assert summary == MetricSummary(mean=0.5, lo=0.5, hi=0.5)


def test_bootstrap_is_deterministic_for_a_seed_and_rejects_bad_input():
    values = np.arange(30, dtype=float)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(values, level=1.5)


def test_bootstrap_chunking_matches_many_resamples(monkeypatch):
    import evaluation.metrics as metrics

    values = np.random.default_rng(0).random(100)
    whole = bootstrap_ci(values, n_boot=500, seed=7)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 1000)  # 10 resamples per chunk
    chunked = bootstrap_ci(values, n_boot=500, seed=7)
    assert chunked.lo <= chunked.mean <= chunked.hi
    assert chunked.hi - chunked.lo == pytest.approx(whole.hi - whole.lo, rel=0.3)


def test_summarize_reports_every_metric_and_serialises():
    out = summarize(np.array([1, 2, 0, 4]), n_boot=200)
    assert tuple(out) == METRICS
    assert out["H@1"].mean == pytest.approx(0.25)
    assert out["MRR"].mean == pytest.approx(0.4375)
    for summary in out.values():
        assert 0.0 <= summary.lo <= summary.mean <= summary.hi <= 1.0
    assert MetricSummary.model_validate_json(out["H@3"].model_dump_json()) == out["H@3"]


def test_paired_test_detects_a_clear_difference():
    rng = np.random.default_rng(0)
    a = (rng.random(400) < 0.6).astype(float)
    b = (rng.random(400) < 0.2).astype(float)
    result = paired_test(a, b, n_perm=2000)
    assert isinstance(result, PairedResult)
    assert result.mean_diff == pytest.approx(a.mean() - b.mean())
    assert result.lo <= result.mean_diff <= result.hi
    assert result.lo > 0
    assert result.p_value < 0.01


def test_paired_test_identical_methods_is_not_significant():
    a = (np.random.default_rng(0).random(200) < 0.4).astype(float)
    result = paired_test(a, a.copy(), n_perm=2000)
    assert result.mean_diff == 0.0
    assert result.lo == 0.0 and result.hi == 0.0
    assert result.p_value == pytest.approx(1.0)


def test_paired_test_noise_only_difference_has_large_p():
    rng = np.random.default_rng(5)
    a = (rng.random(300) < 0.4).astype(float)
    b = (rng.random(300) < 0.4).astype(float)
    result = paired_test(a, b, n_perm=2000)
    # Same distribution (seeded): the interval covers zero and the p-value is not small.
    assert result.lo <= 0 <= result.hi
    assert result.p_value > 0.05
    assert paired_test(a, b, n_perm=2000) == result


def test_paired_test_rejects_different_lengths():
    with pytest.raises(ValueError, match="same users"):
        paired_test(np.ones(3), np.ones(4))
