"""UniPC: Zhao, Bai, Rao, Zhou & Lu 2023, "UniPC: A Unified Predictor-Corrector Framework for
Fast Sampling of Diffusion Models" (NeurIPS), data-prediction form.

In lambda = -log sigma (x = x0 + sigma n: alpha = 1), a step from level s to t has h = lambda_t -
lambda_s and, with hh = -h and the last estimates D_0 (at s), D_k (k earlier levels, at ratios
r_k = (lambda_k - lambda_s) / h < 0) and their differences D1_k = (D_k - D_0) / r_k:
- UniP-p (predictor):  x_t = (t / s) x - (e^hh - 1) D_0 - B(h) sum_k rho_k D1_k
- UniC-p (corrector), once D_t = D(x_t; t) is evaluated:
      x_t^c = (t / s) x - (e^hh - 1) D_0 - B(h) (sum_k rho^c_k D1_k + rho^c_p (D_t - D_0))
The rho solve the order conditions R rho = b with R_ij = r_j^(i-1) and b_i = i! phi_(i+1)(hh) /
B(h) (phi the exponential integrator's functions; UniPC's Theorem 3.1), over the p - 1 earlier
levels for UniP and the p levels plus t for UniC; the paper's closed forms replace the solve
where it is degenerate (rho = 1/2 for UniP-2 and UniC-1). `variant` picks B(h): "bh1" is hh,
"bh2" is e^hh - 1 (the paper recommends B1 for unconditional sampling at few steps, B2 for
guided; diff-sampler's CIFAR-10 table and diffusers use bh2).
D_t costs no extra evaluation: it is the next step's D_0, so the corrector is free; the last
step has none (its D_t would be an extra evaluation). Warm start at orders 1 .. p, and with
`lower_order_final` the order is lowered again over the last steps (UniPC's reference sampler).
One evaluation a step: NFE = steps.
"""
import math

import torch

from methods.base import register_method
from methods.multistep import SOLVER_LIMITS, run_solver, solver_schedule, step_order


def order_conditions(ratios: list[float], hh: float, b_h: float, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """R (size x size, rows ratios^(i-1)) and b (b_i = i! phi_(i+1)(hh) / B(h))."""
    r = torch.tensor(ratios[:size], dtype=torch.float64)
    rows, b = [], []
    phi, factorial = math.expm1(hh) / hh - 1, 1.0       # phi = h phi_2(hh) / hh, then recursively
    for i in range(1, size + 1):
        rows.append(r ** (i - 1))
        b.append(phi * factorial / b_h)
        factorial *= i + 1
        phi = phi / hh - 1 / factorial
    return torch.stack(rows), torch.tensor(b, dtype=torch.float64)


class UniPCStep:
    """UniPC's state between steps: the last predictor's start, so its corrector can run once
    the estimate at its end has been evaluated."""

    def __init__(self, levels: list[float], order: int, variant: str, lower_order_final: bool,
                 denoise_to_zero: bool):
        self.levels, self.order, self.variant = levels, order, variant
        self.steps = len(levels) - 1 + int(denoise_to_zero)   # the step to 0 is a (first-order) step
        self.lower_order_final = lower_order_final
        self.pending = None                              # (x_s, i, order) of the last predictor

    def terms(self, i: int, order: int, history):
        """h, hh, B(h), the ratios r_k and the differences D1_k of step i at `order`."""
        lambdas = [-math.log(s) for s in self.levels]
        h = lambdas[i + 1] - lambdas[i]
        hh = -h
        b_h = hh if self.variant == "bh1" else math.expm1(hh)
        newest = history[i]
        ratios = [(lambdas[i - k] - lambdas[i]) / h for k in range(1, order)]
        differences = [(history[i - k] - newest) / r for k, r in enumerate(ratios, start=1)]
        return hh, b_h, ratios, differences

    def base(self, x, i: int, history, hh: float):
        return (self.levels[i + 1] / self.levels[i]) * x - math.expm1(hh) * history[i]

    def predict(self, x, i: int, order: int, history):
        hh, b_h, ratios, differences = self.terms(i, order, history)
        if order == 1:
            return self.base(x, i, history, hh)
        if order == 2:
            rhos = torch.tensor([0.5], dtype=torch.float64)
        else:
            r, b = order_conditions(ratios, hh, b_h, order - 1)
            rhos = torch.linalg.solve(r, b)
        return self.base(x, i, history, hh) - b_h * sum(float(c) * d for c, d in zip(rhos, differences))

    def correct(self, x_s, i: int, order: int, history):
        hh, b_h, ratios, differences = self.terms(i, order, history)
        if order == 1:
            rhos = torch.tensor([0.5], dtype=torch.float64)
        else:
            r, b = order_conditions(ratios + [1.0], hh, b_h, order)
            rhos = torch.linalg.solve(r, b)
        change = history[i + 1] - history[i]
        residual = sum(float(c) * d for c, d in zip(rhos[:-1], differences)) + float(rhos[-1]) * change
        return self.base(x_s, i, history, hh) - b_h * residual

    def __call__(self, x, i: int, _, history):
        if self.pending is not None:                     # UniC with the estimate just made at x.
            x = self.correct(*self.pending, history)
        order = step_order(self.order, i, self.steps, self.lower_order_final)
        self.pending = (x, i, order)
        return self.predict(x, i, order, history)        # UniP to the next level.


@torch.no_grad()
def sample_unipc(denoiser, x, sigmas, *, rng, cond=None, callback=None, order=3, variant="bh1",
                 lower_order_final=True, afs=False, denoise_to_zero=False):
    """UniPC-p (Zhao et al. 2023): UniP predictor, free UniC corrector, data prediction."""
    step = UniPCStep([float(s) for s in sigmas[:-1]], order, variant, lower_order_final, denoise_to_zero)
    return run_solver(denoiser, x, sigmas, cond, callback, afs=afs, denoise_to_zero=denoise_to_zero,
                      step=step)


register_method(
    name="unipc", family="unipc", task="generate", model="edm", sampler=sample_unipc,
    schedule=solver_schedule, version="1", recorded_when_set=(),
    limits={**SOLVER_LIMITS, "order": (1, 3), "variant": {"bh1", "bh2"}},
    defaults_override={"schedule": "logsnr"},
    paper="Zhao et al. 2023, UniPC (UniP-p + UniC, data prediction)")
