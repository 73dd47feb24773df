import numpy as np
import pytest
import torch

from bench.quality.statistics import (Moments, extrapolate_to_infinity, frechet_at_infinity,
                                      frechet_distance, infinity_counts,
                                      sqrtm_frechet_distance)


def gaussian_stats(rng, dim, count, scale=1.0, shift=0.0):
    mixing = np.eye(dim) + 0.3 * rng.standard_normal((dim, dim))
    samples = rng.standard_normal((count, dim)) @ mixing * scale + shift
    return {"mu": samples.mean(0), "sigma": np.cov(samples, rowvar=False)}


@pytest.mark.parametrize("batch", [1, 7, 100])
def test_streamed_moments_equal_numpy_mean_and_covariance(batch):
    features = np.random.default_rng(0).standard_normal((300, 16)) * 5 + 100
    moments = Moments(16)
    for start in range(0, 300, batch):
        moments.update(torch.from_numpy(features[start:start + batch]))
    stats = moments.stats()
    np.testing.assert_allclose(stats["mu"], features.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats["sigma"], np.cov(features, rowvar=False), rtol=1e-9, atol=1e-9)


def test_merged_moments_equal_moments_of_the_union():
    features = np.random.default_rng(1).standard_normal((90, 5))
    left, right = Moments(5).update(features[:40]), Moments(5).update(features[40:])
    whole = Moments(5).update(features)
    merged = left.copy().merge(right)
    np.testing.assert_allclose(merged.stats()["sigma"], whole.stats()["sigma"], rtol=1e-12)


@pytest.mark.parametrize("count_1, count_2", [(2000, 2000), (100, 2000), (2000, 100), (60, 80)],
                         ids=["both-full-rank", "first-singular", "second-singular", "both-singular"])
def test_fast_frechet_distance_agrees_with_sqrtm(count_1, count_2):
    rng = np.random.default_rng(2)
    first = gaussian_stats(rng, 128, count_1)
    second = gaussian_stats(rng, 128, count_2, scale=1.3, shift=0.2)
    expected = sqrtm_frechet_distance(first, second)
    assert frechet_distance(first, second) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_of_identical_gaussians_is_zero():
    stats = gaussian_stats(np.random.default_rng(3), 64, 1000)
    assert abs(frechet_distance(stats, stats)) < 1e-8


def test_frechet_distance_of_shifted_means_is_the_squared_shift():
    stats = gaussian_stats(np.random.default_rng(4), 8, 500)
    shifted = {"mu": stats["mu"] + 0.5, "sigma": stats["sigma"]}
    assert frechet_distance(stats, shifted) == pytest.approx(8 * 0.25, rel=1e-6)


def test_frechet_distance_refuses_mismatched_dimensions():
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(gaussian_stats(rng, 4, 50), gaussian_stats(rng, 5, 50))


def test_extrapolation_recovers_the_intercept_of_a_line_in_one_over_n():
    counts = [100, 200, 400, 800]
    fit = extrapolate_to_infinity(counts, [3.0 + 500 / n for n in counts])
    assert fit["value"] == pytest.approx(3.0) and fit["slope"] == pytest.approx(500)


@pytest.mark.parametrize("n, first", [(50000, 5000), (400, 40), (100000, 5000), (15, 2)])
def test_fid_infinity_counts_are_dgm_evals(n, first):
    counts = infinity_counts(n)
    assert len(counts) == 15 and counts[0] == first and counts[-1] == n
    assert counts == [int(c) for c in np.linspace(first, n, 15).astype(np.int32)]


def test_fid_infinity_removes_most_of_fids_sample_size_bias():
    """Samples from the reference's own Gaussian: FID at N is all bias (~ tr(S) / N and more),
    FID_inf, averaged over datasets, lands near the true 0."""
    rng = np.random.default_rng(8)
    scales = np.linspace(0.5, 1.5, 8)
    reference = {"mu": np.zeros(8), "sigma": np.diag(scales ** 2)}
    fids, infinities = [], []
    for seed in range(40):
        features = rng.standard_normal((400, 8)) * scales
        fit = frechet_at_infinity(features, reference, seed)
        fids.append(fit["values"][-1])
        infinities.append(fit["value"])
    assert np.mean(fids) > 0.02 and abs(np.mean(infinities)) < np.mean(fids) / 5
