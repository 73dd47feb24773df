"""The Frechet distance on 2048-d statistics (Inception's pool features): the Cholesky +
symmetric-eigenvalue route against scipy.linalg.sqrtm, side by side.

Run: pytest tests/benchmarks -m slow --benchmark-enable
"""
import numpy as np
import pytest

from bench.quality.statistics import frechet_distance, sqrtm_frechet_distance

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inception_sized_stats():
    rng = np.random.default_rng(0)
    dim = 2048

    def stats(shift):
        mixing = np.eye(dim) + 0.05 * rng.standard_normal((dim, dim))
        samples = rng.standard_normal((5000, dim)) @ mixing + shift
        return {"mu": samples.mean(0), "sigma": np.cov(samples, rowvar=False)}
    return stats(0.0), stats(0.1)


@pytest.mark.parametrize("route", [frechet_distance, sqrtm_frechet_distance], ids=["fast", "sqrtm"])
def test_frechet_distance_2048(benchmark, inception_sized_stats, route):
    value = benchmark.pedantic(route, args=inception_sized_stats, rounds=3, iterations=1)
    assert value > 0


def test_fast_route_agrees_with_sqrtm_at_2048(inception_sized_stats):
    expected = sqrtm_frechet_distance(*inception_sized_stats)
    assert frechet_distance(*inception_sized_stats) == pytest.approx(expected, rel=1e-6)
