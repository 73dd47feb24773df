"""DDPM and DDIM against their papers' update rules, on the exact denoiser of a Gaussian."""
import pytest
import torch

from bench.run.cost import CountingDenoiser
from methods import METHODS, PerSampleRNG
from methods.ddim import sample_ddim
from methods.ddpm import alpha_bar, respaced_sigmas, sample_ddpm
from tests.helpers import GaussianDenoiser

SHAPE = (1, 4, 4)
GENERATORS = [("ddpm", {}), ("ddpm", {"variance": "large"}), ("ddim", {"eta": 1.0}),
              ("ddim", {"eta": 0.0}), ("edm-heun", {}), ("edm-stochastic", {"S_churn": 40.0}),
              ("edm-euler-ancestral", {}), ("flow-euler", {}), ("flow-heun", {}),
              ("sde-euler-maruyama", {}), ("sde-pc", {}), ("sde-pc", {"corrector_steps": 2, "snr": 0.1})]
SUPER_RESOLVERS = [("bicubic", {}), ("sr3", {}), ("headstart", {}), ("headstart", {"sigma_start": 5.0}),
                   ("regression", {})]
EVERY_SAMPLER = GENERATORS + SUPER_RESOLVERS


def lowres_condition(indices) -> dict:
    """A stand-in upsampled LR image for super-resolution methods, different for every sample."""
    return {"lowres": torch.stack([torch.full(SHAPE, 0.01 * i - 0.3) for i in indices])}


def run(method_name, denoiser, indices, steps=10, seed=0, **hparams):
    """Sample with the exact Gaussian denoiser; x0-clipping is off because N(0.3, 0.5^2) leaves [-1, 1]."""
    method = METHODS.get(method_name)
    if "clip_denoised" in method.defaults:
        hparams.setdefault("clip_denoised", False)
    hparams = method.resolve_hparams(hparams)
    rng = PerSampleRNG(seed, indices)
    latents = rng.randn(SHAPE)
    cond = lowres_condition(indices) if method.task == "superres" else None
    return method.sample(denoiser, latents, steps, rng=rng, cond=cond, **hparams)


@pytest.mark.parametrize("name, hparams", EVERY_SAMPLER)
def test_sample_i_is_the_same_for_batch_sizes_1_7_64(gaussian_denoiser, name, hparams):
    full = run(name, gaussian_denoiser, range(64), **hparams)
    singles = torch.cat([run(name, gaussian_denoiser, [i], **hparams) for i in (0, 5, 63)])
    seven = torch.cat([run(name, gaussian_denoiser, range(s, min(s + 7, 64)), **hparams)
                       for s in range(0, 64, 7)])
    torch.testing.assert_close(singles, full[[0, 5, 63]], rtol=0, atol=1e-6)
    torch.testing.assert_close(seven, full, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name, hparams", EVERY_SAMPLER)
@pytest.mark.parametrize("steps", [1, 5, 17])
def test_nfe_equals_denoiser_calls(gaussian_denoiser, name, hparams, steps):
    calls = []

    class Spy(torch.nn.Module):
        sigmas = gaussian_denoiser.sigmas
        sigma_min, sigma_max = gaussian_denoiser.sigma_min, gaussian_denoiser.sigma_max

        def forward(self, x, sigma, cond=None):
            calls.append(1)
            return gaussian_denoiser(x, sigma, cond)

    counter = CountingDenoiser(Spy())
    run(name, counter, range(3), steps=steps, **hparams)
    assert counter.calls == len(calls) == METHODS.get(name).planned_nfe(steps, hparams)


def test_ddim_eta0_is_deterministic_given_latents(gaussian_denoiser):
    a = run("ddim", gaussian_denoiser, range(8), seed=1)
    b = run("ddim", gaussian_denoiser, range(8), seed=1)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_ddim_eta0_draws_no_noise_after_the_latents(gaussian_denoiser):
    class CountingRNG(PerSampleRNG):
        draws = 0

        def randn_like(self, x):
            CountingRNG.draws += 1
            return super().randn_like(x)

    rng = CountingRNG(0, range(4))
    sigmas = respaced_sigmas(gaussian_denoiser, 10)
    sample_ddim(gaussian_denoiser, rng.randn(SHAPE), sigmas, rng=rng, eta=0.0)
    assert CountingRNG.draws == 0


def test_ddim_eta1_equals_ddpm_posterior_variance_sampling(gaussian_denoiser):
    torch.testing.assert_close(run("ddim", gaussian_denoiser, range(16), eta=1.0),
                               run("ddpm", gaussian_denoiser, range(16), variance="small"),
                               rtol=0, atol=1e-5)


def test_ddim_eta1_sigma_is_the_posterior_std():
    """Eq. 16 at eta = 1 is beta-tilde = (1 - abar_s) / (1 - abar_t) * beta_t (DDPM Eq. 7)."""
    from methods.ddpm import linear_alphas_cumprod
    abar = linear_alphas_cumprod()
    t, s = 500, 499
    beta_t = 1 - abar[t] / abar[s]
    beta_tilde = (1 - abar[s]) / (1 - abar[t]) * beta_t
    a_t = alpha_bar(((1 - abar[t]) / abar[t]).sqrt())
    a_s = alpha_bar(((1 - abar[s]) / abar[s]).sqrt())
    sigma_eq16 = ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)).sqrt()
    torch.testing.assert_close(sigma_eq16 ** 2, beta_tilde, rtol=1e-9, atol=0)


def test_ddpm_step_matches_algorithm_2(gaussian_denoiser):
    """One step at consecutive training timesteps equals Ho et al.'s eps-form update."""
    from methods.ddpm import linear_alphas_cumprod
    abar = linear_alphas_cumprod()
    t = 600
    alpha_t, beta_t = abar[t] / abar[t - 1], 1 - abar[t] / abar[t - 1]
    sigmas = ((1 - abar[[t, t - 1]]) / abar[[t, t - 1]]).sqrt()
    sigmas = torch.cat([sigmas, torch.zeros(1, dtype=sigmas.dtype)])
    x_t = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(3))
    rng = PerSampleRNG(7, range(2))
    ours = sample_ddpm(gaussian_denoiser, x_t, sigmas[:2].tolist() and sigmas[:2], rng=rng,
                       variance="large", clip_denoised=False)
    # Algorithm 2 with the exact eps of the Gaussian denoiser.
    sigma = float(sigmas[0])
    x0 = gaussian_denoiser(x_t / abar[t].sqrt().float(), sigma)
    eps = (x_t - abar[t].sqrt().float() * x0) / (1 - abar[t]).sqrt().float()
    z = PerSampleRNG(7, range(2)).randn(SHAPE)
    expected = (x_t - (beta_t / (1 - abar[t]).sqrt()).float() * eps) / alpha_t.sqrt().float() \
        + beta_t.sqrt().float() * z
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)


# sde-pc's Langevin corrector settles at a std above the data's at any step count; test_sde.py
# checks it against that analytic value.
@pytest.mark.parametrize("name, hparams", [g for g in GENERATORS if g[0] != "sde-pc"])
def test_samplers_recover_the_gaussian_data_distribution(gaussian_denoiser, name, hparams):
    """With the exact denoiser, 250 steps land within 0.02 of the data mean and std, and the
    std error shrinks from 25 to 250 steps (DDPM's reverse variance is biased at coarse steps)."""
    coarse = run(name, gaussian_denoiser, range(1000), steps=25, **hparams)
    fine = run(name, gaussian_denoiser, range(1000), steps=250, **hparams)
    assert abs(float(fine.mean()) - gaussian_denoiser.mu) < 0.02
    assert abs(float(fine.std()) - gaussian_denoiser.s) < 0.02
    # Once a sampler is at the Monte-Carlo floor (std's standard error here: 0.5 / sqrt(2 * 16000)
    # = 0.003), "shrinks" can only hold to within that error.
    fine_error = abs(float(fine.std()) - gaussian_denoiser.s)
    assert fine_error < abs(float(coarse.std()) - gaussian_denoiser.s) + 0.003


def test_respaced_sigmas_span_the_training_range(gaussian_denoiser):
    sigmas = respaced_sigmas(gaussian_denoiser, 10)
    assert len(sigmas) == 11 and sigmas[-1] == 0
    assert float(sigmas[0]) == pytest.approx(gaussian_denoiser.sigma_max, rel=1e-6)
    assert float(sigmas[-2]) == pytest.approx(gaussian_denoiser.sigma_min, rel=1e-6)
    assert (sigmas[:-1].diff() < 0).all()


@pytest.mark.parametrize("name", ["ddpm", "ddim"])
def test_clip_denoised_keeps_predicted_x0_in_the_data_range(name):
    """A denoiser that predicts x0 = 5 everywhere: clipped, the sample ends at 1; unclipped at 5."""
    class Overshoot(torch.nn.Module):
        sigmas = GaussianDenoiser().sigmas

        def forward(self, x, sigma, cond=None):
            return torch.full_like(x, 5.0)

    clipped = run(name, Overshoot(), range(2), steps=5, clip_denoised=True)
    unclipped = run(name, Overshoot(), range(2), steps=5, clip_denoised=False)
    assert clipped.max() <= 1.0 + 1e-6 and unclipped.min() > 4.9
