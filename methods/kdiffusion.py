"""k-diffusion's samplers (Crowson, github.com/crowsonkb/k-diffusion, 0.1.1.post1) as methods
`k-diffusion:<sampler>`.

k-diffusion's samplers call `model(x, sigma, **extra_args)` for the denoised x0: our Denoiser
contract, so they run on every model family (EDM, discrete eps / v, flow), class-conditional
ones with classifier-free guidance (`cfg_scale`). The cell's `model` picks which; `edm` unless
given. The schedule is k-diffusion's own `get_sigmas_karras` (rho) or `get_sigmas_exponential`
over the model's noise range.

Randomness stays per sample. The ancestral samplers' default noise (fresh Gaussian per step) is
drawn from the per-sample generators. The SDE samplers default to a Brownian tree: dpmpp_2m_sde
and dpmpp_3m_sde ask it only for increments over consecutive, disjoint intervals
(sigma_i, sigma_i+1), which a Brownian motion makes independent standard normals once scaled,
so they draw those from the per-sample generators too (the same distribution, without the
tree's cost); dpmpp_sde asks for overlapping intervals, so it keeps the tree: one
`torchsde.BrownianTree` per sample, seeded from that sample's generator (k-diffusion's
BrownianTreeNoiseSampler takes one seed per batch item). Per-sample trees cost about a
millisecond per sample and noise draw on this CPU, which its timings include. Not offered: the churn of euler, heun
and dpm_2 (`s_churn` > 0), which k-diffusion draws from torch's global generator. `dpm_adaptive`
chooses its step sizes from the error over the whole batch, so its samples, unlike every other
method's, depend on the batch they are drawn in; its `steps` is fixed at 1 and its NFE (which
rtol / atol decide) is measured. dpmpp_2m_sde and dpmpp_3m_sde need 2 steps or more (with one,
0.1.1.post1 fails with an UnboundLocalError).

k-diffusion is an optional extra. Only `k_diffusion.sampling` is imported: the package's
`__init__` also imports its training and evaluation code, whose dependencies (clip, dctorch,
wandb, ...) conflict with this environment (see DESIGN.md), and the sampling module needs
none of them.
"""
import importlib
import importlib.metadata
import sys
import types

import torch

from methods.base import heun_nfe, one_per_step, register_method
from methods.guidance import guidance_for

LIBRARY = "k-diffusion"
ETA = {"eta": (0.0, 1.0), "s_noise": (0.0, 2.0)}
SCHEDULE_LIMITS = {"schedule": {"karras", "exponential"}, "rho": (1.0, 20.0),
                   "cfg_scale": (0.0, 100.0)}


def import_sampling():
    """`k_diffusion.sampling`, importing the package normally when it can be, else only its
    sampling module (and the `utils` it imports) under an empty package."""
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    try:
        return importlib.import_module("k_diffusion.sampling")
    except ImportError:
        for name in [m for m in sys.modules if m == "k_diffusion" or m.startswith("k_diffusion.")]:
            del sys.modules[name]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None:
        raise ImportError("k-diffusion is not installed: pip install --no-deps "
                          "k-diffusion==0.1.1.post1 torchsde torchdiffeq (see the README)")
    package = types.ModuleType("k_diffusion")
    package.__path__, package.__spec__ = list(spec.submodule_search_locations), spec
    sys.modules["k_diffusion"] = package
    return importlib.import_module("k_diffusion.sampling")


def library_version() -> str:
    try:
        return importlib.metadata.version("k-diffusion")
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def kdiffusion_sigmas(denoiser, steps: int, *, schedule="karras", rho=7.0) -> torch.Tensor:
    """k-diffusion's Karras et al. (2022, Eq. 5) or exponential (even in log sigma) schedule
    over the model's noise range, then 0."""
    sampling = import_sampling()
    if schedule == "karras":
        sigmas = sampling.get_sigmas_karras(steps, denoiser.sigma_min, denoiser.sigma_max, rho)
    elif schedule == "exponential":
        sigmas = sampling.get_sigmas_exponential(steps, denoiser.sigma_min, denoiser.sigma_max)
    else:
        raise ValueError(f"schedule must be 'karras' or 'exponential', got {schedule!r}")
    return sigmas.double()


def per_sample_seeds(rng) -> list[int]:
    """One Brownian-tree seed per sample, drawn from the sample's own generator."""
    return [int(torch.randint(0, 2**63 - 1, (), generator=g, device=rng.device)) for g in rng.generators]


def noise_sampler(noise: str, sampling, x, sigmas, rng):
    if noise == "gaussian":
        return lambda sigma, sigma_next: rng.randn_like(x)
    # The tree spans the schedule's range, widened by a float32 rounding step: k-diffusion asks
    # for noise at sigma = exp(-t), which may round just outside it.
    positive = sigmas[sigmas > 0].double()
    return sampling.BrownianTreeNoiseSampler(x, positive.min() * (1 - 1e-5), positive.max() * (1 + 1e-5),
                                             seed=per_sample_seeds(rng))


def kdiffusion_sampler(function: str, noise: str | None, takes_range: bool):
    """The method's sampler: k-diffusion's `sample_<function>` on our denoiser, its noise from
    the per-sample generators, its callback translated to ours."""
    @torch.no_grad()
    def sample(denoiser, x, sigmas, *, rng, cond=None, callback=None, cfg_scale=1.0, **options):
        sampling = import_sampling()
        guided = guidance_for(denoiser, cfg_scale, cond)
        sigmas = sigmas.to(x.dtype)
        x = x * sigmas[0]

        def model(x, sigma, cond=None):
            return guided(x, sigma, cond)

        kwargs = {"extra_args": {"cond": cond}, "disable": True, **options}
        if callback is not None:
            kwargs["callback"] = lambda info: callback({k: info[k] for k in ("i", "x", "sigma", "denoised")})
        if noise is not None:
            kwargs["noise_sampler"] = noise_sampler(noise, sampling, x, sigmas, rng)
        run = getattr(sampling, f"sample_{function}")
        if takes_range:   # dpm_fast / dpm_adaptive take the model's noise range (dpm_fast its NFE)
            low, high = denoiser.sigma_min, denoiser.sigma_max
            if function == "dpm_fast":
                return run(model, x, low, high, len(sigmas) - 1, **kwargs)
            return run(model, x, low, high, **kwargs)
        return run(model, x, sigmas, **kwargs)

    sample.__name__ = f"sample_kdiffusion_{function}"
    sample.__doc__ = f"k-diffusion's sample_{function} on the Denoiser contract."
    return sample


ADAPTIVE = {"order": 3, "rtol": 0.05, "atol": 0.0078, "h_init": 0.05, "pcoeff": 0.0, "icoeff": 1.0,
            "dcoeff": 0.0, "accept_safety": 0.81, "eta": 0.0, "s_noise": 1.0}
ADAPTIVE_LIMITS = {"order": {2, 3}, "rtol": (1e-6, 1.0), "atol": (1e-8, 1.0), "h_init": (1e-4, 10.0),
                   "pcoeff": (0.0, 2.0), "icoeff": (0.0, 2.0), "dcoeff": (0.0, 2.0),
                   "accept_safety": (0.1, 1.0), **ETA}
# sampler -> (its hyper-parameters with k-diffusion's defaults, their limits, noise, NFE for n steps)
SAMPLERS = {
    "euler": ({}, {}, None, one_per_step),
    "euler_ancestral": ({"eta": 1.0, "s_noise": 1.0}, ETA, "gaussian", one_per_step),
    "heun": ({}, {}, None, heun_nfe),
    "dpm_2": ({}, {}, None, heun_nfe),
    "dpm_2_ancestral": ({"eta": 1.0, "s_noise": 1.0}, ETA, "gaussian", heun_nfe),
    "lms": ({"order": 4}, {"order": (1, 6)}, None, one_per_step),
    "dpmpp_2m": ({}, {}, None, one_per_step),
    "dpmpp_2s_ancestral": ({"eta": 1.0, "s_noise": 1.0}, ETA, "gaussian", heun_nfe),
    "dpmpp_sde": ({"eta": 1.0, "s_noise": 1.0, "r": 0.5}, {**ETA, "r": (0.01, 0.99)}, "brownian", heun_nfe),
    "dpmpp_2m_sde": ({"eta": 1.0, "s_noise": 1.0, "solver_type": "midpoint"},
                     {**ETA, "solver_type": {"midpoint", "heun"}}, "gaussian", one_per_step),
    "dpmpp_3m_sde": ({"eta": 1.0, "s_noise": 1.0}, ETA, "gaussian", one_per_step),
    "dpm_fast": ({"eta": 0.0, "s_noise": 1.0}, ETA, "gaussian", one_per_step),
    "dpm_adaptive": (ADAPTIVE, ADAPTIVE_LIMITS, "gaussian", lambda steps: None),
}


def register_all() -> None:
    version = f"1+k-diffusion-{library_version()}"
    for function, (defaults, limits, noise, nfe) in SAMPLERS.items():
        register_method(
            name=f"{LIBRARY}:{function}", family=LIBRARY, task="generate", model="edm",
            sampler=kdiffusion_sampler(function, noise, function in ("dpm_fast", "dpm_adaptive")),
            schedule=kdiffusion_sigmas,
            defaults={"schedule": "karras", "rho": 7.0, "cfg_scale": 1.0, **defaults},
            version=version, expected_nfe=nfe, max_steps=1 if function == "dpm_adaptive" else 1000,
            min_steps=2 if function in ("dpmpp_2m_sde", "dpmpp_3m_sde") else 1,
            limits={**SCHEDULE_LIMITS, **limits}, requires=("k_diffusion", "torchsde", "torchdiffeq"),
            paper=f"k-diffusion {library_version()} sample_{function}")


register_all()
