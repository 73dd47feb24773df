"""A diffbench plugin: DPM-Solver++(2M), Lu, Zhou, Bao, Chen, Li & Zhu 2022, "DPM-Solver++: Fast
Solver for Guided Sampling of Diffusion Probabilistic Models", Algorithm 2.

Run it with  diffbench run quick --plugin examples/plugin_dpm_solver.py  (cells naming
"dpmpp-2m"), or name the file in a suite:  [suite] plugins = ["../examples/plugin_dpm_solver.py"].

The solver integrates the diffusion ODE in its data-prediction form, x_theta(x_t, t) = D(x; sigma),
with the multistep second-order update. Written on diffbench's Denoiser contract, x = x0 + sigma n,
so alpha_t = 1, sigma_t = sigma and the half-log-SNR is lambda = -log(sigma):
    h_i = lambda_i - lambda_{i-1} = log(sigma_{i-1} / sigma_i)
    x_i = (sigma_i / sigma_{i-1}) x_{i-1} - (exp(-h_i) - 1) D_i
with D_1 = x_theta(x_0, t_0) (first order) and, for i >= 2, r_i = h_{i-1} / h_i and
    D_i = (1 + 1 / (2 r_i)) x_theta(x_{i-1}, t_{i-1}) - 1 / (2 r_i) x_theta(x_{i-2}, t_{i-2}).
The schedules used here end at sigma = 0 (lambda = inf), where the paper's last time is a small
t_M > 0; a step to sigma = 0 therefore takes the first-order update, which returns the last
denoised estimate. One network evaluation per step.
"""
import torch

from methods.base import register_method
from methods.edm import KARRAS_LIMITS, edm_schedule


@torch.no_grad()
def sample_dpmpp_2m(denoiser, x, sigmas, *, rng, cond=None, callback=None):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) in sigma space."""
    x = x * sigmas[0].to(x.dtype)
    previous_denoised, previous_h = None, None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i].to(x.dtype), sigmas[i + 1].to(x.dtype)
        denoised = denoiser(x, sigma, cond)
        if sigma_next == 0:                                      # lambda = inf: x_M = D.
            x = denoised
        else:
            h = torch.log(sigma / sigma_next)                    # h_i = lambda_i - lambda_{i-1}.
            if previous_denoised is None:                        # First step: first order.
                d = denoised
            else:                                                # Multistep 2nd-order D_i.
                r = previous_h / h
                d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous_denoised
            x = (sigma_next / sigma) * x - torch.expm1(-h) * d
            previous_h = h
        previous_denoised = denoised
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma, "denoised": denoised})
    return x


register_method(
    name="dpmpp-2m", family="dpm-solver", task="generate", model="edm", sampler=sample_dpmpp_2m,
    schedule=edm_schedule, version="1", limits=KARRAS_LIMITS,
    paper="Lu et al. 2022, DPM-Solver++(2M), Algorithm 2")
