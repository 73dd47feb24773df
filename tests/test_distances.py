"""CMMD, density and coverage (bench.quality.distances) against independent implementations,
and CMMD's small-sample behaviour against FID's."""
import numpy as np
import pytest
import torch

from bench.quality import distances
from bench.quality.distances import cmmd, density_coverage
from bench.quality.statistics import Moments, frechet_distance


def features(seed, n, d=12, shift=0.0, scale=3.0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, d)) * scale + shift)


def rbf_mmd_by_pairs(x: np.ndarray, y: np.ndarray, diagonals: bool, sigma=10.0) -> float:
    """MMD^2 written out pair by pair (no matrix identities), times 1000: the V-statistic with
    the diagonals, the U-statistic without."""
    def mean_kernel(a, b, same):
        values = [np.exp(-np.sum((p - q) ** 2) / (2 * sigma ** 2))
                  for i, p in enumerate(a) for j, q in enumerate(b) if diagonals or not same or i != j]
        return np.mean(values)
    return 1000 * (mean_kernel(x, x, True) + mean_kernel(y, y, True) - 2 * mean_kernel(x, y, False))


@pytest.mark.parametrize("shift", [0.0, 2.0])
def test_both_cmmd_estimators_equal_the_rbf_mmd_written_pair_by_pair(shift, monkeypatch):
    monkeypatch.setattr(distances, "ROWS", 7)            # several distance blocks
    x, y = features(0, 30, shift=shift), features(1, 45)
    expected = [rbf_mmd_by_pairs(x.numpy(), y.numpy(), diagonals) for diagonals in (True, False)]
    assert cmmd(x, y) == pytest.approx(expected, abs=1e-6, rel=1e-9)


@pytest.mark.parametrize("shift", [0.0, 1.5])
def test_density_and_coverage_equal_the_prdc_package(shift, monkeypatch):
    prdc = pytest.importorskip("prdc")
    monkeypatch.setattr(distances, "ROWS", 16)
    real, fake = features(2, 90), features(3, 70, shift=shift)
    expected = prdc.compute_prdc(real.numpy(), fake.numpy(), nearest_k=5)
    found = density_coverage(fake, real)
    assert found == pytest.approx((expected["density"], expected["coverage"]), rel=1e-12)


def test_samples_from_the_reference_distribution_cover_it():
    density, coverage = density_coverage(features(4, 400), features(5, 400))
    assert 0.8 < density < 1.2 and coverage > 0.9


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


def mean_scores(n, draws, reference):
    """Mean over datasets of (FID, CMMD as the reference code, unbiased CMMD) at n samples."""
    stats = Moments(reference.shape[1]).update(reference).stats()
    scores = []
    for seed in range(draws):
        x = unit(features(100 + seed, n, shift=0.15, scale=1.0))
        scores.append((frechet_distance(Moments(x.shape[1]).update(x).stats(), stats), *cmmd(x, reference)))
    return np.mean(scores, axis=0)


def test_unbiased_cmmd_keeps_its_value_at_few_samples_where_fid_and_the_reference_estimator_do_not():
    """Unit-length embeddings (as CLIP's), one fixed reference, cells from a slightly shifted
    distribution. From 1,000 samples down to 25, FID's mean more than triples; the reference
    code's CMMD rises by its diagonal's bias, 1000 (1 - E k(x, x')) / 25; the unbiased CMMD
    stays within 10 % (40 datasets at 25 samples, 5 at 1,000)."""
    reference = unit(features(6, 2000, shift=0.0, scale=1.0))
    fid_small, biased_small, unbiased_small = mean_scores(25, 40, reference)
    fid_large, biased_large, unbiased_large = mean_scores(1000, 5, reference)
    sample = unit(features(7, 400, shift=0.15, scale=1.0))
    one_minus_k = 1 - (distances._kernel_sum(sample, sample) - 400) / (400 * 399)
    assert fid_small > 3 * fid_large
    assert biased_small - biased_large == pytest.approx(1000 * one_minus_k * (1 / 25 - 1 / 1000), rel=0.1)
    assert abs(unbiased_small - unbiased_large) < 0.1 * unbiased_large
