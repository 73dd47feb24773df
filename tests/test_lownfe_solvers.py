"""The low-NFE solvers (ipndm, deis-tab, unipc, dpmpp-3m, dpm-solver-2, edm-euler): NFE is
`steps`, exact-Gaussian moments and convergence orders, and agreement with k-diffusion and
diffusers where they implement the same algorithm (float64, to 1e-5 or better)."""
import math

import pytest
import torch

from bench.run.cost import CountingDenoiser
from methods.base import METHODS
from methods.deis import AB_COEFFICIENTS, deis_coefficients
from methods.dpm_solver import dpmpp_update
from methods.kdiffusion import import_sampling
from methods.schedules import karras_sigmas
from methods.unipc import UniPCStep
from tests.helpers import GaussianDenoiser

SOLVERS = ("edm-euler", "ipndm", "deis-tab", "dpmpp-3m", "unipc")
MU, S = 0.3, 0.5


class WideGaussian(GaussianDenoiser):
    """The exact Gaussian denoiser over EDM's noise range [0.002, 80] (and wider when asked)."""

    def __init__(self, sigma_min=0.002, sigma_max=80.0):
        super().__init__(mu=MU, s=S)
        del self.sigmas                                  # a continuous-noise model
        self.sigma_min, self.sigma_max = sigma_min, sigma_max


def noise(n=256, seed=0):
    return torch.randn(n, 1, 2, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def exact_solution(x_unit, sigma_from, sigma_to):
    """The probability-flow ODE of N(MU, S^2) data, from x = sigma_from x_unit to sigma_to."""
    x = sigma_from * x_unit
    return MU + (x - MU) * math.sqrt(sigma_to ** 2 + S ** 2) / math.sqrt(sigma_from ** 2 + S ** 2)


def sample(name, steps, denoiser=None, x=None, **hparams):
    method = METHODS.get(name)
    denoiser = denoiser or WideGaussian()
    return method.sample(denoiser, noise() if x is None else x, steps, rng=None,
                         **method.resolve_hparams(hparams))


def test_the_solvers_are_listed():
    for name in ("ipndm", "deis-tab", "unipc", "dpmpp-3m", "dpm-solver-2"):
        assert "schedule" in METHODS.get(name).defaults


@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize("afs, denoise_to_zero", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("steps", [3, 4, 10])
def test_a_solver_makes_exactly_steps_evaluations(name, afs, denoise_to_zero, steps):
    counter = CountingDenoiser(WideGaussian())
    x = noise(4)
    sample(name, steps, counter, x, afs=afs, denoise_to_zero=denoise_to_zero)
    assert counter.nfe(4) == steps == METHODS.get(name).planned_nfe(steps, {"afs": afs})


@pytest.mark.parametrize("afs, denoise_to_zero, nfe", [(False, False, 8), (True, False, 7), (False, True, 9)])
def test_dpm_solver_2_makes_two_evaluations_a_step(afs, denoise_to_zero, nfe):
    counter = CountingDenoiser(WideGaussian())
    sample("dpm-solver-2", 4, counter, noise(4), afs=afs, denoise_to_zero=denoise_to_zero)
    hparams = {"afs": afs, "denoise_to_zero": denoise_to_zero}
    assert counter.nfe(4) == nfe == METHODS.get("dpm-solver-2").planned_nfe(4, hparams)


@pytest.mark.parametrize("name", [*SOLVERS, "dpm-solver-2"])
def test_a_solver_reproduces_the_gaussian_moments(name):
    """40 steps (400 for first-order Euler) from 4,096 seeds: the samples' mean and std
    are the data's within their Monte Carlo error."""
    x = sample(name, {"dpm-solver-2": 40, "edm-euler": 400}.get(name, 40), x=noise(4096))
    assert abs(float(x.mean()) - MU) < 4 * S / math.sqrt(x.numel())
    assert abs(float(x.std()) - S) < 0.01


# Global orders on the exact Gaussian (log-SNR grid, NFE 64 -> 128): the multistep solvers'
# warm-start steps and iPNDM's fixed coefficients on an uneven grid cap the global order below
# the formula's; the reference DPM-Solver++(3M) is second order (its Taylor-weighted D2 third);
# the local orders are checked below.
GLOBAL_ORDER = [("edm-euler", {}, 1), ("dpm-solver-2", {}, 2), ("ipndm", {}, 2), ("deis-tab", {}, 3),
                ("dpmpp-3m", {}, 2), ("dpmpp-3m", {"taylor_d2": True}, 3), ("unipc", {}, 3)]


@pytest.mark.parametrize("name, hparams, order", GLOBAL_ORDER)
def test_a_solver_converges_at_its_order(name, hparams, order):
    x = noise(64)
    exact = exact_solution(x, 80.0, 0.002)
    per_step = 2 if name == "dpm-solver-2" else 1
    errors = [float((sample(name, n // per_step, x=x, schedule="logsnr", **hparams) - exact).abs().max())
              for n in (64, 128)]
    assert errors[0] / errors[1] > 2 ** (order - 0.3)


def trajectory(levels):
    """Exact x and D(x) at each level along one exact ODE path (x = 1 at the first level)."""
    denoiser = WideGaussian()
    x_unit = torch.full((1, 1, 1, 1), 1.0 / levels[0], dtype=torch.float64)
    xs = [exact_solution(x_unit, levels[0], s) for s in levels]
    return xs, [denoiser(x, s) for x, s in zip(xs, levels)]


def local_order(update, history: int) -> float:
    """The order of one step of `update` from exact history at levels h apart in log sigma
    (from sigma = 5, where the Gaussian's error constants keep their sign), as h halves."""
    def error(h):
        levels = [5.0 * math.exp(-h * k) for k in range(history + 1)]
        xs, denoised = trajectory(levels)
        return float((update(levels, xs, denoised) - xs[-1]).abs().max())
    return math.log2(error(0.05) / error(0.025))


@pytest.mark.parametrize("order, taylor_d2, local", [(1, False, 2), (2, False, 3), (3, False, 3),
                                                     (3, True, 4)])
def test_dpmpp_update_local_orders(order, taylor_d2, local):
    """Orders 1 and 2 have local error O(h^(p+1)); the reference order-3 formula only O(h^3),
    its Taylor-weighted D2 O(h^4)."""
    def update(levels, xs, denoised):
        i = len(levels) - 2
        return dpmpp_update(xs[i], levels[i], levels[i + 1], denoised[:i + 1],
                            [-math.log(s) for s in levels[:i + 1]], order, taylor_d2)
    assert local_order(update, 3) == pytest.approx(local, abs=0.3)


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_unipc_predictor_and_corrector_orders(order, variant):
    """UniP-p is of local order p + 1; UniC-p raises it to p + 2 (Zhao et al. 2023, Thm. 3.1)."""
    def predictor(levels, xs, denoised):
        step = UniPCStep(levels, order, variant, False, False)
        return step.predict(xs[-2], len(levels) - 2, order, denoised)

    def corrector(levels, xs, denoised):
        step = UniPCStep(levels, order, variant, False, False)
        return step.correct(xs[-2], len(levels) - 2, order, denoised)
    assert local_order(predictor, 3) == pytest.approx(order + 1, abs=0.3)
    assert local_order(corrector, 3) == pytest.approx(order + 2, abs=0.3)


@pytest.mark.parametrize("mode", ["tab", "rhoab"])
@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_deis_step_has_local_order_r_plus_two(mode, order):
    def update(levels, xs, denoised):
        i = len(levels) - 2
        coefficients = deis_coefficients(levels, order, mode, (0.002, 80.0))[i]
        slopes = [(x - d) / s for x, d, s in zip(xs[:i + 1], denoised[:i + 1], levels[:i + 1])]
        return xs[i] + sum(c * e for c, e in zip(coefficients, reversed(slopes)))
    assert local_order(update, 4) == pytest.approx(order + 2, abs=0.3)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_ipndm_step_has_local_order_plus_one_on_an_even_grid(order):
    def local(delta):
        levels = [1.0 - delta * k for k in range(5)]
        xs, denoised = trajectory(levels)
        slopes = [(x - d) / s for x, d, s in zip(xs, denoised, levels)][:4]
        step = sum(c * e for c, e in zip(AB_COEFFICIENTS[order], reversed(slopes)))
        return float((xs[3] - delta * step - xs[4]).abs().max())
    assert math.log2(local(0.02) / local(0.01)) == pytest.approx(order + 1, abs=0.25)


def test_the_analytic_first_step_is_the_gaussian_denoiser():
    """With data N(0, sigma_data^2), AFS's analytic x0 is the exact denoiser, so afs = True
    gives the same samples as the network-evaluated first step on that data."""
    denoiser = WideGaussian()
    denoiser.mu = 0.0
    x = noise(8)
    for name in SOLVERS:
        with_afs = sample(name, 6, denoiser, x, afs=True, schedule="explicit",
                          sigmas=karras_sigmas(8, 0.002, 80.0)[:-1].tolist())
        without = sample(name, 7, denoiser, x, schedule="explicit",
                         sigmas=karras_sigmas(8, 0.002, 80.0)[:-1].tolist())
        torch.testing.assert_close(with_afs, without, rtol=1e-12, atol=1e-12)


# Cross-implementation: the same algorithm in k-diffusion (float64 throughout).

def kdiffusion(function, denoiser, x, sigmas, **options):
    run = getattr(import_sampling(), f"sample_{function}")
    return run(lambda x, sigma: denoiser(x, sigma), x * sigmas[0], sigmas, disable=True, **options)


@pytest.mark.parametrize("steps", [3, 5, 8])
@pytest.mark.parametrize("name, function, levels, hparams", [
    ("edm-euler", "euler", 0, {"denoise_to_zero": True}),
    ("dpmpp-3m", "dpmpp_2m", 0, {"order": 2, "schedule": "karras", "denoise_to_zero": True,
                                 "lower_order_final": False}),
    ("dpm-solver-2", "dpm_2", 1, {"denoise_to_zero": True}),
])
def test_a_solver_equals_k_diffusion(steps, name, function, levels, hparams):
    """On Karras levels ending in 0 (k-diffusion's grid), with the final step to 0 a denoising."""
    denoiser, x = WideGaussian(), noise(16)
    expected = kdiffusion(function, denoiser, x, karras_sigmas(steps + levels, 0.002, 80.0))
    torch.testing.assert_close(sample(name, steps, denoiser, x, **hparams), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("steps", [3, 5, 8])
def test_deis_rho_ab_equals_k_diffusion_lms(steps):
    """DEIS's rho-AB (polynomial in sigma) is linear multistep in sigma: k-diffusion's lms,
    whose coefficients scipy integrates, on the same levels (no final step to 0)."""
    denoiser, x = WideGaussian(), noise(16)
    levels = karras_sigmas(steps + 1, 0.002, 80.0)[:-1]
    expected = kdiffusion("lms", denoiser, x, levels, order=4)
    ours = sample("deis-tab", steps, denoiser, x, mode="rhoab", order=3, schedule="karras", rho=7.0)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-8)


def test_dpm_solver_2_is_edms_midpoint_step_at_the_geometric_mean():
    """Karras et al.'s general second-order step with alpha = 1/2, its intermediate level at
    sqrt(s t) (the lambda-midpoint), is DPM-Solver-2; at the arithmetic midpoint it is not."""
    denoiser, x = WideGaussian(), noise(16)
    levels = karras_sigmas(5, 0.002, 80.0)[:-1]

    def edm_second_order(midpoint, alpha=0.5):
        y = x * levels[0]
        for s, t in zip(levels[:-1], levels[1:]):
            s_mid = midpoint(s, t)
            d = (y - denoiser(y, s)) / s
            y_mid = y + (s_mid - s) * d
            d_mid = (y_mid - denoiser(y_mid, s_mid)) / s_mid
            y = y + (t - s) * ((1 - 1 / (2 * alpha)) * d + 1 / (2 * alpha) * d_mid)
        return y
    ours = sample("dpm-solver-2", 4, denoiser, x, schedule="karras")
    torch.testing.assert_close(ours, edm_second_order(lambda s, t: (s * t).sqrt()), rtol=0, atol=1e-12)
    assert (ours - edm_second_order(lambda s, t: (s + t) / 2)).abs().max() > 1e-3


# Cross-implementation: diffusers' multistep schedulers on the same noise levels.

def diffusers_loop(scheduler_name, steps, denoiser, x, **config):
    """diffusers' own loop in its VP form, the model shown as eps at the scheduler's own sigmas
    (held in float64), ending with its step to sigma = 0."""
    import diffusers
    scheduler = getattr(diffusers, scheduler_name)(num_train_timesteps=1000, use_karras_sigmas=True,
                                                   final_sigmas_type="zero", **config)
    scheduler.set_timesteps(steps)
    scheduler.sigmas = scheduler.sigmas.double()
    sigmas = scheduler.sigmas
    y = x * sigmas[0] / (1 + sigmas[0] ** 2).sqrt()
    for i, t in enumerate(scheduler.timesteps):
        x_ve = y * (1 + sigmas[i] ** 2).sqrt()
        y = scheduler.step((x_ve - denoiser(x_ve, sigmas[i])) / sigmas[i], t, y).prev_sample
    return y, sigmas[:-1].tolist()


@pytest.mark.parametrize("steps", [4, 6, 9])
@pytest.mark.parametrize("name, scheduler, config, hparams", [
    ("dpmpp-3m", "DPMSolverMultistepScheduler",
     {"solver_order": 3, "algorithm_type": "dpmsolver++", "lower_order_final": False},
     {"lower_order_final": False}),
    *[("unipc", "UniPCMultistepScheduler", {"solver_order": order, "solver_type": "bh2"},
       {"order": order, "variant": "bh2"}) for order in (1, 2, 3)],
])
def test_a_solver_equals_diffusers(steps, name, scheduler, config, hparams):
    """diffusers ends with a step to 0, which is denoise_to_zero's first-order step; with
    lower_order_final both lower the step before it to at most order 2 (the DPM-Solver
    comparison turns it off: diffusers lowers below 15 steps, the reference code below 10)."""
    denoiser = WideGaussian(0.001, 1000.0)
    x = noise(16)
    expected, levels = diffusers_loop(scheduler, steps, denoiser, x, **config)
    ours = sample(name, steps, denoiser, x, schedule="explicit", sigmas=levels, denoise_to_zero=True,
                  **hparams)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)
