"""Denoising: recover x0 from y = x0 + sigma n, n ~ N(0, I), at a known noise level sigma.

The harness's `denoise` task noises test images to the level of a DDPM timestep t (Ho et al.
2020's linear schedule, `ddpm_sigma`; x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) n is y scaled by
sqrt(abar_t)) and hands the noisy image to three kinds of method:
- `gaussian-blur`: the classical baseline, a Gaussian low-pass of y (no network). Its kernel size
  and width are chosen per noise level on held-out noisy / clean pairs (`tune_gaussian_blur`:
  the pair of the grid with the highest mean PSNR), unless the cell fixes them.
- `one-step`: one network evaluation, the x0 prediction D(y; sigma) (the posterior mean
  E[x0 | y] a denoiser trained with an L2 loss learns).
- iterative denoising with any registered sampler: the harness starts the sampler from y at sigma
  (`Method.sample(..., start=(y, sigma))`) on its own schedule below sigma, as SDEdit starts
  from its perturbed guide, so a DDPM, DDIM, EDM or solver cell denoises as it generates.
A method without a network reads y from cond["source"]; one with a network starts from it.
"""
import math

import torch
from torchvision.transforms.v2 import functional as TF

from methods.base import register_method
from methods.ddpm import NUM_TRAIN_STEPS, linear_alphas_cumprod

# Up to a near-box average over most of a 28 px image, which the highest noise levels choose.
KERNEL_SIZES = (3, 5, 7, 9, 11, 13, 15, 19, 23, 27)
BLUR_SIGMAS = tuple(round(0.25 * 1.15 ** k, 4) for k in range(28))   # 0.25 .. 11, 15 % apart


def ddpm_sigma(t: int) -> float:
    """The noise level of DDPM timestep t (1..T, the paper's indexing: abar_t = prod_{s<=t}
    (1 - beta_s) on the linear schedule) as the Denoiser's sigma = sqrt((1 - abar_t) / abar_t)."""
    if not 1 <= t <= NUM_TRAIN_STEPS:
        raise ValueError(f"DDPM timestep t must be in 1..{NUM_TRAIN_STEPS}, got {t}")
    abar = float(linear_alphas_cumprod()[t - 1])
    return math.sqrt((1 - abar) / abar)


def blur(images: torch.Tensor, kernel_size: int, blur_sigma: float) -> torch.Tensor:
    """torchvision's Gaussian blur (reflect padding) of a batch in [-1, 1]."""
    return TF.gaussian_blur(images, [kernel_size, kernel_size], [blur_sigma, blur_sigma])


def mean_psnr(estimate: torch.Tensor, clean: torch.Tensor) -> float:
    """Mean per-image PSNR of `estimate` clipped to [-1, 1] (data range 2)."""
    mse = (estimate.clamp(-1, 1) - clean).double().square().flatten(1).mean(1)
    return float((10 * torch.log10(4 / mse.clamp_min(1e-20))).mean())


def blur_scores(noisy: torch.Tensor, clean: torch.Tensor, kernel_sizes=KERNEL_SIZES,
                blur_sigmas=BLUR_SIGMAS) -> dict[tuple[int, float], float]:
    """Mean PSNR of every (kernel size, blur sigma) on the pairs; kernels wider than the image
    (reflect padding needs a kernel under twice the side) are left out."""
    side = min(noisy.shape[-2:])
    return {(k, s): mean_psnr(blur(noisy, k, s), clean)
            for k in kernel_sizes if k // 2 < side for s in blur_sigmas}


def tune_gaussian_blur(noisy: torch.Tensor, clean: torch.Tensor, *, kernel_size=0,
                       blur_sigma=0.0) -> dict | None:
    """The grid's best kernel for the held-out pairs (`kernel_size` / `blur_sigma` the cell fixed
    stay fixed; None when it fixed both): {"kernel_size", "blur_sigma", "heldout_psnr"}."""
    if kernel_size and blur_sigma:
        return None
    scores = blur_scores(noisy, clean, (kernel_size,) if kernel_size else KERNEL_SIZES,
                         (blur_sigma,) if blur_sigma else BLUR_SIGMAS)
    (best_k, best_s), best = max(scores.items(), key=lambda item: item[1])
    return {"kernel_size": best_k, "blur_sigma": best_s, "heldout_psnr": best}


@torch.no_grad()
def sample_gaussian_blur(denoiser, x, sigmas, *, rng, cond=None, callback=None, kernel_size=0,
                         blur_sigma=0.0):
    """The noisy image cond["source"] blurred; 0 means "chosen on held-out pairs" (the harness
    tunes before sampling)."""
    if not kernel_size or not blur_sigma:
        raise ValueError("gaussian-blur needs kernel_size and blur_sigma: 0 asks the harness to "
                         "tune them on held-out images (diffbench run), or set both in the cell")
    return blur(cond["source"].to(x.dtype), kernel_size, blur_sigma)


def no_levels(denoiser, steps: int) -> torch.Tensor:
    return torch.zeros(1, dtype=torch.float64)


def input_level(denoiser, steps: int) -> torch.Tensor:
    """One level, the top of the denoiser's range, then 0: started from a noisy image, the
    input's own noise level."""
    return torch.tensor([denoiser.sigma_max, 0.0], dtype=torch.float64)


@torch.no_grad()
def sample_one_step(denoiser, x, sigmas, *, rng, cond=None, callback=None):
    """x0 = D(y; sigma): the denoiser's prediction from the noisy image, one evaluation."""
    sigma = sigmas[0].to(x.dtype)
    return denoiser(x * sigma, sigma, cond)


register_method(
    name="gaussian-blur", family="denoising", task="denoise", model=None,
    sampler=sample_gaussian_blur, schedule=no_levels, version="1", expected_nfe=lambda steps: 0,
    tune=tune_gaussian_blur, limits={"kernel_size": (0, 99), "blur_sigma": (0.0, 100.0)},
    paper="Gaussian low-pass of the noisy image, kernel chosen on held-out pairs (baseline)")
register_method(
    name="one-step", family="denoising", task="denoise", model="edm", sampler=sample_one_step,
    schedule=input_level, version="1", expected_nfe=lambda steps: 1,
    paper="one evaluation of the denoiser: x0 = D(y; sigma)")
