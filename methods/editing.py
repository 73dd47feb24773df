"""Image editing with an unconditional diffusion model: the samplers only. (The harness's
`img2img` and `inpaint` tasks that feed them test images and masks are not built yet, so these
are not registered methods.)

- SDEdit: Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing with Stochastic
  Differential Equations", Algorithm 1: perturb the guide image y to noise level sigma(t0),
  x = y + sigma(t0) z, then run a sampler from t0 to 0. `strength` is t0 as a fraction of the
  sampler's schedule: the last round(strength * steps) steps are run; 0 returns y itself.
- Inpainting by replacement (Song et al. 2021, App. I.2; the "replacement" baseline of Lugmayr
  et al. 2022): after every step to sigma', the known pixels are overwritten with y + sigma' z'
  (the ground truth noised to the same level), so only the hole is generated.
- RePaint: Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion Probabilistic
  Models", Algorithm 1 with resampling: the replacement step, plus, every `jump_length` steps,
  jumping back up by as many steps (fresh noise, Eq. 8's forward transition in sigma:
  x <- x + sqrt(sigma_far^2 - sigma_near^2) z) and descending again, `jump_n_sample` times in
  all, so the generated part has time to harmonise with the known part.

Steps are EDM's Euler-ancestral steps in sigma space (the DDPM-like stochastic step RePaint
builds on); the mask is 1 where the pixel is known.
"""
import torch

from methods.edm import ancestral_step


def _ancestral(denoiser, x, sigma, sigma_next, rng, cond):
    """One Euler-ancestral step from sigma to sigma_next (DDPM's posterior sampling in sigma)."""
    denoised = denoiser(x, sigma, cond)
    sigma_down, sigma_up = ancestral_step(sigma, sigma_next)
    x = x + (sigma_down - sigma) * (x - denoised) / sigma
    return x + sigma_up * rng.randn_like(x) if sigma_next > 0 else x


def sdedit_start(sigmas: torch.Tensor, strength: float) -> int:
    """The schedule index SDEdit starts from: the last round(strength * steps) steps remain."""
    steps = len(sigmas) - 1
    return steps - int(round(strength * steps))


@torch.no_grad()
def sample_sdedit(sampler, denoiser, x, sigmas, *, rng, source, strength, cond=None, **hparams):
    """SDEdit (Algorithm 1) around any sampler of the contract: `x` holds unit-normal latents
    drawn from the cell's seeds, `source` the guide image y."""
    start = sdedit_start(sigmas, strength)
    if start == len(sigmas) - 1:
        return source.clone()
    tail = sigmas[start:]
    perturbed = source + tail[0].to(x.dtype) * x          # x(t0) = y + sigma(t0) z
    # the sampler scales its input by its first sigma: hand it the perturbed image in those units
    return sampler(denoiser, perturbed / tail[0].to(x.dtype), tail, rng=rng, cond=cond, **hparams)


def _known(source, sigma, rng, like):
    """The known pixels noised to sigma: y + sigma z (exactly y at sigma = 0)."""
    return source + sigma * rng.randn_like(like) if sigma > 0 else source


def repaint_path(steps: int, jump_length: int, jump_n_sample: int) -> list[int]:
    """The schedule indices RePaint visits (0 = sigma_max, `steps` = sigma 0): down one index at
    a time; on reaching a jump point (every `jump_length` steps above the end, counted from it),
    back up `jump_length` indices, `jump_n_sample - 1` times per point (Lugmayr et al.'s
    schedule, App. B)."""
    to_go = {t: jump_n_sample - 1 for t in range(jump_length, steps, jump_length)}
    t, path = steps, [0]
    while t > 0:
        t -= 1
        path.append(steps - t)
        if to_go.get(t, 0) > 0:
            to_go[t] -= 1
            for _ in range(jump_length):
                t += 1
                path.append(steps - t)
    return path


@torch.no_grad()
def sample_repaint(denoiser, x, sigmas, *, rng, source, mask, cond=None, jump_length=10,
                   jump_n_sample=1):
    """RePaint (Lugmayr et al. 2022, Algorithm 1); jump_n_sample = 1 is plain replacement."""
    sigmas = sigmas.to(x.dtype)
    x = x * sigmas[0]
    path = repaint_path(len(sigmas) - 1, jump_length, jump_n_sample)
    for here, there in zip(path, path[1:]):
        sigma, sigma_next = sigmas[here], sigmas[there]
        if there > here:                                   # a denoising step, then replacement
            generated = _ancestral(denoiser, x, sigma, sigma_next, rng, cond)
            x = mask * _known(source, sigma_next, rng, x) + (1 - mask) * generated
        else:                                              # a jump back up: fresh noise
            x = x + (sigma_next ** 2 - sigma ** 2).sqrt() * rng.randn_like(x)
    return x


def sample_inpaint_replace(denoiser, x, sigmas, *, rng, source, mask, cond=None):
    """Inpainting by replacing the known region at every step (RePaint without resampling)."""
    return sample_repaint(denoiser, x, sigmas, rng=rng, source=source, mask=mask, cond=cond,
                          jump_n_sample=1)
