"""SDEdit and inpainting against the exact denoiser of a correlated Gaussian, where the answer is
known: a two-pixel image x0 ~ N(0, S^2 [[1, RHO], [RHO, 1]]); with pixel 0 known to be A, the
hole is N(RHO A, S^2 (1 - RHO^2))."""
import pytest
import torch

from methods import METHODS, PerSampleRNG
from methods.edm import edm_schedule, sample_edm_heun
from methods.editing import (repaint_path, sample_inpaint_replace, sample_repaint, sample_sdedit,
                             sdedit_start)

SHAPE = (1, 1, 2)
S, RHO, A = 1.0, 0.9, 1.5
COVARIANCE = S ** 2 * torch.tensor([[1.0, RHO], [RHO, 1.0]])


class CorrelatedGaussianDenoiser(torch.nn.Module):
    """E[x0 | x0 + sigma n = x] = C (C + sigma^2 I)^-1 x for x0 ~ N(0, C)."""
    sigma_min, sigma_max, sigma_data = 0.002, 80.0, S

    def forward(self, x, sigma, cond=None):
        sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1, 1).expand(x.shape[0], 1, 1)
        covariance = COVARIANCE.double().expand(x.shape[0], 2, 2)
        # C (C + sigma^2 I)^-1 x = C solve(C + sigma^2 I, x), C and the solve symmetric
        solved = torch.linalg.solve(covariance + sigma ** 2 * torch.eye(2, dtype=torch.float64),
                                    x.reshape(x.shape[0], 2, 1).double())
        return (covariance @ solved).reshape(x.shape).to(x.dtype)


@pytest.fixture()
def denoiser():
    return CorrelatedGaussianDenoiser()


def inpaint(sampler, denoiser, count=2000, steps=50, **hparams):
    rng = PerSampleRNG(0, range(count))
    source = torch.tensor([A, -3.0]).reshape(1, *SHAPE).expand(count, *SHAPE)   # pixel 1 unknown
    mask = torch.tensor([1.0, 0.0]).reshape(1, *SHAPE)
    sigmas = edm_schedule(denoiser, steps)
    return sampler(denoiser, rng.randn(SHAPE), sigmas, rng=rng, source=source, mask=mask, **hparams)


@pytest.mark.parametrize("sampler", [sample_inpaint_replace, sample_repaint])
def test_inpainting_keeps_the_known_pixels_exactly(denoiser, sampler):
    out = inpaint(sampler, denoiser, count=50)
    assert torch.equal(out[:, 0, 0, 0], torch.full((50,), A))


def test_resampling_brings_the_hole_near_its_conditional_where_replacement_fails(denoiser):
    """Replacement pairs the hole with known pixels noised independently of it, so the hole
    under-uses what is known: at 50 steps its mean is 0.92 against the exact 1.35, its std 0.52
    against 0.44. RePaint's resampling (jump 5, 10 samples) harmonises: mean 1.29, std 0.41; 20
    samples 1.31. It approaches the conditional without reaching it (no jumps in the last
    `jump_length` steps), so the test asks for a fifth of replacement's error, not zero."""
    replaced = inpaint(sample_inpaint_replace, denoiser)[:, 0, 0, 1]
    resampled = inpaint(sample_repaint, denoiser, jump_length=5, jump_n_sample=10)[:, 0, 0, 1]
    exact_mean, exact_std = RHO * A, S * (1 - RHO ** 2) ** 0.5
    assert abs(float(replaced.mean()) - exact_mean) > 0.3
    assert abs(float(resampled.mean()) - exact_mean) < 0.2 * abs(float(replaced.mean()) - exact_mean)
    assert float(resampled.std()) == pytest.approx(exact_std, abs=0.05)


def test_the_repaint_schedule_jumps_back_jump_n_sample_minus_one_times_per_point():
    path = repaint_path(6, 2, 3)
    downs = sum(b > a for a, b in zip(path, path[1:]))
    ups = sum(b < a for a, b in zip(path, path[1:]))
    assert path[0] == 0 and path[-1] == 6 and ups == 2 * 2 * 2     # 2 jump points x 2 jumps x 2
    assert downs == 6 + ups
    assert repaint_path(6, 2, 1) == list(range(7))


def run_sdedit(denoiser, strength, steps=20):
    rng = PerSampleRNG(3, range(8))
    source = PerSampleRNG(9, range(8)).randn(SHAPE)
    sigmas = edm_schedule(denoiser, steps)
    return sample_sdedit(sample_edm_heun, denoiser, rng.randn(SHAPE), sigmas, rng=rng,
                         source=source, strength=strength), source


def test_sdedit_with_strength_zero_returns_the_input(denoiser):
    out, source = run_sdedit(denoiser, 0.0)
    assert torch.equal(out, source)


def test_sdedit_at_full_strength_is_unconditional_sampling_up_to_the_guide_s_trace(denoiser):
    """t0 = 1 starts from y + sigma_max z: the unconditional sampler's start z sigma_max moved
    by y, whose trace on the output shrinks as sigma_max grows (|y| / sigma_max here: ~1/80)."""
    out, _ = run_sdedit(denoiser, 1.0)
    rng = PerSampleRNG(3, range(8))
    unconditional = METHODS.get("edm-heun").sample(denoiser, rng.randn(SHAPE), 20, rng=rng,
                                                   **METHODS.get("edm-heun").resolve_hparams({}))
    assert torch.allclose(out, unconditional, atol=0.1)
    assert not torch.equal(out, unconditional)


def test_sdedit_strength_picks_the_tail_of_the_schedule():
    sigmas = torch.linspace(80, 0, 21)
    assert [sdedit_start(sigmas, s) for s in (0.0, 0.25, 0.5, 1.0)] == [20, 15, 10, 0]
