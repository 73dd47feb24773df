"""What the low-NFE solvers share (Euler, iPNDM, DEIS, DPM-Solver++, UniPC): their grid, their
loop, and the two tricks of the papers that compete at 3-10 evaluations.

For these solvers `steps` is the NFE. The grid has one nonzero level per evaluation plus one,
so that NFE = steps exactly (see `solver_levels`):
- `denoise_to_zero` (False by default, as in DPM-Solver and diff-sampler): the solver stops at
  the last nonzero level (sigma_min, whose noise is far below a uint8 step) and returns x; with
  True it spends its last evaluation on x = D(x; sigma_min), EDM's Euler step to 0.
- `afs` (analytical first step, Zhou et al. 2024): the first evaluation, at sigma_max where x is
  almost pure noise, is replaced by the exact denoiser of Gaussian data
  (`schedules.analytic_denoised`), which buys one more level for the same NFE.
"""
from typing import Callable

import torch

from methods.schedules import SCHEDULE_LIMITS, analytic_denoised, noise_levels, solver_levels

SOLVER_LIMITS = {**SCHEDULE_LIMITS, "order": (1, 4)}


def solver_schedule(denoiser, steps: int, *, schedule="karras", sigma_min=0.002, sigma_max=80.0,
                    rho=7.0, sigmas=(), afs=False, denoise_to_zero=False) -> torch.Tensor:
    """The levels of `schedule` a one-evaluation-a-step solver needs for NFE = steps, then 0."""
    return noise_levels(denoiser, solver_levels(steps, afs, denoise_to_zero), schedule, sigma_min,
                        sigma_max, rho, sigmas)


def step_order(order: int, i: int, steps: int, lower_order_final: bool, below: int | None = None) -> int:
    """The order of step i of `steps`: warm start (order i + 1 with i earlier evaluations) and,
    with `lower_order_final` (when there are fewer than `below` steps, if given), the order
    lowered again towards the last step (DPM-Solver's and UniPC's stabilisation). `steps`
    counts a final denoising to 0, which is itself the first-order step to sigma = 0 (so the
    step before it is at most second order, as in diffusers' schedulers)."""
    order = min(order, i + 1)
    if lower_order_final and (below is None or steps < below):
        order = min(order, steps - i)
    return order


def run_solver(denoiser, x, sigmas, cond, callback, *, afs: bool, denoise_to_zero: bool,
               step: Callable) -> torch.Tensor:
    """The loop: evaluate D at each nonzero level (AFS: the first analytically), then
    `step(x, i, levels, history)` to level i + 1, where history holds every denoised estimate so
    far (newest last); the last level is either returned (no evaluation) or denoised to 0."""
    levels = sigmas[:-1].to(x.dtype)
    x = x * levels[0]
    history: list[torch.Tensor] = []
    for i in range(len(levels)):
        last = i == len(levels) - 1
        if last and not denoise_to_zero:
            break
        sigma = levels[i]
        denoised = analytic_denoised(denoiser, x, sigma) if afs and i == 0 else denoiser(x, sigma, cond)
        history.append(denoised)
        x = denoised if last else step(x, i, levels, history)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma, "denoised": denoised})
    return x


def eps_of(x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE's dx/dsigma = (x - D) / sigma (= the noise prediction eps)."""
    return (x - denoised) / sigma
