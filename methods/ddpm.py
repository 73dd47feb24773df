"""DDPM: Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models".

Training: L_simple (Eq. 14) on a linear beta schedule, 1e-4 to 0.02 over T = 1000 steps.
Sampling: Algorithm 2 (ancestral sampling), respaced to any number of steps by taking a subset
of the training timesteps (Nichol & Dhariwal 2021, Sec. 4), with the reverse-step variance
either the posterior's beta-tilde ("small") or beta ("large") (Sec. 3.2: both work similarly).

`clip_denoised=True` clips the predicted x0 to the data range [-1, 1] before forming the
posterior mean, as the authors' released code does (Algorithm 2 itself writes the mean in eps
form, which equals `clip_denoised=False`). With a small CPU-trained network the unclipped x0 at
the highest noise levels is off by tens (an eps error of 0.04 times sigma_max = 157), and a
deterministic sampler never recovers from it; clipping is the reference implementations' answer.

Notation (code | paper):
    a_t, a_s          | alpha-bar_t and alpha-bar_{t-1}: the current and the next (respaced) step
    beta              | beta_t = 1 - a_t / a_s, the respaced chain's own step (Nichol & Dhariwal 2021, Sec. 4)
    x0, eps           | x-hat_0 and eps_theta(x_t, t): the network's prediction, in both forms
    mean, var         | mu-tilde_t(x_t, x-hat_0) (Eq. 7) and sigma_t^2 (beta-tilde_t or beta_t)
    sigmas[i]         | sqrt((1 - alpha-bar_t) / alpha-bar_t): timestep t as the Denoiser's noise level
tests/test_samplers.py::test_ddpm_step_matches_algorithm_2 checks one step against Algorithm 2
line by line.
"""
import torch
from torch.nn import functional as F

from methods.base import OBJECTIVES, Objective, register_method
from methods.denoisers import DiscreteVPDenoiser

NUM_TRAIN_STEPS = 1000
DDPM_LIMITS = {"variance": {"small", "large"}}


def linear_alphas_cumprod(num_steps: int = NUM_TRAIN_STEPS, beta_start: float = 1e-4,
                          beta_end: float = 0.02) -> torch.Tensor:
    betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def discrete_alphas_cumprod(beta_schedule: str = "linear", num_steps: int = NUM_TRAIN_STEPS,
                            beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """alpha-bar of a discrete training schedule, by diffusers' names: "linear" (Ho et al.
    2020), "scaled_linear" (linear in sqrt(beta), Latent Diffusion) or "squaredcos_cap_v2"
    (the cosine schedule of Nichol & Dhariwal 2021, Eq. 17, betas capped at 0.999)."""
    if beta_schedule == "linear":
        return linear_alphas_cumprod(num_steps, beta_start, beta_end)
    if beta_schedule == "scaled_linear":
        betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_steps, dtype=torch.float64) ** 2
        return torch.cumprod(1 - betas, dim=0)
    if beta_schedule == "squaredcos_cap_v2":
        def f(t):
            return torch.cos((t / num_steps + 0.008) / 1.008 * torch.pi / 2) ** 2
        steps = torch.arange(num_steps, dtype=torch.float64)
        betas = (1 - f(steps + 1) / f(steps)).clamp(max=0.999)
        return torch.cumprod(1 - betas, dim=0)
    raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {beta_schedule!r}")


def eps_loss(alphas_cumprod: torch.Tensor, net, x0, generator, labels=None, lowres=None):
    """L_simple: || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2, t ~ U{0..T-1},
    on the training schedule `alphas_cumprod`."""
    alphas_cumprod = alphas_cumprod.to(x0.device, torch.float32)
    t = torch.randint(0, NUM_TRAIN_STEPS, (x0.shape[0],), generator=generator, device=x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device)
    abar = alphas_cumprod[t].reshape(-1, 1, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    return F.mse_loss(net(x_t, t.float(), class_labels=labels, cond_image=lowres), eps)


def ddpm_eps_loss(net, x0, generator, labels=None, lowres=None):
    """DDPM's objective on its linear beta schedule (Ho et al. 2020)."""
    return eps_loss(linear_alphas_cumprod(), net, x0, generator, labels, lowres)


def cosine_eps_loss(net, x0, generator, labels=None, lowres=None):
    """The same objective on the cosine schedule (Nichol & Dhariwal 2021, diffusers'
    "squaredcos_cap_v2")."""
    return eps_loss(discrete_alphas_cumprod("squaredcos_cap_v2"), net, x0, generator, labels, lowres)


def make_eps_denoiser(net):
    return DiscreteVPDenoiser(net, linear_alphas_cumprod())


def make_cosine_eps_denoiser(net):
    return DiscreteVPDenoiser(net, discrete_alphas_cumprod("squaredcos_cap_v2"))


OBJECTIVES.register("ddpm-eps", Objective("ddpm-eps", ddpm_eps_loss, make_eps_denoiser))
OBJECTIVES.register("ddpm-eps-cosine", Objective("ddpm-eps-cosine", cosine_eps_loss,
                                                 make_cosine_eps_denoiser))


def respaced_sigmas(denoiser, steps: int) -> torch.Tensor:
    """`steps` training timesteps evenly spaced from T-1 down to 0 (both included), then 0."""
    num_train = len(denoiser.sigmas)
    if not 1 <= steps <= num_train:
        raise ValueError(f"steps must be in 1..{num_train}, got {steps}")
    timesteps = torch.linspace(num_train - 1, 0, steps).round().long()
    return torch.cat([denoiser.sigmas[timesteps].double(), torch.zeros(1, dtype=torch.float64)])


def alpha_bar(sigma: torch.Tensor) -> torch.Tensor:
    """VP signal level alpha-bar of noise level sigma (alpha-bar = 1 at sigma = 0)."""
    return 1 / (1 + sigma ** 2)


def predict_x0_eps(denoiser, x_vp, a_t, sigma, cond):
    """Evaluate the denoiser on the VP state x_t and return (x0_hat, eps_hat) in VP terms."""
    x0 = denoiser(x_vp / a_t.sqrt(), sigma, cond)
    eps = (x_vp - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    return x0, eps


@torch.no_grad()
def sample_ddpm(denoiser, x, sigmas, *, rng, cond=None, callback=None, variance="small",
                clip_denoised=True):
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) over respaced timesteps."""
    if variance not in ("small", "large"):
        raise ValueError(f"variance must be 'small' or 'large', got {variance!r}")
    for i in range(len(sigmas) - 1):
        a_t, a_s = alpha_bar(sigmas[i]), alpha_bar(sigmas[i + 1])
        x0, _ = predict_x0_eps(denoiser, x, a_t.to(x.dtype), sigmas[i], cond)
        if clip_denoised:
            x0 = x0.clamp(-1, 1)
        # Posterior q(x_s | x_t, x0) of the respaced chain, with beta_t = 1 - abar_t / abar_s.
        beta = 1 - a_t / a_s
        mean = (a_s.sqrt() * beta / (1 - a_t)) * x0 + ((1 - beta).sqrt() * (1 - a_s) / (1 - a_t)) * x
        x = mean.to(x.dtype)
        if sigmas[i + 1] > 0:
            var = beta * (1 - a_s) / (1 - a_t) if variance == "small" else beta
            x = x + var.sqrt().to(x.dtype) * rng.randn_like(x)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigmas[i], "denoised": x0})
    return x


register_method(
    name="ddpm", family="ddpm", task="generate", model="eps", sampler=sample_ddpm,
    schedule=respaced_sigmas, version="1", max_steps=NUM_TRAIN_STEPS, limits=DDPM_LIMITS,
    start="vp", paper="Ho et al. 2020, Algorithm 2 (respaced)")
