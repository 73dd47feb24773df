"""The score-SDE samplers against Song et al. 2021 step by step, on the exact denoiser of a
Gaussian (moments and batch invariance are checked with every sampler in test_samplers.py)."""
import pytest
import torch

from bench.run.cost import CountingDenoiser
from methods import METHODS, PerSampleRNG
from methods.sde import geometric_sigmas, langevin_step, sample_sde_euler_maruyama, sample_sde_pc
from tests.helpers import GaussianDenoiser

SHAPE = (1, 4, 4)


@pytest.fixture()
def denoiser():
    return GaussianDenoiser()


def sample(sampler, denoiser, steps=12, seed=3, **hparams):
    rng = PerSampleRNG(seed, range(5))
    sigmas = geometric_sigmas(denoiser, steps)
    return sampler(denoiser, rng.randn(SHAPE), sigmas, rng=rng, **hparams)


def test_the_noise_levels_are_geometric_from_sigma_max_to_sigma_min_then_zero(denoiser):
    sigmas = geometric_sigmas(denoiser, 5, sigma_min=0.1, sigma_max=10.0)
    torch.testing.assert_close(sigmas, torch.tensor([10.0, 10 ** 0.5, 1.0, 10 ** -0.5, 0.1, 0.0],
                                                    dtype=torch.float64))


def test_a_corrector_with_snr_zero_leaves_the_predictor_s_samples_exactly(denoiser):
    predictor = sample(sample_sde_euler_maruyama, denoiser)
    corrected = sample(sample_sde_pc, denoiser, snr=0.0, corrector_steps=3)
    assert torch.equal(predictor, corrected)


def test_a_corrector_with_snr_above_zero_moves_the_samples(denoiser):
    predictor = sample(sample_sde_euler_maruyama, denoiser)
    corrected = sample(sample_sde_pc, denoiser, snr=0.16, corrector_steps=1)
    assert not torch.allclose(predictor, corrected, atol=1e-3)


def test_the_corrector_s_evaluations_count_in_nfe(denoiser):
    counter = CountingDenoiser(denoiser)
    sample(sample_sde_pc, counter, steps=12, corrector_steps=2)
    assert counter.calls == 12 + 2 * 11 == METHODS.get("sde-pc").planned_nfe(12, {"corrector_steps": 2})


def test_one_euler_maruyama_step_follows_the_reverse_sde(denoiser):
    """x' = x + (s^2 - s'^2) grad log p + sqrt(s^2 - s'^2) z, grad log p = (D - x) / s^2."""
    rng = PerSampleRNG(1, range(2))
    x = rng.randn(SHAPE) * 4.0
    sigmas = torch.tensor([4.0, 1.5, 0.0], dtype=torch.float64)
    steps = []
    sample_sde_euler_maruyama(denoiser, x / 4.0, sigmas, rng=rng,
                              callback=lambda info: steps.append(info["x"]))
    z = PerSampleRNG(1, range(2))
    z.randn(SHAPE)                                        # the latents' draw
    expected = x + (16 - 2.25) * (denoiser(x, 4.0) - x) / 16 + (16 - 2.25) ** 0.5 * z.randn(SHAPE)
    torch.testing.assert_close(steps[0], expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(steps[1], denoiser(steps[0], 1.5), rtol=0, atol=1e-6)


def test_the_langevin_step_size_follows_the_signal_to_noise_ratio(denoiser):
    """Algorithm 4: eps = 2 (r ||z|| / ||grad||)^2 per sample, x' = x + eps grad + sqrt(2 eps) z."""
    x = PerSampleRNG(2, range(3)).randn(SHAPE)
    moved = langevin_step(denoiser, x, torch.tensor(0.7), 0.2, PerSampleRNG(9, range(3)), None)
    z = PerSampleRNG(9, range(3)).randn(SHAPE)
    grad = (denoiser(x, 0.7) - x) / 0.49
    eps = 2 * (0.2 * z.flatten(1).norm(dim=1) / grad.flatten(1).norm(dim=1)) ** 2
    expected = x + eps.reshape(-1, 1, 1, 1) * grad + (2 * eps).sqrt().reshape(-1, 1, 1, 1) * z
    torch.testing.assert_close(moved, expected, rtol=1e-5, atol=1e-6)


def test_the_forked_stream_is_independent_and_reproducible():
    rng = PerSampleRNG(4, range(3))
    first, again = rng.fork("corrector").randn(SHAPE), rng.fork("corrector").randn(SHAPE)
    assert torch.equal(first, again)
    assert not torch.allclose(first, PerSampleRNG(4, range(3)).randn(SHAPE))


def test_euler_maruyama_s_error_in_the_data_std_shrinks_with_the_step(denoiser):
    """First order: the std's error falls about as 1 / steps (0.14, 0.010, 0.0016 at 20, 200,
    1000 steps); the mean is exact for this linear denoiser up to Monte-Carlo error."""
    method = METHODS.get("sde-euler-maruyama")
    errors = []
    for steps in (20, 200, 1000):
        rng = PerSampleRNG(0, range(2000))
        out = method.sample(denoiser, rng.randn(SHAPE), steps, rng=rng, **method.resolve_hparams({}))
        errors.append(abs(float(out.std()) - denoiser.s))
        assert abs(float(out.mean()) - denoiser.mu) < 0.01
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.004


LANGEVIN_SHAPE = (1, 28, 28)   # the snr rule needs the norms of many dimensions to concentrate


@pytest.mark.parametrize("snr", [0.16, 0.3])
def test_langevin_steps_settle_at_the_unadjusted_langevin_variance(denoiser, snr):
    """With the exact score of N(mu, v), Algorithm 4's step is unadjusted Langevin with step
    eps = 2 snr^2 v, whose stationary std is sqrt(v) / sqrt(1 - snr^2): the corrector at a fixed
    snr inflates the std by that factor (1.3 % at the paper's 0.16) however many steps it takes."""
    sigma = 0.5
    variance = denoiser.s ** 2 + sigma ** 2
    rng = PerSampleRNG(0, range(200))
    x = denoiser.mu + variance ** 0.5 * rng.randn(LANGEVIN_SHAPE)
    for _ in range(100):
        x = langevin_step(denoiser, x, torch.tensor(sigma), snr, rng, None)
    assert float(x.std()) / variance ** 0.5 == pytest.approx((1 - snr ** 2) ** -0.5, abs=0.005)


@pytest.mark.parametrize("snr", [0.16, 0.3])
def test_predictor_corrector_lands_at_the_corrector_s_std(denoiser, snr):
    method = METHODS.get("sde-pc")
    rng = PerSampleRNG(0, range(200))
    out = method.sample(denoiser, rng.randn(LANGEVIN_SHAPE), 500, rng=rng,
                        **method.resolve_hparams({"snr": snr}))
    assert abs(float(out.mean()) - denoiser.mu) < 0.01
    assert float(out.std()) / denoiser.s == pytest.approx((1 - snr ** 2) ** -0.5, abs=0.005)
