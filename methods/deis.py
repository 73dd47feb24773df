"""DEIS and iPNDM: Zhang & Chen 2022, "Fast Sampling of Diffusion Models with Exponential
Integrator" (ICLR 2023).

On the Denoiser contract (x = x0 + sigma n) the probability-flow ODE is dx/dsigma = eps(x, sigma)
with eps = (x - D) / sigma, and the exponential integrator's linear part is trivial (alpha = 1),
so both solvers are linear multistep methods on the eps history:

- `ipndm` (improved PNDM, the paper's Sec. 4 / App.): Adams-Bashforth in sigma with the
  fixed-step coefficients of order `order` (1-4; 4 by default), warm started with the lower
  orders while the history fills (PNDM's Runge-Kutta warm start replaced, saving its extra
  evaluations):  x_next = x + (sigma_next - sigma) sum_j c_j eps_{i-j}, with
  c = (1), (3, -1) / 2, (23, -16, 5) / 12, (55, -59, 37, -9) / 24.
- `deis-tab` (DEIS with the time-based Adams-Bashforth of Eq. 15, "tAB-r"): eps is
  extrapolated by the Lagrange polynomial through its last r + 1 values (`order` = r, 0-3;
  r = 0 is DDIM, i.e. Euler in sigma) in the VP time t of the fitted VP SDE
  (methods.schedules.vp_fit over the grid's range), and the step integrates it exactly against
  dsigma/dt:  x_next = x + sum_j C_ij eps_{i-j},  C_ij = int_{t_i}^{t_i+1} sigma'(t) L_j(t) dt.
  The integrals are taken by Gauss-Legendre quadrature (exact to rounding for these smooth
  integrands; diff-sampler's re-implementation sums 10,000 rectangles). `mode = "rhoab"` is
  DEIS's rho-AB instead: the polynomial in rho = sigma itself, integrated exactly; that is
  linear multistep in sigma, which k-diffusion's `lms` sampler also is (a cross-check).
  Paper defaults here: the time-uniform schedule with rho = 2 (diff-sampler's DEIS setting).
One evaluation a step: NFE = steps (see methods.multistep for `afs` and `denoise_to_zero`).
"""
import numpy as np
import torch

from methods.base import register_method
from methods.multistep import SOLVER_LIMITS, eps_of, run_solver, solver_schedule
from methods.schedules import vp_fit, vp_time

AB_COEFFICIENTS = {1: (1.0,), 2: (3 / 2, -1 / 2), 3: (23 / 12, -16 / 12, 5 / 12),
                   4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}
QUADRATURE_NODES = 32


@torch.no_grad()
def sample_ipndm(denoiser, x, sigmas, *, rng, cond=None, callback=None, order=4, afs=False,
                 denoise_to_zero=False):
    """iPNDM (Zhang & Chen 2022): fixed-coefficient Adams-Bashforth in sigma, lower-order warm start."""
    slopes = []

    def step(x, i, levels, history):
        slopes.append(eps_of(x, history[-1], levels[i]))
        coefficients = AB_COEFFICIENTS[min(order, len(slopes))]
        direction = sum(c * slope for c, slope in zip(coefficients, reversed(slopes)))
        return x + (levels[i + 1] - levels[i]) * direction
    return run_solver(denoiser, x, sigmas, cond, callback, afs=afs, denoise_to_zero=denoise_to_zero,
                      step=step)


def lagrange_integrals(nodes, start: float, end: float, weight=None) -> list[float]:
    """int_start^end weight(t) L_j(t) dt for the Lagrange basis L_j over `nodes` (newest first),
    by Gauss-Legendre quadrature (weight None: 1)."""
    points, weights = np.polynomial.legendre.leggauss(QUADRATURE_NODES)
    t = (end - start) / 2 * points + (start + end) / 2
    w = weights * (end - start) / 2 * (1.0 if weight is None else weight(t))
    integrals = []
    for j, node in enumerate(nodes):
        basis = np.ones_like(t)
        for k, other in enumerate(nodes):
            if k != j:
                basis *= (t - other) / (node - other)
        integrals.append(float(np.sum(w * basis)))
    return integrals


def vp_sigma_derivative(beta_min: float, beta_d: float):
    """t -> dsigma/dt of the VP SDE log(1 + sigma^2) = beta_d t^2 / 2 + beta_min t."""
    def derivative(t):
        exponent = beta_d * t ** 2 / 2 + beta_min * t
        return (beta_d * t + beta_min) * np.exp(exponent) / (2 * np.sqrt(np.expm1(exponent)))
    return derivative


def deis_coefficients(levels: list[float], order: int, mode: str,
                      sigma_range: tuple[float, float]) -> list[list[float]]:
    """C_ij for every step i (newest eps first), with order min(r, i); tAB's VP time is the
    VP SDE fitted to `sigma_range` (low, high)."""
    if mode == "tab":
        beta_min, beta_d = vp_fit(*sigma_range)
        times = vp_time(torch.tensor(levels, dtype=torch.float64), beta_min, beta_d).tolist()
        weight = vp_sigma_derivative(beta_min, beta_d)
    else:
        times, weight = levels, None
    return [lagrange_integrals([times[i - j] for j in range(min(order, i) + 1)], times[i], times[i + 1],
                               weight) for i in range(len(levels) - 1)]


@torch.no_grad()
def sample_deis_tab(denoiser, x, sigmas, *, rng, cond=None, callback=None, order=3, mode="tab",
                    afs=False, denoise_to_zero=False):
    """DEIS tAB-r (Zhang & Chen 2022, Eq. 15): Lagrange extrapolation of eps in VP time, integrated exactly."""
    levels = [float(s) for s in sigmas[:-1]]
    coefficients = deis_coefficients(levels, order, mode, (levels[-1], levels[0]))
    slopes = []

    def step(x, i, levels, history):
        slopes.append(eps_of(x, history[-1], levels[i]))
        return x + sum(c * slope for c, slope in zip(coefficients[i], reversed(slopes)))
    return run_solver(denoiser, x, sigmas, cond, callback, afs=afs, denoise_to_zero=denoise_to_zero,
                      step=step)


register_method(
    name="ipndm", family="deis", task="generate", model="edm", sampler=sample_ipndm,
    schedule=solver_schedule, version="1", recorded_when_set=(), limits=SOLVER_LIMITS,
    paper="Zhang & Chen 2022, iPNDM (improved PNDM, lower-order warm start)")
register_method(
    name="deis-tab", family="deis", task="generate", model="edm", sampler=sample_deis_tab,
    schedule=solver_schedule, version="1", recorded_when_set=(),
    limits={**SOLVER_LIMITS, "order": (0, 3), "mode": {"tab", "rhoab"}},
    defaults_override={"schedule": "time-uniform", "rho": 2.0},
    paper="Zhang & Chen 2022, DEIS tAB-r (Eq. 15)")
