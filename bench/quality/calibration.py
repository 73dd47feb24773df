"""How well the paired FID decision is calibrated, measured by simulation (the test suite runs a
small version, scripts/calibration.py the published one).

Features are Gaussian (dimension d, per-dimension scales 0.5 to 1.5), the reference is one
fixed draw, and each simulated dataset is one pair of cells of n samples drawn from a
scenario. For each dataset: the paired bootstrap interval of FID_a - FID_b (did it cover the
true expected difference? did it exclude 0?) and the harness's decision (`paired.difference`:
the permutation test, or the bootstrap alone where it is clear). Under an A/A scenario (both
cells one distribution) every rejection is a false positive.
"""
import dataclasses
from typing import Callable

import numpy as np

from bench.quality.paired import FidReference, bootstrap_fids, difference, fid, sign_flip_p_value

Draw = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def scales(d: int) -> np.ndarray:
    return np.linspace(0.5, 1.5, d)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """Two cells' samples: cell a at `offset` from the reference's mean, cell b `shift` further
    along every dimension; `correlation` between a_i and b_i (the same seed through two
    samplers), 0 for independent cells."""
    name: str
    offset: float = 0.0
    shift: float = 0.0
    correlation: float = 0.0

    @property
    def null(self) -> bool:
        return self.shift == 0

    def draw(self, rng: np.random.Generator, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
        z, w = rng.standard_normal((2, n, d))
        partner = self.correlation * z + np.sqrt(1 - self.correlation ** 2) * w
        return z * scales(d) + self.offset, partner * scales(d) + self.offset + self.shift


@dataclasses.dataclass(frozen=True)
class Outcome:
    scenario: Scenario
    datasets: int
    decided: float            # share the harness's decision calls different
    bootstrap_excludes: float   # share whose bootstrap interval excludes 0 (the old decision)
    coverage: float           # share whose interval covers the true expected difference
    width_ratio: float        # mean interval width over 2 z sd(difference across datasets)
    by_bootstrap: int         # decisions the bootstrap made alone (|difference| > CLEAR_Z sd)


def reference_for(d: int, seed: int = 12345, count: int = 5000) -> FidReference:
    return FidReference.from_features(np.random.default_rng(seed).standard_normal((count, d)) * scales(d))


def expected_difference(scenario: Scenario, reference: FidReference, n: int, d: int,
                        draws: int = 2000, seed: int = 777) -> float:
    """E FID_a - E FID_b at n samples, by Monte Carlo (0 exactly for an A/A scenario)."""
    if scenario.null:
        return 0.0
    rng = np.random.default_rng(seed)
    gaps = [fid(a, reference) - fid(b, reference)
            for a, b in (scenario.draw(rng, n, d) for _ in range(draws))]
    return float(np.mean(gaps))


def simulate(scenario: Scenario, datasets: int, n: int, d: int, resamples: int = 500,
             permutations: int = 499, seed: int = 0) -> Outcome:
    reference = reference_for(d)
    truth = expected_difference(scenario, reference, n, d)
    rng = np.random.default_rng(seed)
    decided = excluded = covered = by_bootstrap = 0
    widths, values = [], []
    for index in range(datasets):
        a, b = scenario.draw(rng, n, d)
        resampled = bootstrap_fids([a, b], reference, resamples, seed=index)
        found = difference(fid(a, reference), fid(b, reference), resampled[0], resampled[1],
                           lambda: sign_flip_p_value(a, b, reference, permutations, seed=index))
        decided += found.significant
        excluded += not found.low <= 0 <= found.high
        covered += found.low <= truth <= found.high
        by_bootstrap += found.test == "bootstrap"
        widths.append(found.high - found.low)
        values.append(found.value)
    spread = 2 * 1.959964 * float(np.std(values, ddof=1))
    return Outcome(scenario, datasets, decided / datasets, excluded / datasets,
                   covered / datasets, float(np.mean(widths)) / spread, by_bootstrap)
