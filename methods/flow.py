"""Flow matching / rectified flow: Lipman et al. 2023, "Flow Matching for Generative Modeling"
(conditional OT path with sigma_min = 0) and Liu et al. 2022, "Flow Straight and Fast".

Time convention: t = 0 is data, t = 1 is Gaussian noise, x_t = (1 - t) x0 + t n, and the
network predicts the velocity v = dx_t/dt = n - x0 (trained with t ~ U(0, 1)). Samplers
integrate the ODE from t = t_max (noise) down to t = 0 (data) on a uniform grid in t.
Through the Denoiser contract sigma = t / (1 - t), so t_max = sigma_max / (1 + sigma_max).
"""
import torch
from torch.nn import functional as F

from methods.base import OBJECTIVES, Objective, heun_nfe, register_method
from methods.denoisers import FlowVelocityDenoiser


def flow_matching_loss(net, x0, generator, labels=None, lowres=None):
    """|| v_theta(x_t, t) - (n - x0) ||^2 with t ~ U(0, 1)."""
    t = torch.rand(x0.shape[0], generator=generator, device=x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device)
    t_ = t.reshape(-1, 1, 1, 1)
    x_t = (1 - t_) * x0 + t_ * noise
    velocity = net(x_t, 1000 * t, class_labels=labels, cond_image=lowres)
    return F.mse_loss(velocity, noise - x0)


OBJECTIVES.register("flow", Objective("flow", flow_matching_loss, FlowVelocityDenoiser))


def flow_schedule(denoiser, steps: int) -> torch.Tensor:
    """`steps` uniform steps in t from t_max to 0, returned as sigmas = t / (1 - t)."""
    t_max = denoiser.sigma_max / (1 + denoiser.sigma_max)
    t = torch.linspace(t_max, 0, steps + 1, dtype=torch.float64)
    return t / (1 - t)


def velocity(denoiser, x_t, sigma, cond):
    """v(x_t, t) from the Denoiser: x0_hat at sigma = t / (1 - t), then v = (x_t - x0_hat) / t."""
    t = sigma / (1 + sigma)
    x0 = denoiser(x_t * (1 + sigma), sigma, cond)
    return (x_t - x0) / t, x0


@torch.no_grad()
def sample_flow_euler(denoiser, x, sigmas, *, rng, cond=None, callback=None):
    """Flow matching ODE from noise (t = t_max) to data (t = 0) with Euler steps."""
    times = sigmas / (1 + sigmas)
    x = x * times[0].to(x.dtype)
    for i in range(len(sigmas) - 1):
        v, x0 = velocity(denoiser, x, sigmas[i].to(x.dtype), cond)
        x = x + (times[i + 1] - times[i]).to(x.dtype) * v          # Euler step.
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigmas[i], "denoised": x0})
    return x


@torch.no_grad()
def sample_flow_heun(denoiser, x, sigmas, *, rng, cond=None, callback=None):
    """Flow matching ODE with Heun steps (Euler on the last step, which ends at t = 0)."""
    times = sigmas / (1 + sigmas)
    x = x * times[0].to(x.dtype)
    for i in range(len(sigmas) - 1):
        dt = (times[i + 1] - times[i]).to(x.dtype)
        v, x0 = velocity(denoiser, x, sigmas[i].to(x.dtype), cond)
        x_next = x + dt * v                                         # Euler step.
        if sigmas[i + 1] > 0:                                       # 2nd-order correction.
            v_next, _ = velocity(denoiser, x_next, sigmas[i + 1].to(x.dtype), cond)
            x_next = x + dt * 0.5 * (v + v_next)
        x = x_next
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigmas[i], "denoised": x0})
    return x


register_method(
    name="flow-euler", family="flow", task="generate", model="flow", sampler=sample_flow_euler,
    schedule=flow_schedule, version="1", paper="Lipman et al. 2023; Liu et al. 2022 (Euler)")
register_method(
    name="flow-heun", family="flow", task="generate", model="flow", sampler=sample_flow_heun,
    schedule=flow_schedule, version="1", expected_nfe=heun_nfe,
    paper="Lipman et al. 2023; Liu et al. 2022 (Heun)")
