"""Paired comparisons of a suite's cells: every cell draws sample i from seed i and is scored
against the same reference, so two cells' FIDs are paired, and resampling the sample indices
once for all cells (the reference held fixed) gives each difference a confidence interval far
narrower than the two cells' separate standard errors allow.

Whether two cells differ at all is decided by a paired permutation (sign-flip) test, not by
the interval: FID is a squared distance, and near a tie the bootstrap's spread of a difference
carries the sampling noise twice (the resampled FID's cross term runs along the sample's own
noisy offset from the reference), so the percentile interval is up to sqrt(3) too wide there
and called 0.0-1.0 % of A/A pairs different where 5 % was meant. The permutation test is exact
under H0 whatever FID's shape; scripts/calibration.py measures both (results/published/
calibration.md).

FID against a fixed reference with statistics (mu_r, Sigma_r) needs, besides the samples' own
mean and covariance, tr sqrt(Sigma_a Sigma_r). With any root R of the reference covariance
(Sigma_r = R^T R: the symmetric square root of a stored Sigma_r, or the centred reference
features over sqrt(m - 1)) and the centred samples X_c (n x d), the non-zero eigenvalues of
Sigma_a Sigma_r are the squared singular values of X_c R^T / sqrt(n - 1), so
    tr sqrt(Sigma_a Sigma_r) = ||X_c R^T||_* / sqrt(n - 1)     (nuclear norm),
an n x rank(R) singular value problem instead of a d x d matrix square root per resample.
"""
import dataclasses
from typing import Callable

import numpy as np

from bench.quality.statistics import psd_sqrt

ALPHA = 0.05                 # a difference is significant at p <= ALPHA
LEVEL = 1 - ALPHA            # and its interval is at this level
RESAMPLES = 500
PERMUTATIONS = 499
FIRST_STAGE = 99             # swaps drawn before a clear answer may end the test
# A difference beyond this many of its bootstrap standard deviations has p < 0.001 by the
# bootstrap alone, which is conservative or exact (never liberal) in every simulation of
# scripts/calibration.py, so no permutation test is spent on it.
CLEAR_Z = 3.29
CLEAR_P = 0.001
DECISION = ("a paired permutation test over the shared seeds, p <= 0.05; the interval is the "
            "paired bootstrap's")   # how reports say what "significant" means


@dataclasses.dataclass(frozen=True)
class FidReference:
    """What FID needs of a fixed reference: its mean, a root of its covariance, and the trace."""
    mu: np.ndarray
    root: np.ndarray          # R with Sigma_r = R^T R
    trace: float

    @classmethod
    def from_statistics(cls, mu, sigma) -> "FidReference":
        sigma = np.asarray(sigma, dtype=np.float64)
        return cls(np.asarray(mu, dtype=np.float64), psd_sqrt(sigma), float(np.trace(sigma)))

    @classmethod
    def from_features(cls, features) -> "FidReference":
        features = np.asarray(features, dtype=np.float64)
        centred = features - features.mean(0)
        root = centred / np.sqrt(len(features) - 1)
        if len(root) > root.shape[1]:      # more images than dimensions: a d x d root is smaller
            return cls.from_statistics(features.mean(0), root.T @ root)
        return cls(features.mean(0), root, float((root ** 2).sum()))


def fid(features: np.ndarray, reference: FidReference) -> float:
    """Frechet distance of `features` (n x d) to the reference (the same number torch-fidelity's
    FID gives from the same statistics, up to floating point)."""
    features = np.asarray(features, dtype=np.float64)
    n = len(features)
    mu = features.mean(0)
    centred = features - mu
    trace = float((centred ** 2).sum()) / (n - 1)
    cross = np.linalg.svd(centred @ reference.root.T, compute_uv=False).sum() / np.sqrt(n - 1)
    return float(((mu - reference.mu) ** 2).sum() + trace + reference.trace - 2 * cross)


def bootstrap_fids(cells: list[np.ndarray], reference: FidReference, resamples: int = RESAMPLES,
                   seed: int = 0) -> np.ndarray:
    """FID of every cell on the same resampled sample indices: cells x resamples. All cells
    must hold the same samples' features in the same (seed) order."""
    sizes = {len(c) for c in cells}
    if len(sizes) != 1:
        raise ValueError(f"paired cells need the same samples; sizes {sorted(sizes)}")
    n = sizes.pop()
    indices = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    counts = np.zeros((resamples, n))
    np.add.at(counts, (np.arange(resamples)[:, None], indices), 1)
    return np.array([resampled_fids(cell, reference, counts) for cell in cells])


def resampled_fids(features: np.ndarray, reference: FidReference, counts: np.ndarray,
                   chunk: int = 50) -> np.ndarray:
    """`fid` of each resample, a resample given by how often it draws each sample (a row of
    `counts`): its moments are count-weighted sums, and in the reference root's projection
    Y = X R^T the nuclear norm is the sum of root eigenvalues of the weighted Gram matrix, so
    all resamples share one projection and one batched eigenvalue call per chunk."""
    features = np.asarray(features, dtype=np.float64)
    n = len(features)
    projected = features @ reference.root.T
    out = []
    for weights in np.array_split(counts, max(1, len(counts) // chunk)):
        mu = weights @ features / n
        trace = (weights @ (features ** 2).sum(1) - n * (mu ** 2).sum(1)) / (n - 1)
        projected_mu = weights @ projected / n
        gram = np.swapaxes(weights[:, :, None] * projected[None], 1, 2) @ projected
        gram -= n * projected_mu[:, :, None] * projected_mu[:, None, :]
        cross = np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0, None)).sum(1) / np.sqrt(n - 1)
        out.append(((mu - reference.mu) ** 2).sum(1) + trace + reference.trace - 2 * cross)
    return np.concatenate(out)


def permuted_fids(a: np.ndarray, b: np.ndarray, reference: FidReference, swaps: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """`fid` of both cells after each swap pattern (a row of `swaps`, 1 where sample i's two
    images change cells): cell a' holds b_i where swapped and a_i elsewhere, b' the rest. In the
    reference root's projection y the two Gram matrices sum to those of a and b, and one swap
    changes a's by D(s) = sum_i s_i (y_bi y_bi^T - y_ai y_ai^T), the symmetric part of
    U^T diag(s) V with U = y_b - y_a, V = y_b + y_a: one batched product per swap pattern."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = len(a)
    swaps = np.asarray(swaps, dtype=np.float64)
    ya, yb = a @ reference.root.T, b @ reference.root.T
    mu_a = a.mean(0) + swaps @ (b - a) / n
    mu_b = a.mean(0) + b.mean(0) - mu_a
    squares_a = (a ** 2).sum() + swaps @ ((b ** 2).sum(1) - (a ** 2).sum(1))
    squares_b = (a ** 2).sum() + (b ** 2).sum() - squares_a
    ymu_a = ya.mean(0) + swaps @ (yb - ya) / n
    ymu_b = ya.mean(0) + yb.mean(0) - ymu_a
    product = np.swapaxes(swaps[:, :, None] * (yb - ya)[None], 1, 2) @ (yb + ya)
    change = (product + np.swapaxes(product, 1, 2)) / 2
    gram_a, gram_b = ya.T @ ya + change, yb.T @ yb - change

    def fids(mu, squares, ymu, gram):
        centred = gram - n * ymu[:, :, None] * ymu[:, None, :]
        cross = np.sqrt(np.clip(np.linalg.eigvalsh(centred), 0, None)).sum(1) / np.sqrt(n - 1)
        trace = (squares - n * (mu ** 2).sum(1)) / (n - 1)
        return ((mu - reference.mu) ** 2).sum(1) + trace + reference.trace - 2 * cross

    return fids(mu_a, squares_a, ymu_a, gram_a), fids(mu_b, squares_b, ymu_b, gram_b)


def sign_flip_p_value(a: np.ndarray, b: np.ndarray, reference: FidReference,
                      permutations: int = PERMUTATIONS, seed: int = 0, chunk: int = 20) -> float:
    """Two-sided p-value of FID_a - FID_b = 0 by the paired permutation test: under H0 the two
    images of each sample index are exchangeable (the two cells are one method), so swapping
    them independently with probability 1/2 leaves the difference's distribution unchanged.
    p = (1 + swaps with |difference| >= the observed) / (1 + swaps drawn), exact in level for
    any number of swaps. Sequential, to spend the swaps where the answer is close: no swap of
    the first FIRST_STAGE reaching the observed difference ends it at p = 1 / (1 + FIRST_STAGE),
    and the count reaching alpha (1 + permutations) ends it at p = count / swaps drawn, already
    above alpha (Besag & Clifford 1991); calibration.md measures the whole rule's level."""
    observed = abs(fid(a, reference) - fid(b, reference))
    tolerance = 1e-9 * max(1.0, observed)   # two identical cells: every swap gives 0 again
    stop = int(np.floor(ALPHA * (permutations + 1) + 1e-9))   # this many: p > ALPHA already
    rng = np.random.default_rng(seed)
    exceed = drawn = 0
    while drawn < permutations:
        swaps = rng.random((min(chunk, permutations - drawn), len(a))) < 0.5
        fid_a, fid_b = permuted_fids(a, b, reference, swaps)
        for hit in np.abs(fid_a - fid_b) >= observed - tolerance:
            drawn += 1
            exceed += int(hit)
            if exceed == stop:
                return exceed / drawn
            if drawn == FIRST_STAGE and exceed == 0 and permutations > FIRST_STAGE:
                return 1 / (FIRST_STAGE + 1)
    return (exceed + 1) / (permutations + 1)


@dataclasses.dataclass(frozen=True)
class Difference:
    """FID of cell a minus FID of cell b: the paired bootstrap interval says how large, the
    p-value whether it is there at all (`test`: "permutation", or "bootstrap" where the
    bootstrap alone puts it beyond CLEAR_Z of its spread, p < 0.001)."""
    value: float              # the full-sample difference
    low: float
    high: float
    a_better: float           # share of resamples where a's FID is lower
    p_value: float
    test: str                 # what decided: "permutation" or "bootstrap"

    @property
    def significant(self) -> bool:
        return self.p_value <= ALPHA

    @property
    def tied(self) -> bool:
        return not self.significant


def difference(fid_a: float, fid_b: float, resampled_a: np.ndarray, resampled_b: np.ndarray,
               p_value: Callable[[], float], level: float = LEVEL) -> Difference:
    """The interval of fid_a - fid_b from paired resamples: the resampled differences' spread
    around their mean, placed on the full-sample difference (resampling inflates each FID, the
    same way for both cells, so the shift cancels from the difference but not its centre).
    `p_value` is a callable giving the permutation test's p-value, called only when the
    bootstrap leaves the answer open (|difference| within CLEAR_Z of its spread)."""
    resampled = np.asarray(resampled_a) - np.asarray(resampled_b)
    spread = resampled - resampled.mean()
    tail = (1 - level) / 2
    value = fid_a - fid_b
    low = value + float(np.quantile(spread, tail))
    high = value + float(np.quantile(spread, 1 - tail))
    a_better = float(np.mean(resampled < 0))
    if abs(value) > CLEAR_Z * resampled.std():
        return Difference(value, low, high, a_better, CLEAR_P, "bootstrap")
    return Difference(value, low, high, a_better, p_value(), "permutation")


@dataclasses.dataclass(frozen=True)
class MeanDifference:
    """Mean of a per-image metric (PSNR, SSIM) of cell a minus cell b over the same images: the
    paired t interval and test on the per-image differences (the images are independent, so
    the mean difference is asymptotically normal; tests/test_paired.py measures its A/A false
    positives and its coverage)."""
    value: float
    low: float
    high: float
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value <= ALPHA


def mean_difference(a: np.ndarray, b: np.ndarray, level: float = LEVEL) -> MeanDifference:
    """Paired difference of two cells' per-image values (seed order, the same images)."""
    from scipy import stats
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or len(a) < 2:
        raise ValueError(f"paired per-image values need two equal lengths of 2 or more, got {a.shape} and {b.shape}")
    value = float(np.mean(a - b))
    if np.all(a - b == value):     # no spread (identical cells): the difference is exact
        return MeanDifference(value, value, value, 1.0 if value == 0 else 0.0)
    test = stats.ttest_rel(a, b)
    interval = test.confidence_interval(level)
    return MeanDifference(value, float(interval.low), float(interval.high), float(test.pvalue))
