"""Image editing with an unconditional diffusion model. The harness's `img2img` and `inpaint`
tasks hand every sampler here its input in `cond`: cond["source"] is the image to edit (the
guide, or the image with a hole) in [-1, 1], cond["mask"] (inpainting) is 1 where a pixel is
known and 0 in the hole.

- `sdedit`: Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing with Stochastic
  Differential Equations", Algorithm 1 on the VE SDE: perturb the guide y to t0 = `strength`,
  x(t0) = y + sigma(t0) z with sigma(t) = sigma_min (sigma_max / sigma_min)^t (the VE SDE's
  geometric noise, Song et al. 2021's sigma_min 0.01, sigma_max 50), then take `steps` steps of
  the reverse SDE down to 0 by Euler-Maruyama (`solver = "euler-maruyama"`, the paper's), or
  of the probability-flow ODE by EDM's Heun (`solver = "heun"`). `strength = 0` returns y with
  no network evaluation; `strength = 1` starts from sigma_max, unconditional sampling moved by
  y (whose trace on the output shrinks as sigma_max grows).
- `inpaint-replace`: inpainting by replacement (Song et al. 2021, App. I.2; the baseline of
  Lugmayr et al. 2022): after every step to sigma', the known pixels are overwritten with
  y + sigma' z' (the ground truth noised to the same level), so only the hole is generated.
- `repaint`: Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion Probabilistic
  Models", Algorithm 1 with resampling: the replacement step, and at every `jump_length`-th
  level a jump back up by `jump_length` levels (fresh noise, Eq. 8's forward transition in
  sigma: x <- x + sqrt(sigma_far^2 - sigma_near^2) z) and down again, `jump_n_sample` times in
  all, so the generated part has time to harmonise with the known part. Every step down is a
  network evaluation: NFE = steps + (jump_n_sample - 1) jump_length (jump points).

The inpainting steps are EDM's Euler-ancestral steps in sigma on the Karras levels (the
DDPM-like stochastic step RePaint builds on).
"""
import torch

from methods.base import heun_nfe, register_method
from methods.edm import KARRAS_LIMITS, ancestral_step, edm_schedule, heun_solve
from methods.sde import geometric_sigmas, predictor_corrector

SOLVERS = frozenset({"euler-maruyama", "heun"})


def sdedit_sigma(strength: float, sigma_min: float, sigma_max: float) -> float:
    """sigma(t0) of the VE SDE: sigma_min (sigma_max / sigma_min)^t0."""
    return sigma_min * (sigma_max / sigma_min) ** strength


def sdedit_schedule(denoiser, steps: int, *, strength=0.5, sigma_min=0.01, sigma_max=50.0) -> torch.Tensor:
    """`steps` geometric levels from sigma(t0) down to sigma_min, then 0 (Algorithm 1's
    discretisation of [0, t0]); just [0] at strength 0, where the guide is returned as it is."""
    if strength == 0:
        return torch.zeros(1, dtype=torch.float64)
    start = sdedit_sigma(strength, sigma_min, sigma_max)
    return geometric_sigmas(denoiser, steps, sigma_min=min(sigma_min, start), sigma_max=start)


@torch.no_grad()
def sample_sdedit(denoiser, x, sigmas, *, rng, cond=None, callback=None, solver="euler-maruyama"):
    """SDEdit (Algorithm 1): x holds unit-normal latents drawn from the cell's seeds."""
    guide = cond["source"].to(x.dtype)
    if len(sigmas) == 1:
        return guide.clone()
    perturbed = guide + sigmas[0].to(x.dtype) * x             # x(t0) = y + sigma(t0) z
    if solver == "heun":
        return heun_solve(denoiser, perturbed, sigmas, cond, callback)
    return predictor_corrector(denoiser, perturbed, sigmas, rng, cond, callback, corrector_steps=0)


def sdedit_nfe(steps: int, *, strength=0.5, solver="euler-maruyama") -> int:
    if strength == 0:
        return 0
    return heun_nfe(steps) if solver == "heun" else steps


def _ancestral(denoiser, x, sigma, sigma_next, rng, cond):
    """One Euler-ancestral step from sigma to sigma_next (DDPM's posterior sampling in sigma)."""
    denoised = denoiser(x, sigma, cond)
    sigma_down, sigma_up = ancestral_step(sigma, sigma_next)
    x = x + (sigma_down - sigma) * (x - denoised) / sigma
    return x + sigma_up * rng.randn_like(x) if sigma_next > 0 else x


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


def repaint_nfe(steps: int, *, jump_length=10, jump_n_sample=10) -> int:
    """One evaluation per step down the path."""
    path = repaint_path(steps, jump_length, jump_n_sample)
    return sum(there > here for here, there in zip(path, path[1:]))


@torch.no_grad()
def sample_repaint(denoiser, x, sigmas, *, rng, cond=None, callback=None, jump_length=10,
                   jump_n_sample=10):
    """RePaint (Lugmayr et al. 2022, Algorithm 1); jump_n_sample = 1 is plain replacement."""
    source, mask = cond["source"].to(x.dtype), cond["mask"].to(x.dtype)
    sigmas = sigmas.to(x.dtype)
    x = x * sigmas[0]
    path = repaint_path(len(sigmas) - 1, jump_length, jump_n_sample)
    for i, (here, there) in enumerate(zip(path, path[1:])):
        sigma, sigma_next = sigmas[here], sigmas[there]
        if there > here:                                   # a denoising step, then replacement
            generated = _ancestral(denoiser, x, sigma, sigma_next, rng, cond)
            x = mask * _known(source, sigma_next, rng, x) + (1 - mask) * generated
            if callback is not None:
                callback({"i": i, "x": x, "sigma": sigma, "denoised": None})
        else:                                              # a jump back up: fresh noise
            x = x + (sigma_next ** 2 - sigma ** 2).sqrt() * rng.randn_like(x)
    return x


@torch.no_grad()
def sample_inpaint_replace(denoiser, x, sigmas, *, rng, cond=None, callback=None):
    """Inpainting by replacing the known region at every step (RePaint without resampling)."""
    return sample_repaint(denoiser, x, sigmas, rng=rng, cond=cond, callback=callback,
                          jump_n_sample=1)


register_method(
    name="sdedit", family="editing", task="img2img", model="edm", sampler=sample_sdedit,
    schedule=sdedit_schedule, version="1", expected_nfe=sdedit_nfe,
    limits={"strength": (0.0, 1.0), "sigma_min": (1e-6, 1e4), "sigma_max": (1e-6, 1e4),
            "solver": SOLVERS},
    paper="Meng et al. 2022 (SDEdit), Algorithm 1 on the VE SDE")
register_method(
    name="inpaint-replace", family="editing", task="inpaint", model="edm",
    sampler=sample_inpaint_replace, schedule=edm_schedule, version="1", limits=KARRAS_LIMITS,
    paper="Song et al. 2021, App. I.2: replace the known region at every step")
register_method(
    name="repaint", family="editing", task="inpaint", model="edm", sampler=sample_repaint,
    schedule=edm_schedule, version="1", expected_nfe=repaint_nfe,
    limits={**KARRAS_LIMITS, "jump_length": (1, 1000), "jump_n_sample": (1, 1000)},
    paper="Lugmayr et al. 2022 (RePaint), Algorithm 1 with resampling")
