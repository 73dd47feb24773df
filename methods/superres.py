"""Super-resolution methods. Every one receives cond["lowres"]: the low-resolution image
upsampled to the output size with bicubic interpolation, in [-1, 1]; conditional networks see
it concatenated to their noisy input.

- `bicubic`: the condition itself, no network evaluation (the 0-NFE baseline).
- `sr3`: Saharia et al. 2021, "Image Super-Resolution via Iterative Refinement": an eps-prediction
  network on [upsampled LR, noisy HR] trained with the DDPM objective, sampled by DDPM's
  Algorithm 2 (iterative refinement) over `steps` respaced timesteps.
- `headstart`: start near the answer instead of from pure noise (the idea of SDEdit, Meng et al.
  2022, and "Come-Closer-Diffuse-Faster", Chung et al. 2022): x = upsampled LR + sigma_start n,
  then the EDM-preconditioned conditional denoiser. `steps=1` is one evaluation, D(x, sigma_start);
  `steps>1` integrates with Heun steps on Karras levels from sigma_start down to 0.
- `regression`: the posterior mean E[HR | LR] that an L2 regression network (SR3's regression
  baseline) learns, read off the same conditional denoiser in one evaluation at sigma_max, where
  the noisy input carries no information. It is `headstart` with steps=1 at sigma_start = 80.
  Why not "a tiny sigma": EDM's preconditioning gives D(x, sigma) -> x as sigma -> 0, so at a
  tiny sigma the network returns its input, the bicubic image, not a regression output.
"""
import torch

from methods.base import heun_nfe, register_method
from methods.ddpm import DDPM_LIMITS, NUM_TRAIN_STEPS, respaced_sigmas, sample_ddpm
from methods.edm import heun_solve, karras_sigmas

REGRESSION_SIGMA = 80.0   # EDM's sigma_max: the noisy input is uninformative there


def no_schedule(denoiser, steps: int) -> torch.Tensor:
    """Methods without noise levels."""
    return torch.zeros(1, dtype=torch.float64)


@torch.no_grad()
def sample_bicubic(denoiser, x, sigmas, *, rng, cond=None, callback=None):
    """Bicubic upsampling of the LR input (the baseline every SR paper reports)."""
    return cond["lowres"].to(x.dtype).clone()


def headstart_schedule(denoiser, steps: int, *, sigma_start=1.0, rho=7.0) -> torch.Tensor:
    """`steps` Karras levels (Eq. 5) from sigma_start down to the denoiser's sigma_min, then 0."""
    sigma_start = min(sigma_start, denoiser.sigma_max)
    return karras_sigmas(steps, min(denoiser.sigma_min, sigma_start), sigma_start, rho)


@torch.no_grad()
def sample_headstart(denoiser, x, sigmas, *, rng, cond=None, callback=None):
    """Headstart SR: noise the upsampled LR to sigmas[0], then Heun to 0 (one call for one step)."""
    start = cond["lowres"].to(x.dtype) + sigmas[0].to(x.dtype) * x
    return heun_solve(denoiser, start, sigmas, cond, callback)


def regression_schedule(denoiser, steps: int) -> torch.Tensor:
    """One level, sigma_max, then 0: a single evaluation whatever `steps` says."""
    return torch.tensor([min(REGRESSION_SIGMA, denoiser.sigma_max), 0.0], dtype=torch.float64)


register_method(
    name="bicubic", family="superres", task="superres", model=None, sampler=sample_bicubic,
    schedule=no_schedule, version="1", expected_nfe=lambda steps: 0,
    paper="bicubic interpolation (baseline)")
register_method(
    name="sr3", family="superres", task="superres", model="sr3", sampler=sample_ddpm,
    schedule=respaced_sigmas, version="1", max_steps=NUM_TRAIN_STEPS, limits=DDPM_LIMITS,
    paper="Saharia et al. 2021 (SR3), DDPM Algorithm 2 conditioned on the upsampled LR")
register_method(
    name="headstart", family="superres", task="superres", model="sr-edm", sampler=sample_headstart,
    schedule=headstart_schedule, version="1", expected_nfe=heun_nfe,
    limits={"sigma_start": (1e-6, 1e4), "rho": (1e-3, 1e3)},
    paper="noised upsampled LR + EDM Heun (SDEdit / CCDF-style head start)")
register_method(
    name="regression", family="superres", task="superres", model="sr-edm", sampler=sample_headstart,
    schedule=regression_schedule, version="1", expected_nfe=lambda steps: 1,
    paper="E[HR | LR] from the EDM conditional denoiser (SR3's regression baseline)")
