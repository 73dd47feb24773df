"""EDM: Karras, Aittala, Aila & Laine 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models".

Training: the EDM loss (Sec. 5, Table 1): ln(sigma) ~ N(P_mean, P_std^2) with P_mean = -1.2,
P_std = 1.2, weight lambda(sigma) = (sigma^2 + s_d^2) / (sigma s_d)^2, through the EDM
preconditioning (`methods.denoisers.EDMPrecond`, s_d = 0.5).
Sampling: Algorithm 1 (deterministic Heun), Algorithm 2 (stochastic Heun with churn) and
Euler-ancestral steps in sigma space, on the time steps of Eq. 5 (`karras_sigmas`).
"""
import math

import torch

from methods.base import OBJECTIVES, Objective, heun_nfe, register_method
from methods.denoisers import EDMPrecond
from methods.multistep import eps_of, run_solver, solver_schedule
from methods.schedules import SCHEDULE_LIMITS, karras_sigmas, noise_levels  # noqa: F401  (karras_sigmas: re-exported)

P_MEAN, P_STD, SIGMA_DATA = -1.2, 1.2, 0.5


def edm_loss(net, x0, generator, labels=None, lowres=None):
    """E_sigma,n [ lambda(sigma) || D(x0 + n; sigma) - x0 ||^2 ] with lognormal sigma."""
    sigma = (torch.randn(x0.shape[0], generator=generator, device=x0.device) * P_STD + P_MEAN).exp()
    weight = (sigma ** 2 + SIGMA_DATA ** 2) / (sigma * SIGMA_DATA) ** 2
    noise = torch.randn(x0.shape, generator=generator, device=x0.device) * sigma.reshape(-1, 1, 1, 1)
    denoised = EDMPrecond(net, sigma_data=SIGMA_DATA)(x0 + noise, sigma, {"labels": labels, "lowres": lowres})
    return (weight.reshape(-1, 1, 1, 1) * (denoised - x0) ** 2).mean()


OBJECTIVES.register("edm", Objective("edm", edm_loss, lambda net: EDMPrecond(net, sigma_data=SIGMA_DATA)))


def edm_schedule(denoiser, steps: int, *, schedule="karras", sigma_min=0.002, sigma_max=80.0,
                 rho=7.0, sigmas=()) -> torch.Tensor:
    """`steps` noise levels of `schedule` (Eq. 5's `karras_sigmas` unless another is named; see
    methods.schedules), clamped to the denoiser's trained range, then 0."""
    return noise_levels(denoiser, steps, schedule, sigma_min, sigma_max, rho, sigmas)


def heun_step(denoiser, x, t_cur, t_next, cond, last: bool):
    """One step of Algorithms 1 and 2: Euler from t_cur to t_next, then the 2nd-order
    correction unless this is the last step (which ends at sigma = 0)."""
    denoised = denoiser(x, t_cur, cond)
    d_cur = (x - denoised) / t_cur
    x_next = x + (t_next - t_cur) * d_cur                       # Euler step.
    if not last:                                                # 2nd-order correction.
        d_prime = (x_next - denoiser(x_next, t_next, cond)) / t_next
        x_next = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next, denoised


def heun_solve(denoiser, x, sigmas, cond=None, callback=None):
    """Integrate the probability-flow ODE from x at sigmas[0] through `sigmas` (Algorithm 1's loop)."""
    num_steps = len(sigmas) - 1
    for i in range(num_steps):
        t_cur, t_next = sigmas[i].to(x.dtype), sigmas[i + 1].to(x.dtype)
        x, denoised = heun_step(denoiser, x, t_cur, t_next, cond, last=i == num_steps - 1)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": t_cur, "denoised": denoised})
    return x


@torch.no_grad()
def sample_edm_heun(denoiser, x, sigmas, *, rng, cond=None, callback=None):
    """EDM deterministic sampler (Karras et al. 2022, Algorithm 1): Heun, Euler on the last step."""
    return heun_solve(denoiser, x * sigmas[0].to(x.dtype), sigmas, cond, callback)


@torch.no_grad()
def sample_edm_stochastic(denoiser, x, sigmas, *, rng, cond=None, callback=None, S_churn=0.0,
                          S_min=0.0, S_max=1000.0, S_noise=1.0):
    """EDM stochastic sampler (Karras et al. 2022, Algorithm 2): Heun with churn.

    S_max defaults to 1000 rather than the reference code's inf (JSON rows cannot hold inf);
    above every sigma_max used here, it is the same sampler."""
    num_steps = len(sigmas) - 1
    x = x * sigmas[0].to(x.dtype)
    for i in range(num_steps):
        t_cur, t_next = sigmas[i].to(x.dtype), sigmas[i + 1].to(x.dtype)
        # Increase noise temporarily: t_hat = t_cur + gamma t_cur.
        gamma = min(S_churn / num_steps, math.sqrt(2) - 1) if S_min <= float(t_cur) <= S_max else 0.0
        t_hat = t_cur + gamma * t_cur
        if gamma > 0:
            x = x + (t_hat ** 2 - t_cur ** 2).sqrt() * S_noise * rng.randn_like(x)
        x, denoised = heun_step(denoiser, x, t_hat, t_next, cond, last=i == num_steps - 1)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": t_hat, "denoised": denoised})
    return x


def ancestral_step(sigma_from, sigma_to, eta: float = 1.0):
    """Split a step to sigma_to into a deterministic part down to sigma_down and fresh noise
    sigma_up, with sigma_down^2 + sigma_up^2 = sigma_to^2 (the DDPM-like ancestral split)."""
    sigma_up = torch.minimum(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2).sqrt())
    return (sigma_to ** 2 - sigma_up ** 2).sqrt(), sigma_up


@torch.no_grad()
def sample_edm_euler_ancestral(denoiser, x, sigmas, *, rng, cond=None, callback=None, eta=1.0,
                               s_noise=1.0):
    """Euler-ancestral steps in sigma space (the ancestral sampler of k-diffusion, after
    Song et al. 2021's reverse-SDE ancestral sampling) on an EDM denoiser."""
    x = x * sigmas[0].to(x.dtype)
    for i in range(len(sigmas) - 1):
        t_cur, t_next = sigmas[i].to(x.dtype), sigmas[i + 1].to(x.dtype)
        denoised = denoiser(x, t_cur, cond)
        sigma_down, sigma_up = ancestral_step(t_cur, t_next, eta)
        x = x + (sigma_down - t_cur) * (x - denoised) / t_cur   # Euler step to sigma_down.
        if t_next > 0:
            x = x + sigma_up * s_noise * rng.randn_like(x)      # Fresh noise up to sigma_next.
        if callback is not None:
            callback({"i": i, "x": x, "sigma": t_cur, "denoised": denoised})
    return x


@torch.no_grad()
def sample_edm_euler(denoiser, x, sigmas, *, rng, cond=None, callback=None, afs=False,
                     denoise_to_zero=False):
    """Euler steps of the probability-flow ODE (Karras et al. 2022, Sec. 3; DDIM's sampler in
    sigma space): the first-order baseline of the low-NFE solvers (NFE = steps)."""
    def step(x, i, levels, history):
        return x + (levels[i + 1] - levels[i]) * eps_of(x, history[-1], levels[i])   # Euler step.
    return run_solver(denoiser, x, sigmas, cond, callback, afs=afs, denoise_to_zero=denoise_to_zero,
                      step=step)


KARRAS_LIMITS = SCHEDULE_LIMITS
register_method(
    name="edm-heun", family="edm", task="generate", model="edm", sampler=sample_edm_heun,
    schedule=edm_schedule, version="1", expected_nfe=heun_nfe, limits=KARRAS_LIMITS,
    paper="Karras et al. 2022, Algorithm 1")
register_method(
    name="edm-stochastic", family="edm", task="generate", model="edm", sampler=sample_edm_stochastic,
    schedule=edm_schedule, version="1", expected_nfe=heun_nfe,
    limits={**KARRAS_LIMITS, "S_churn": (0.0, 1e6), "S_min": (0.0, 1e6), "S_max": (0.0, 1e6),
            "S_noise": (0.0, 10.0)},
    paper="Karras et al. 2022, Algorithm 2")
register_method(
    name="edm-euler-ancestral", family="edm", task="generate", model="edm",
    sampler=sample_edm_euler_ancestral, schedule=edm_schedule, version="1",
    limits={**KARRAS_LIMITS, "eta": (0.0, 10.0), "s_noise": (0.0, 10.0)},
    paper="Euler-ancestral in sigma space (k-diffusion), EDM denoiser")
register_method(
    name="edm-euler", family="edm", task="generate", model="edm", sampler=sample_edm_euler,
    schedule=solver_schedule, version="1", recorded_when_set=(), limits=KARRAS_LIMITS,
    paper="Karras et al. 2022, Euler (first order, the DDIM ODE in sigma)")
