"""Metrics from pairwise distances between every sample's and every reference image's features:
CMMD's RBF-kernel MMD and Naeem et al.'s density and coverage. Distances are taken in float64,
a block of rows at a time, so no n x m matrix is held whole.

CMMD (Jayasumana et al. 2024): MMD^2 with the Gaussian RBF kernel k(x, y) = exp(-|x - y|^2 /
(2 sigma^2)), sigma = 10, times 1000. `cmmd` is the reference code's estimator: the means of k
over all pairs of x with x, y with y and x with y, diagonals included (Gretton et al. 2012,
Eq. 5, the minimum-variance one). It is biased upward by about 1000 (1 - E k(x, x')) / N at N
samples (the diagonal's k = 1 counted in), which the paper's 30,000 images make negligible
and a few hundred do not; `cmmd_unbiased` leaves the diagonals out (Gretton's MMD^2_u, Eq. 3),
and its expectation is the population MMD^2 at any N.

Density and coverage (Naeem et al. 2020), k = 5: every reference image's ball reaches its k-th
nearest other reference image. Density: the balls containing each sample, over k, averaged
over samples; coverage: the share of reference images whose ball contains a sample. Strict
inequalities, as the authors' `prdc` package.
"""
import torch

CMMD = {"sigma": 10.0, "scale": 1000.0,
        "estimators": {"cmmd": "V-statistic, diagonals included", "cmmd_unbiased": "U-statistic"},
        "after": "google-research cmmd distance.mmd"}
DENSITY_COVERAGE = {"nearest_k": 5, "after": "Naeem et al. 2020, prdc compute_prdc"}
ROWS = 2048     # rows of a distance block


def _blocks(x: torch.Tensor, y: torch.Tensor):
    """(start, squared distances of x[start:start + ROWS] to every y), in float64."""
    x, y = x.double(), y.double()
    y_norms = (y ** 2).sum(1)
    for start in range(0, len(x), ROWS):
        block = x[start:start + ROWS]
        squared = (block ** 2).sum(1)[:, None] + y_norms[None] - 2 * block @ y.T
        yield start, squared.clamp_min(0)


def _kernel_sum(x: torch.Tensor, y: torch.Tensor) -> float:
    gamma = 1 / (2 * CMMD["sigma"] ** 2)
    return sum(float(torch.exp(-gamma * squared).sum()) for _, squared in _blocks(x, y))


def cmmd(features: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """CMMD of `features` (samples) against `reference`, both n x d: (the reference code's
    estimator, the unbiased one). k(x, x) = 1 on both diagonals."""
    n, m = len(features), len(reference)
    same_x, same_y = _kernel_sum(features, features), _kernel_sum(reference, reference)
    cross = _kernel_sum(features, reference) / (n * m)
    biased = same_x / n ** 2 + same_y / m ** 2 - 2 * cross
    unbiased = (same_x - n) / (n * (n - 1)) + (same_y - m) / (m * (m - 1)) - 2 * cross
    return CMMD["scale"] * biased, CMMD["scale"] * unbiased


def nearest_distances(features: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's distance to its k-th nearest other row (itself, at 0, is not counted)."""
    found = [squared.topk(k + 1, dim=1, largest=False).values[:, k] for _, squared in _blocks(features, features)]
    return torch.cat(found).sqrt()


def density_coverage(features: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """Density and coverage of samples `features` against `reference` (Naeem et al. 2020)."""
    k = DENSITY_COVERAGE["nearest_k"]
    radii = nearest_distances(reference, k)
    inside = torch.zeros(len(features), dtype=torch.float64)
    covered = torch.zeros(len(reference), dtype=torch.bool)
    for start, squared in _blocks(reference, features):
        distances = squared.sqrt()
        balls = radii[start:start + len(distances), None]
        inside += (distances < balls).sum(0).double()
        covered[start:start + len(distances)] = distances.min(1).values < balls[:, 0]
    return float(inside.mean() / k), float(covered.double().mean())
