"""Score-based sampling in continuous time: Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole
2021, "Score-Based Generative Modeling through Stochastic Differential Equations".

The variance-exploding SDE dx = sqrt(d[sigma^2]/dt) dw (Eq. 9, sigma(t) = t as in EDM's Eq. 6
family) has the reverse-time SDE dx = -d[sigma^2]/dt * grad log p(x; sigma) dt + sqrt(d[sigma^2]/dt) dw
(Eq. 6). Any Denoiser gives the score by Tweedie's formula:
    grad log p(x; sigma) = (D(x; sigma) - x) / sigma^2.

- `sde-euler-maruyama`: Euler-Maruyama in sigma^2 from sigma_i to sigma_{i+1}:
      x <- x + (sigma_i^2 - sigma_{i+1}^2) score + sqrt(sigma_i^2 - sigma_{i+1}^2) z,
  which for the VE SDE is also the paper's reverse-diffusion predictor (Eq. 47).
- `sde-pc`: Algorithm 2 (PC sampling, VE SDE): that predictor, then `corrector_steps` Langevin
  steps at the new noise level (Algorithm 4 with alpha = 1) with step size
      eps = 2 (snr ||z|| / ||score||)^2 per sample,  x <- x + eps score + sqrt(2 eps) z.
  The corrector draws its noise from its own per-sample stream, so with snr = 0 its steps
  change nothing and the samples equal `sde-euler-maruyama`'s from the same seeds.

Both use the paper's geometric noise levels, sigma_max (sigma_min / sigma_max)^(i / (N - 1)),
and end with the paper's noise-free last step: the denoised mean D(x; sigma_min) (Tweedie),
so steps = NFE for Euler-Maruyama and NFE = steps + corrector_steps (steps - 1) for PC.
"""
import torch

from methods.base import register_method


def geometric_sigmas(denoiser, steps: int, *, sigma_min=0.01, sigma_max=50.0) -> torch.Tensor:
    """The VE SDE's noise levels (Song et al. 2021, Sec. 3.4 / App. C), clamped to the
    denoiser's trained range, then 0."""
    low, high = max(sigma_min, denoiser.sigma_min), min(sigma_max, denoiser.sigma_max)
    if steps == 1:
        sigmas = torch.tensor([high], dtype=torch.float64)
    else:
        sigmas = torch.logspace(torch.log10(torch.tensor(high, dtype=torch.float64)),
                                torch.log10(torch.tensor(low, dtype=torch.float64)), steps,
                                dtype=torch.float64)
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])


def score(denoiser, x, sigma, cond):
    """grad_x log p(x; sigma) from the denoiser (Tweedie), and the denoised estimate."""
    denoised = denoiser(x, sigma, cond)
    return (denoised - x) / sigma ** 2, denoised


def reverse_diffusion_step(denoiser, x, sigma_from, sigma_to, rng, cond):
    """Euler-Maruyama on the reverse VE SDE from sigma_from to sigma_to > 0."""
    grad, denoised = score(denoiser, x, sigma_from, cond)
    variance = sigma_from ** 2 - sigma_to ** 2
    return x + variance * grad + variance.sqrt() * rng.randn_like(x), denoised


def langevin_step(denoiser, x, sigma, snr: float, rng, cond):
    """Algorithm 4's corrector step at noise level sigma (alpha_i = 1 for the VE SDE)."""
    grad, _ = score(denoiser, x, sigma, cond)
    noise = rng.randn_like(x)
    ratio = noise.flatten(1).norm(dim=1) / grad.flatten(1).norm(dim=1).clamp_min(1e-12)
    step = (2 * (snr * ratio) ** 2).reshape(-1, *[1] * (x.ndim - 1))
    return x + step * grad + (2 * step).sqrt() * noise


@torch.no_grad()
def sample_sde_pc(denoiser, x, sigmas, *, rng, cond=None, callback=None, snr=0.16,
                  corrector_steps=1):
    """Predictor-corrector sampling of the VE SDE (Song et al. 2021, Algorithm 2)."""
    return predictor_corrector(denoiser, x * sigmas[0].to(x.dtype), sigmas, rng, cond, callback,
                               snr, corrector_steps)


def predictor_corrector(denoiser, x, sigmas, rng, cond=None, callback=None, snr=0.16,
                        corrector_steps=1):
    """Algorithm 2's loop from x at noise level sigmas[0] (already scaled) down to 0."""
    corrector_rng = rng.fork("corrector") if corrector_steps else None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i].to(x.dtype), sigmas[i + 1].to(x.dtype)
        if sigma_next == 0:                                    # noise-free last step
            denoised = x = denoiser(x, sigma, cond)
        else:
            x, denoised = reverse_diffusion_step(denoiser, x, sigma, sigma_next, rng, cond)
            for _ in range(corrector_steps):                   # Langevin at sigma_next
                x = langevin_step(denoiser, x, sigma_next, snr, corrector_rng, cond)
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma, "denoised": denoised})
    return x


@torch.no_grad()
def sample_sde_euler_maruyama(denoiser, x, sigmas, *, rng, cond=None, callback=None):
    """Euler-Maruyama on the reverse-time VE SDE (Song et al. 2021, Eq. 6 and 47)."""
    return sample_sde_pc(denoiser, x, sigmas, rng=rng, cond=cond, callback=callback,
                         corrector_steps=0)


SIGMA_LIMITS = {"sigma_min": (1e-6, 1e4), "sigma_max": (1e-6, 1e4)}
register_method(
    name="sde-euler-maruyama", family="sde", task="generate", model="edm",
    sampler=sample_sde_euler_maruyama, schedule=geometric_sigmas, version="1",
    limits=SIGMA_LIMITS, paper="Song et al. 2021, reverse-time VE SDE (Eq. 6), Euler-Maruyama")
register_method(
    name="sde-pc", family="sde", task="generate", model="edm", sampler=sample_sde_pc,
    schedule=geometric_sigmas, version="1",
    expected_nfe=lambda steps, *, corrector_steps=1: steps + corrector_steps * (steps - 1),
    limits={**SIGMA_LIMITS, "snr": (0.0, 10.0), "corrector_steps": (0, 100)},
    paper="Song et al. 2021, Algorithm 2 (reverse-diffusion predictor, Langevin corrector)")
