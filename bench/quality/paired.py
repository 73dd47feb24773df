"""Paired comparisons of a suite's cells: every cell draws sample i from seed i and is scored
against the same reference, so two cells' FIDs are paired, and resampling the sample indices
once for all cells (the reference held fixed) gives each difference a confidence interval far
narrower than the two cells' separate standard errors allow.

FID against a fixed reference with statistics (mu_r, Sigma_r) needs, besides the samples' own
mean and covariance, tr sqrt(Sigma_a Sigma_r). With any root R of the reference covariance
(Sigma_r = R^T R: the symmetric square root of a stored Sigma_r, or the centred reference
features over sqrt(m - 1)) and the centred samples X_c (n x d), the non-zero eigenvalues of
Sigma_a Sigma_r are the squared singular values of X_c R^T / sqrt(n - 1), so
    tr sqrt(Sigma_a Sigma_r) = ||X_c R^T||_* / sqrt(n - 1)     (nuclear norm),
an n x rank(R) singular value problem instead of a d x d matrix square root per resample.
"""
import dataclasses

import numpy as np

from bench.quality.statistics import psd_sqrt

LEVEL = 0.95
RESAMPLES = 500


@dataclasses.dataclass(frozen=True)
class Reference:
    """What FID needs of a fixed reference: its mean, a root of its covariance, and the trace."""
    mu: np.ndarray
    root: np.ndarray          # R with Sigma_r = R^T R
    trace: float

    @classmethod
    def from_statistics(cls, mu, sigma) -> "Reference":
        sigma = np.asarray(sigma, dtype=np.float64)
        return cls(np.asarray(mu, dtype=np.float64), psd_sqrt(sigma), float(np.trace(sigma)))

    @classmethod
    def from_features(cls, features) -> "Reference":
        features = np.asarray(features, dtype=np.float64)
        centred = features - features.mean(0)
        root = centred / np.sqrt(len(features) - 1)
        if len(root) > root.shape[1]:      # more images than dimensions: a d x d root is smaller
            return cls.from_statistics(features.mean(0), root.T @ root)
        return cls(features.mean(0), root, float((root ** 2).sum()))


def fid(features: np.ndarray, reference: Reference) -> float:
    """Frechet distance of `features` (n x d) to the reference (the same number torch-fidelity's
    FID gives from the same statistics, up to floating point)."""
    features = np.asarray(features, dtype=np.float64)
    n = len(features)
    mu = features.mean(0)
    centred = features - mu
    trace = float((centred ** 2).sum()) / (n - 1)
    cross = np.linalg.svd(centred @ reference.root.T, compute_uv=False).sum() / np.sqrt(n - 1)
    return float(((mu - reference.mu) ** 2).sum() + trace + reference.trace - 2 * cross)


def bootstrap_fids(cells: list[np.ndarray], reference: Reference, resamples: int = RESAMPLES,
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


def resampled_fids(features: np.ndarray, reference: Reference, counts: np.ndarray,
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


@dataclasses.dataclass(frozen=True)
class Difference:
    """FID of cell a minus FID of cell b, with its paired bootstrap interval."""
    value: float              # the full-sample difference
    low: float
    high: float
    a_better: float           # share of resamples where a's FID is lower

    @property
    def tied(self) -> bool:
        return self.low <= 0 <= self.high


def difference(fid_a: float, fid_b: float, resampled_a: np.ndarray, resampled_b: np.ndarray,
               level: float = LEVEL) -> Difference:
    """The interval of fid_a - fid_b from paired resamples: the resampled differences' spread
    around their mean, placed on the full-sample difference (resampling inflates each FID, the
    same way for both cells, so the shift cancels from the difference but not its centre)."""
    resampled = np.asarray(resampled_a) - np.asarray(resampled_b)
    spread = resampled - resampled.mean()
    tail = (1 - level) / 2
    value = fid_a - fid_b
    return Difference(value, value + float(np.quantile(spread, tail)),
                      value + float(np.quantile(spread, 1 - tail)), float(np.mean(resampled < 0)))
