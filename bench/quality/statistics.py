"""Feature statistics: streaming Gaussian moments and the Frechet distance between two of them.

`Moments` accumulates the mean and covariance of features batch by batch in float64 (Chan et
al.'s pairwise update: each batch is centred on its own mean before it is merged, so no large
sums of squares cancel), so a cell never holds more than one batch of features. Its `stats()`
is torch-fidelity's statistics dict ({"mu", "sigma"}, covariance with N - 1).

`frechet_distance` is the one place the Frechet distance is computed. tr sqrt(S1 S2) is the sum
of the square roots of the eigenvalues of S1 S2, which equal those of the symmetric
L^T S2 L for S1 = L L^T (Cholesky). A Cholesky factor and a symmetric eigenvalue solve are an
order of magnitude faster than `scipy.linalg.sqrtm` on 2048-d covariances. When neither
covariance is positive definite (fewer samples than dimensions) the square root of one comes
from its eigendecomposition instead.
"""
import numpy as np
import torch


class Moments:
    """Running count, mean and scatter matrix (sum of squared deviations) of feature rows."""

    def __init__(self, dim: int):
        self.count = 0
        self.mean = np.zeros(dim)
        self.scatter = np.zeros((dim, dim))

    def update(self, features) -> "Moments":
        batch = np.asarray(features.cpu() if torch.is_tensor(features) else features, np.float64)
        if len(batch):
            mean = batch.mean(0)
            centred = batch - mean
            self._merge(len(batch), mean, centred.T @ centred)
        return self

    def merge(self, other: "Moments") -> "Moments":
        if other.count:
            self._merge(other.count, other.mean, other.scatter)
        return self

    def _merge(self, count: int, mean: np.ndarray, scatter: np.ndarray) -> None:
        total = self.count + count
        delta = mean - self.mean
        self.scatter += scatter + np.outer(delta, delta) * (self.count * count / total)
        self.mean += delta * (count / total)
        self.count = total

    def copy(self) -> "Moments":
        twin = Moments(len(self.mean))
        twin.count, twin.mean, twin.scatter = self.count, self.mean.copy(), self.scatter.copy()
        return twin

    def stats(self) -> dict[str, np.ndarray]:
        if self.count < 2:
            raise ValueError(f"feature statistics need at least 2 samples, have {self.count}")
        return {"mu": self.mean.copy(), "sigma": self.scatter / (self.count - 1)}


def _cholesky(matrix: np.ndarray) -> np.ndarray | None:
    try:
        return np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return None


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def trace_sqrt_product(sigma_1: np.ndarray, sigma_2: np.ndarray) -> float:
    """tr sqrt(S1 S2) for symmetric positive semi-definite S1, S2."""
    for first, second in ((sigma_1, sigma_2), (sigma_2, sigma_1)):
        factor = _cholesky(first)
        if factor is not None:
            break
    else:
        factor, second = psd_sqrt(sigma_1), sigma_2
    eigenvalues = np.linalg.eigvalsh(factor.T @ second @ factor)
    return float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())


def frechet_distance(stats_1: dict, stats_2: dict) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrt(S1 S2)) between two Gaussians."""
    mu_1, mu_2 = np.asarray(stats_1["mu"], np.float64), np.asarray(stats_2["mu"], np.float64)
    sigma_1 = np.asarray(stats_1["sigma"], np.float64)
    sigma_2 = np.asarray(stats_2["sigma"], np.float64)
    if mu_1.shape != mu_2.shape or sigma_1.shape != sigma_2.shape:
        raise ValueError(f"feature statistics differ in shape: {mu_1.shape} vs {mu_2.shape}")
    difference = mu_1 - mu_2
    return float(difference @ difference + np.trace(sigma_1) + np.trace(sigma_2)
                 - 2 * trace_sqrt_product(sigma_1, sigma_2))


def sqrtm_frechet_distance(stats_1: dict, stats_2: dict) -> float:
    """The textbook route through `scipy.linalg.sqrtm` (kept as the reference the fast route is
    checked and benchmarked against)."""
    import scipy.linalg
    difference = stats_1["mu"] - stats_2["mu"]
    root = scipy.linalg.sqrtm(stats_1["sigma"] @ stats_2["sigma"])
    return float(difference @ difference + np.trace(stats_1["sigma"]) + np.trace(stats_2["sigma"])
                 - 2 * np.trace(root).real)


def extrapolate_to_infinity(counts, values) -> dict:
    """FID_inf (Chong & Forsyth 2020): FID is linear in 1/N to first order, so a least-squares
    line through (1/N, FID(N)) evaluated at 1/N = 0. Returns the intercept and the slope."""
    inverse = 1.0 / np.asarray(counts, np.float64)
    slope, intercept = np.polyfit(inverse, np.asarray(values, np.float64), 1)
    return {"value": float(intercept), "slope": float(slope)}


def infinity_counts(n: int, points: int = 15) -> list[int]:
    """dgm-eval's sample counts for FD_inf: `points` evenly spaced in N (not in 1/N) from
    min(5000, max(N // 10, 2)) to N, truncated to integers (Chong & Forsyth's 15 points from
    5000, with dgm-eval's floor for fewer than 50,000 samples)."""
    return [int(c) for c in np.linspace(min(5000, max(n // 10, 2)), n, points).astype(np.int32)]


def frechet_at_infinity(features: np.ndarray, reference: dict, seed: int, points: int = 15) -> dict:
    """FD_inf as dgm-eval computes it: at each of `infinity_counts` a fresh random subset of
    the samples, without replacement (independent across counts), its Frechet distance to the
    reference statistics, and the line in 1/N through them (`extrapolate_to_infinity`). The
    subsets come from `seed`, where dgm-eval's are unseeded."""
    features = np.asarray(features, np.float64)
    rng = np.random.default_rng(seed)
    counts = infinity_counts(len(features), points)
    values = [frechet_distance(Moments(features.shape[1]).update(
        features[rng.choice(len(features), count, replace=False)]).stats(), reference)
        for count in counts]
    return {**extrapolate_to_infinity(counts, values), "counts": counts, "values": values}


def mean_with_error(values: np.ndarray) -> tuple[float, dict]:
    """The mean and its standard error over images (the spread of a per-image metric)."""
    finite = len(values) > 1 and bool(np.isfinite(values).all())
    sem = float(values.std(ddof=1) / np.sqrt(len(values))) if finite else None
    return float(values.mean()), {"kind": "standard_error_of_mean", "value": sem, "n": len(values)}
