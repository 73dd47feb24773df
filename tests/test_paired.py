"""Paired bootstrap of FID differences (the fast FID against a fixed reference equals the
project's Frechet distance, and pairing narrows the interval of a difference) and the paired
mean difference of per-image metrics."""
import numpy as np
import pytest

from bench.quality.paired import (FidReference, bootstrap_fids, difference, fid, mean_difference,
                                  permuted_fids, sign_flip_p_value)
from bench.quality.statistics import Moments, frechet_distance


def gaussian(rng, n, d, shift=0.0):
    mixing = np.linspace(0.5, 1.5, d)
    return rng.standard_normal((n, d)) * mixing + shift


@pytest.mark.parametrize("m, how", [(400, "statistics"), (400, "features"), (12, "features")])
def test_fid_against_a_fixed_reference_equals_the_frechet_distance(m, how):
    rng = np.random.default_rng(0)
    samples, reference = gaussian(rng, 50, 16, 0.3), gaussian(rng, m, 16)
    stats = Moments(16).update(reference).stats()
    ref = FidReference.from_statistics(stats["mu"], stats["sigma"]) if how == "statistics" else (
        FidReference.from_features(reference))
    expected = frechet_distance(Moments(16).update(samples).stats(), stats)
    assert fid(samples, ref) == pytest.approx(expected, rel=1e-7)


def paired_cells(rng, shift_b=0.0, noise=0.05, n=300, d=8):
    """Cell b is cell a's samples slightly perturbed (the same seeds through another sampler)."""
    a = gaussian(rng, n, d, 0.2)
    return a, a + noise * rng.standard_normal(a.shape) + shift_b


def test_identical_cells_differ_by_exactly_zero_and_are_tied():
    rng = np.random.default_rng(1)
    a, _ = paired_cells(rng)
    ref = FidReference.from_features(gaussian(rng, 500, 8))
    resampled = bootstrap_fids([a, a.copy()], ref, resamples=50)
    result = difference(fid(a, ref), fid(a, ref), resampled[0], resampled[1],
                        lambda: sign_flip_p_value(a, a.copy(), ref, permutations=19))
    assert result.value == result.low == result.high == 0.0 and result.p_value == 1.0 and result.tied


def test_pairing_narrows_the_interval_of_a_difference():
    rng = np.random.default_rng(2)
    a, b = paired_cells(rng, shift_b=0.1)
    ref = FidReference.from_features(gaussian(rng, 500, 8))
    resampled = bootstrap_fids([a, b], ref, resamples=300)
    paired = difference(fid(a, ref), fid(b, ref), resampled[0], resampled[1],
                        lambda: sign_flip_p_value(a, b, ref))
    unpaired_width = 2 * 1.96 * np.hypot(resampled[0].std(), resampled[1].std())
    assert (paired.high - paired.low) < unpaired_width / 2
    assert not paired.tied and paired.value < 0 and paired.a_better > 0.99


def test_cells_of_different_sizes_cannot_be_paired():
    rng = np.random.default_rng(3)
    ref = FidReference.from_features(gaussian(rng, 100, 4))
    with pytest.raises(ValueError, match="same samples"):
        bootstrap_fids([gaussian(rng, 20, 4), gaussian(rng, 30, 4)], ref, resamples=5)


@pytest.mark.parametrize("reference_images", [30, 200])   # fewer / more images than dimensions
def test_batched_resamples_equal_fid_of_each_resampled_set(reference_images):
    rng = np.random.default_rng(3)
    features, real = rng.normal(size=(50, 16)), rng.normal(0.2, 1.3, size=(reference_images, 16))
    reference = FidReference.from_features(real)
    indices = np.random.default_rng(0).integers(0, 50, size=(7, 50))
    expected = [fid(features[i], reference) for i in indices]
    assert bootstrap_fids([features], reference, resamples=7)[0] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("reference_images", [30, 200])
def test_swapped_fids_equal_fid_of_each_swapped_pair_of_cells(reference_images):
    rng = np.random.default_rng(4)
    a, b = paired_cells(rng, shift_b=0.2, n=40)
    reference = FidReference.from_features(gaussian(rng, reference_images, 8))
    swaps = rng.random((6, 40)) < 0.5
    fid_a, fid_b = permuted_fids(a, b, reference, swaps)
    assert fid_a == pytest.approx([fid(np.where(s[:, None], b, a), reference) for s in swaps], rel=1e-9)
    assert fid_b == pytest.approx([fid(np.where(s[:, None], a, b), reference) for s in swaps], rel=1e-9)


def test_the_permutation_p_value_is_small_for_a_clear_difference_and_never_below_its_floor():
    rng = np.random.default_rng(5)
    a, b = paired_cells(rng, shift_b=0.3)
    reference = FidReference.from_features(gaussian(rng, 500, 8))
    assert sign_flip_p_value(a, b, reference, permutations=99) == pytest.approx(1 / 100)


def test_the_permutation_test_stops_once_the_answer_is_no():
    """Besag-Clifford: with 99 permutations the test is over at 5 exceedances, p = 5 / drawn."""
    rng = np.random.default_rng(6)
    a = gaussian(rng, 100, 8)
    b = gaussian(rng, 100, 8)
    reference = FidReference.from_features(gaussian(rng, 500, 8))
    p = sign_flip_p_value(a, b, reference, permutations=99)
    assert p > 0.05 and (5 / p) == pytest.approx(round(5 / p))


def test_a_difference_far_beyond_its_bootstrap_spread_skips_the_permutation_test():
    rng = np.random.default_rng(7)
    a, b = paired_cells(rng, shift_b=0.5)
    reference = FidReference.from_features(gaussian(rng, 500, 8))
    resampled = bootstrap_fids([a, b], reference, resamples=100)

    def no_test():
        raise AssertionError("the permutation test ran")
    found = difference(fid(a, reference), fid(b, reference), resampled[0], resampled[1], no_test)
    assert found.test == "bootstrap" and found.significant and found.value < 0


def simulated_psnr_pairs(trials: int, n: int, shift: float, seed: int = 0):
    """Two cells' per-image PSNRs over the same n images: a shared per-image difficulty
    (what pairing removes) plus each cell's own noise, cell a `shift` dB better."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(20.0, 3.0, (trials, n))
    a = difficulty + shift + rng.gamma(2.0, 0.5, (trials, n))     # skewed, as PSNRs are
    b = difficulty + rng.gamma(2.0, 0.5, (trials, n))
    return a, b


def test_the_paired_mean_difference_holds_its_level_under_the_null_and_covers_the_truth():
    """A/A over 2,000 simulated pairs of 100 images: false positives at 5 % (binomial sd 0.5 %);
    with a 0.2 dB shift the interval covers it 95 % of the time and the test finds it."""
    null_a, null_b = simulated_psnr_pairs(2000, 100, 0.0)
    false_positive = np.mean([mean_difference(a, b).significant for a, b in zip(null_a, null_b)])
    assert 0.035 <= false_positive <= 0.065
    a, b = simulated_psnr_pairs(2000, 100, 0.2, seed=1)
    found = [mean_difference(x, y) for x, y in zip(a, b)]
    assert 0.935 <= np.mean([d.low <= 0.2 <= d.high for d in found]) <= 0.965
    assert np.mean([d.significant for d in found]) > 0.5


def test_identical_per_image_values_differ_by_exactly_zero():
    values = np.linspace(10, 30, 50)
    found = mean_difference(values, values)
    assert (found.value, found.low, found.high, found.significant) == (0.0, 0.0, 0.0, False)
