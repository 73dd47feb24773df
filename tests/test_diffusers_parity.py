"""DDPM and DDIM agree with diffusers' schedulers given identical model outputs and noise."""
import pytest
import torch

from methods import METHODS
from methods.base import sample_seed
from methods.ddpm import linear_alphas_cumprod
from tests.helpers import GaussianDenoiser

diffusers = pytest.importorskip("diffusers")
SHAPE = (1, 1, 4, 4)


def exact_eps(denoiser, x_vp, t):
    """The eps-prediction of the Gaussian's exact denoiser at training timestep t."""
    abar = linear_alphas_cumprod()[t].float()
    sigma = ((1 - abar) / abar).sqrt()
    x = x_vp / abar.sqrt()
    return (x - denoiser(x, sigma)) / sigma


def ours(name, denoiser, timesteps, generator_seed, **hparams):
    abar = linear_alphas_cumprod()[timesteps]
    sigmas = torch.cat([((1 - abar) / abar).sqrt(), torch.zeros(1, dtype=abar.dtype)])
    method = METHODS.get(name)
    from methods import PerSampleRNG
    rng = PerSampleRNG(0, [0])
    latents = rng.randn(SHAPE[1:])
    return method.sampler(denoiser, latents, sigmas, rng=rng, **method.resolve_hparams(hparams))


@pytest.mark.parametrize("variance, variance_type", [("small", "fixed_small"), ("large", "fixed_large")])
@pytest.mark.parametrize("clip", [True, False])
def test_ddpm_matches_diffusers_ddpm_scheduler(variance, variance_type, clip):
    denoiser = GaussianDenoiser()
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear",
                                        variance_type=variance_type, clip_sample=clip)
    timesteps = torch.linspace(999, 0, 10).round().long()
    scheduler.set_timesteps(timesteps=timesteps.tolist())
    generator = torch.Generator().manual_seed(sample_seed(0, 0))
    x = torch.randn(SHAPE, generator=generator)
    for t in scheduler.timesteps:
        x = scheduler.step(exact_eps(denoiser, x, int(t)), t, x, generator=generator).prev_sample
    expected = ours("ddpm", denoiser, timesteps, 0, variance=variance, clip_denoised=clip)
    torch.testing.assert_close(expected, x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("clip", [True, False])
def test_ddim_matches_diffusers_ddim_scheduler(eta, clip):
    denoiser = GaussianDenoiser()
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear",
                                        clip_sample=clip, set_alpha_to_one=True)
    scheduler.set_timesteps(10)
    from methods import PerSampleRNG
    twin = PerSampleRNG(0, [0])
    x = twin.randn(SHAPE[1:])
    for index, t in enumerate(scheduler.timesteps):
        last = index == len(scheduler.timesteps) - 1
        noise = torch.zeros(SHAPE) if (last or eta == 0) else twin.randn_like(x)
        x = scheduler.step(exact_eps(denoiser, x, int(t)), t, x, eta=eta, variance_noise=noise,
                           use_clipped_model_output=clip).prev_sample
    expected = ours("ddim", denoiser, scheduler.timesteps.long(), 0, eta=eta, clip_denoised=clip)
    torch.testing.assert_close(expected, x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_on_the_project_s_own_respaced_grid_matches_diffusers(eta):
    """The harness's schedule (`respaced_sigmas`: 10 timesteps from 999 to 0, 111 apart), not
    diffusers' default "leading" one, handed to DDIMScheduler with its step ratio set to match."""
    denoiser = GaussianDenoiser()
    method = METHODS.get("ddim")
    from methods import PerSampleRNG
    sigmas = method.schedule_on(denoiser, 10, method.resolve_hparams({}))
    grid = torch.arange(999, -1, -111)
    assert torch.allclose(sigmas[:-1], denoiser.sigmas[grid].double())
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear",
                                        clip_sample=True, set_alpha_to_one=True)
    scheduler.set_timesteps(9)                  # step ratio 1000 // 9 = 111, the grid's spacing
    scheduler.timesteps = grid
    twin = PerSampleRNG(0, [0])
    x = twin.randn(SHAPE[1:])
    for index, t in enumerate(grid):
        last = index == len(grid) - 1
        noise = torch.zeros(SHAPE) if (last or eta == 0) else twin.randn_like(x)
        x = scheduler.step(exact_eps(denoiser, x, int(t)), t, x, eta=eta, variance_noise=noise,
                           use_clipped_model_output=True).prev_sample
    rng = PerSampleRNG(0, [0])
    expected = method.sample(denoiser, rng.randn(SHAPE[1:]), 10, rng=rng,
                             **method.resolve_hparams({"eta": eta}))
    torch.testing.assert_close(expected, x, rtol=0, atol=1e-5)
