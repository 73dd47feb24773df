"""DPM-Solver: Lu, Zhou, Bao, Chen, Li & Zhu 2022, "DPM-Solver: A Fast ODE Solver for Diffusion
Probabilistic Model Sampling in Around 10 Steps" (NeurIPS), and "DPM-Solver++: Fast Solver for
Guided Sampling of Diffusion Probabilistic Models" (2022).

Both integrate the probability-flow ODE exactly in its linear part and approximate the network's
output by a Taylor expansion in the half log-SNR lambda. On diffbench's Denoiser contract
x = x0 + sigma n, so alpha = 1, sigma_t = sigma and lambda = -log sigma; a step from level s to
level t has h = lambda_t - lambda_s = log(s / t).

- `dpm-solver-2` (DPM-Solver, Algorithm 1 with r1 = 1/2, noise prediction eps = (x - D) / sigma):
      s' = the lambda-midpoint, sigma_s' = sqrt(s t)
      u = x - sigma_s' (e^(h/2) - 1) eps(x, s)      = x + (s' - s) eps(x, s)
      x_t = x - t (e^h - 1) eps(u, s')               = x + (t - s) eps(u, s')
  which is EDM's general second-order Runge-Kutta step (Karras et al. 2022, the `alpha` of its
  ablation sampler: x' = x + alpha h d, x_t = x + h ((1 - 1/(2 alpha)) d + 1/(2 alpha) d'))
  with alpha = 1/2 (the midpoint weights 0
  and 1) and the intermediate level taken at the geometric mean of s and t rather than the
  arithmetic one: tests/test_lownfe_solvers.py checks that identity. Two evaluations a step,
  `steps` steps on `steps` + 1 levels: NFE = 2 steps, minus one with `afs`, plus one with
  `denoise_to_zero` (the diff-sampler grid reports it at even NFE only, as here).
- `dpmpp-3m` (DPM-Solver++, the multistep data-prediction solver of order 1-3, `order` = 3):
      order 1: x_t = (t / s) x - (e^-h - 1) D_0
      order 2: x_t = (t / s) x - (e^-h - 1) (D_0 + D1 / 2),   D1 = (D_0 - D_-1) / r_0
      order 3: x_t = (t / s) x - phi_1 D_0 + phi_2 D1 - phi_3 D2 with phi_1 = e^-h - 1,
               phi_2 = phi_1 / h + 1, phi_3 = phi_2 / h - 1/2 and D1, D2 the first and second
               divided differences of the last three estimates in lambda (r_0, r_1 the
               previous steps over h),
  warm started at orders 1 and 2, and with `lower_order_final` (the reference code's default,
  applied below 10 steps) lowered again over the last steps. One evaluation a step: NFE = steps.
  The order-3 formula is the reference code's (dpm-solver, diffusers and diff-sampler agree),
  and measured on the exact Gaussian its local error is O(h^3), one order short: D2 is half the
  second derivative times h^2 while phi_3's term needs the whole, so the step is second order
  like 2M with a different error constant. `taylor_d2 = true` doubles the D2 term, the Taylor
  coefficient, which gives the O(h^4) local error of a third-order method
  (tests/test_lownfe_solvers.py measures both).
  Paper defaults here: the logSNR-uniform schedule (DPM-Solver's choice for small images).
"""
import math

import torch

from methods.base import register_method
from methods.multistep import SOLVER_LIMITS, eps_of, run_solver, solver_schedule, step_order
from methods.schedules import SCHEDULE_LIMITS, analytic_denoised, noise_levels

LOWER_ORDER_FINAL_BELOW = 10   # DPM-Solver's reference sampler lowers the final orders below 10 steps


def singlestep_schedule(denoiser, steps: int, *, schedule="karras", sigma_min=0.002, sigma_max=80.0,
                        rho=7.0, sigmas=(), afs=False, denoise_to_zero=False) -> torch.Tensor:
    """`steps` + 1 levels (two evaluations a step), then 0."""
    return noise_levels(denoiser, steps + 1, schedule, sigma_min, sigma_max, rho, sigmas)


def singlestep_nfe(steps: int, *, afs=False, denoise_to_zero=False) -> int:
    return 2 * steps - int(afs) + int(denoise_to_zero)


@torch.no_grad()
def sample_dpm_solver_2(denoiser, x, sigmas, *, rng, cond=None, callback=None, afs=False,
                        denoise_to_zero=False):
    """DPM-Solver-2 (Lu et al. 2022, Algorithm 1, r1 = 1/2), singlestep, noise prediction."""
    levels = sigmas[:-1].to(x.dtype)
    x = x * levels[0]
    for i in range(len(levels) - 1):
        s, t = levels[i], levels[i + 1]
        denoised = analytic_denoised(denoiser, x, s) if afs and i == 0 else denoiser(x, s, cond)
        s_mid = (s * t).sqrt()                                   # lambda-midpoint.
        u = x + (s_mid - s) * eps_of(x, denoised, s)             # First-order step to s'.
        x = x + (t - s) * eps_of(u, denoiser(u, s_mid, cond), s_mid)   # Midpoint step to t.
        if callback is not None:
            callback({"i": i, "x": x, "sigma": s, "denoised": denoised})
    if denoise_to_zero:
        x = denoiser(x, levels[-1], cond)
    return x


def dpmpp_update(x, s: float, t: float, history, lambdas, order: int, taylor_d2: bool = False):
    """One DPM-Solver++ multistep update of the given order from level s to t (newest estimate
    last in `history`, `lambdas` their half log-SNRs); `taylor_d2` weights D2 by 2."""
    h = math.log(s / t)
    phi_1 = math.expm1(-h)
    x_t = (t / s) * x - phi_1 * history[-1]
    if order == 1:
        return x_t
    r0 = (lambdas[-1] - lambdas[-2]) / h
    d1_0 = (history[-1] - history[-2]) / r0
    if order == 2:
        return x_t - 0.5 * phi_1 * d1_0
    r1 = (lambdas[-2] - lambdas[-3]) / h
    d1_1 = (history[-2] - history[-3]) / r1
    d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
    d2 = (d1_0 - d1_1) / (r0 + r1)
    phi_2 = phi_1 / h + 1
    phi_3 = phi_2 / h - 0.5
    return x_t + phi_2 * d1 - (2 if taylor_d2 else 1) * phi_3 * d2


@torch.no_grad()
def sample_dpmpp_3m(denoiser, x, sigmas, *, rng, cond=None, callback=None, order=3,
                    lower_order_final=True, taylor_d2=False, afs=False, denoise_to_zero=False):
    """DPM-Solver++(3M) (Lu et al. 2022b), multistep data prediction in lambda = -log sigma."""
    levels = [float(s) for s in sigmas[:-1]]
    steps = len(levels) - 1 + int(denoise_to_zero)   # the step to 0 is a (first-order) step

    def step(x, i, _, history):
        k = step_order(order, i, steps, lower_order_final, LOWER_ORDER_FINAL_BELOW)
        lambdas = [-math.log(s) for s in levels[max(0, i - 2):i + 1]]
        return dpmpp_update(x, levels[i], levels[i + 1], history, lambdas, k, taylor_d2)
    return run_solver(denoiser, x, sigmas, cond, callback, afs=afs, denoise_to_zero=denoise_to_zero,
                      step=step)


register_method(
    name="dpm-solver-2", family="dpm-solver", task="generate", model="edm",
    sampler=sample_dpm_solver_2, schedule=singlestep_schedule, version="1", recorded_when_set=(),
    expected_nfe=singlestep_nfe, limits=SCHEDULE_LIMITS,
    paper="Lu et al. 2022, DPM-Solver-2 (Algorithm 1, r1 = 1/2)")
register_method(
    name="dpmpp-3m", family="dpm-solver", task="generate", model="edm", sampler=sample_dpmpp_3m,
    schedule=solver_schedule, version="1", recorded_when_set=(), limits={**SOLVER_LIMITS, "order": (1, 3)},
    defaults_override={"schedule": "logsnr"},
    paper="Lu et al. 2022b, DPM-Solver++(3M), multistep data prediction")
