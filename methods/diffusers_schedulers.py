"""diffusers' schedulers (Hugging Face, github.com/huggingface/diffusers) as methods
`diffusers:<SchedulerClass>`, on discrete-time models (eps, v or x0 networks on training
timesteps; the cell's `model`, `eps` unless given) and on continuous-noise ones (EDM), which are
shown to the scheduler as a discrete model on 1000 log-uniform levels (`training_sigmas`).

A scheduler is built from the model's own training schedule: its training noise levels give the
betas (`trained_betas`, `num_train_timesteps`), and the model is shown to it as an eps-predictor.
The sampling loop is diffusers' own: `set_timesteps`, then for each timestep
`scale_model_input`, the model, `step`. The model call at timestep t (integer, or fractional for
the sigma-space schedulers) evaluates our Denoiser at that timestep's training noise level on
the unscaled input, which hands the network exactly the (x_t, t) a diffusers pipeline would.

Hyper-parameters are the scheduler's config keys (`solver_order`, `algorithm_type`,
`use_karras_sigmas`, ...; an unknown key is an error), a few `step()` options (DDIM's eta,
Euler's churn, LMS's order), and `cfg_scale` for class-conditional models. The keys that
describe the training schedule come from the model and cannot be set.

Randomness stays per sample: the initial noise comes from the per-sample generators, and every
scheduler here that draws noise in `step` (DDPM, DDIM with eta > 0, Euler with churn,
Euler-ancestral, DPM-Solver's SDE variants) takes the list of per-sample generators, drawing
sample i's noise from generator i.
"""
import functools
import importlib.metadata
import inspect
import math

import torch

from methods.base import METHODS, Method
from methods.errors import DiffbenchError
from methods.guidance import guidance_for
from methods.registry import did_you_mean, typed_like

LIBRARY = "diffusers"
SCHEDULERS = ("DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "LMSDiscreteScheduler",
              "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
              "KDPM2DiscreteScheduler", "DPMSolverMultistepScheduler",
              "DPMSolverSinglestepScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler")
# Config keys that describe the model's training schedule: set from the model, never by a cell.
MODEL_KEYS = {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
              "prediction_type"}
# Arguments of step() offered as hyper-parameters, with diffusers' defaults.
STEP_OPTIONS = {"DDIMScheduler": {"eta": 0.0, "use_clipped_model_output": False},
                "EulerDiscreteScheduler": {"s_churn": 0.0, "s_noise": 1.0},
                "LMSDiscreteScheduler": {"order": 4}}
STEP_LIMITS = {"eta": (0.0, 1.0), "s_churn": (0.0, 1000.0), "s_noise": (0.0, 2.0), "order": (1, 6),
               "cfg_scale": (0.0, 100.0)}


def library_version() -> str:
    try:
        return importlib.metadata.version("diffusers")
    except importlib.metadata.PackageNotFoundError:
        return "absent"


@functools.cache
def scheduler_class(name: str):
    import diffusers
    return getattr(diffusers, name)


@functools.cache
def config_defaults(name: str) -> dict:
    """The scheduler's config keys a cell may set, with diffusers' defaults."""
    parameters = inspect.signature(scheduler_class(name).__init__).parameters
    return {key: p.default for key, p in parameters.items()
            if key != "self" and p.kind is p.POSITIONAL_OR_KEYWORD and key not in MODEL_KEYS}


CONTINUOUS_TIMESTEPS = 1000   # diffusers' default num_train_timesteps


def training_sigmas(denoiser) -> torch.Tensor:
    """The noise levels of the model's training timesteps, ascending. A continuous-noise model
    (EDM, say) has none, so it is shown to the scheduler as a discrete model on 1000 levels
    evenly spaced in log sigma over its range; a sigma-space scheduler's fractional timestep then
    maps back to its exact noise level (`sigma_at_timestep` interpolates in log sigma too)."""
    sigmas = getattr(denoiser, "sigmas", None)
    if sigmas is not None:
        return sigmas
    return torch.logspace(math.log10(denoiser.sigma_min), math.log10(denoiser.sigma_max),
                          CONTINUOUS_TIMESTEPS, dtype=torch.float64)


def training_betas(denoiser) -> list[float]:
    """The betas of the model's training schedule, from its training noise levels
    (alpha-bar_t = 1 / (1 + sigma_t^2), beta_t = 1 - alpha-bar_t / alpha-bar_{t-1})."""
    alphas_cumprod = 1 / (1 + training_sigmas(denoiser).double().cpu() ** 2)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    return (1 - alphas_cumprod / previous).tolist()


def sigma_at_timestep(denoiser, timestep: torch.Tensor) -> torch.Tensor:
    """The training noise level of timestep t: sigmas[t], interpolated in log sigma between
    training timesteps (the inverse of the denoiser's sigma -> t map)."""
    sigmas, t = training_sigmas(denoiser), float(timestep)
    if t == int(t):
        return sigmas[int(t)]
    low = math.floor(t)
    log_sigmas = sigmas[low:low + 2].log()
    return (log_sigmas[0] + (t - low) * (log_sigmas[1] - log_sigmas[0])).exp()


class DiffusersMethod(Method):
    """A diffusers scheduler as a method: its config keys are checked against the scheduler's
    own, and its sampling loop replaces the schedule-then-sampler of built-in methods."""

    @property
    def scheduler_name(self) -> str:
        return self.name.split(":", 1)[1]

    def resolve_hparams(self, overrides):
        """`cfg_scale` and the step options with their defaults, and the config keys the cell
        sets, each of its default's type; the scheduler itself checks the values."""
        config = config_defaults(self.scheduler_name)
        step_and_guidance = {k: v for k, v in overrides.items() if k in self.defaults}
        resolved = super().resolve_hparams(step_and_guidance)
        for key, value in overrides.items():
            if key in self.defaults:
                continue
            if key in MODEL_KEYS:
                raise KeyError(f"method {self.name!r}: {key!r} is the model's training schedule, "
                               "set in its [models] table, not a sampling hyper-parameter")
            if key not in config:
                raise KeyError(f"method {self.name!r} has no hyper-parameter {key!r}"
                               f"{did_you_mean(key, {*config, *self.defaults})}; valid: "
                               f"{', '.join(sorted({*config, *self.defaults}))}")
            resolved[key] = config_value(self.name, key, value, config[key])
        return resolved

    def planned_nfe(self, steps: int, hparams) -> int:
        """The model calls of this configuration (one per timestep of the scheduler's loop, on a
        default 1000-step training schedule), twice with classifier-free guidance."""
        hparams = {**self.defaults, **hparams}
        config = {k: v for k, v in hparams.items() if k not in self.defaults}
        scheduler = scheduler_class(self.scheduler_name)(num_train_timesteps=1000, **config)
        scheduler.set_timesteps(steps)
        return len(scheduler.timesteps) * (1 if hparams["cfg_scale"] == 1.0 else 2)

    def build_scheduler(self, denoiser, steps: int, hparams, device="cpu"):
        config = {k: v for k, v in hparams.items() if k not in self.defaults}
        betas = training_betas(denoiser)
        scheduler = scheduler_class(self.scheduler_name)(
            num_train_timesteps=len(betas), trained_betas=betas, prediction_type="epsilon", **config)
        scheduler.set_timesteps(steps, device=device)
        return scheduler

    def schedule_on(self, denoiser, steps: int, hparams) -> torch.Tensor:
        """The training noise levels of the scheduler's timesteps, then 0; the scheduler's loop
        is first run through once with a zero model output on one 2x2 sample, so that a
        configuration the library cannot run (PNDM's Runge-Kutta warm-up needs 4 steps, say)
        fails here, before any work."""
        scheduler = self.build_scheduler(denoiser, steps, hparams)
        sigmas = torch.stack([sigma_at_timestep(denoiser, t) for t in scheduler.timesteps]).double()
        x = torch.zeros(1, 1, 2, 2)
        for t in scheduler.timesteps:
            x = scheduler.step(torch.zeros_like(x), t, scheduler.scale_model_input(x, t)).prev_sample
        return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])

    @torch.no_grad()
    def sample(self, denoiser, latents: torch.Tensor, steps: int, *, rng, cond=None,
               callback=None, start=None, **hparams) -> torch.Tensor:
        if start is not None:
            self.unit_noise_of(*start)   # refuses: the library's loop starts from its own noise
        scheduler = self.build_scheduler(denoiser, steps, hparams, latents.device)
        guided = guidance_for(denoiser, hparams["cfg_scale"], cond)
        step_options = {k: hparams[k] for k in self.defaults if k != "cfg_scale"}
        if "generator" in inspect.signature(scheduler.step).parameters:
            step_options["generator"] = rng.generators
        x = latents * scheduler.init_noise_sigma
        for i, t in enumerate(scheduler.timesteps):
            sigma = sigma_at_timestep(denoiser, t).to(x.device, x.dtype)
            x_unscaled = scheduler.scale_model_input(x, t) * (1 + sigma ** 2).sqrt()
            denoised = guided(x_unscaled, sigma, cond)
            eps = (x_unscaled - denoised) / sigma
            x = scheduler.step(eps, t, x, **step_options).prev_sample
            if callback is not None:
                callback({"i": i, "x": x, "sigma": sigma, "denoised": denoised})
        return x


def config_value(method: str, key: str, value, default):
    """A config value of its default's type (any scalar where the default is None)."""
    what = f"method {method!r}: hyper-parameter {key!r}"
    if default is not None and default is not inspect.Parameter.empty:
        return typed_like(value, default, what)
    if isinstance(value, (str, int, float, bool)):
        return value
    raise DiffbenchError(f"{what} must be a scalar, got {value!r}")


def default_nfe(name: str):
    """For planning: the model calls of the default scheduler (1000 training steps) for n steps;
    the row's NFE is always measured."""
    def expected(steps: int) -> int:
        scheduler = scheduler_class(name)(num_train_timesteps=1000)
        scheduler.set_timesteps(steps)
        return len(scheduler.timesteps)
    return expected


def register_all() -> None:
    version = f"1+diffusers-{library_version()}"
    for name in SCHEDULERS:
        options = STEP_OPTIONS.get(name, {})
        method = DiffusersMethod(
            name=f"{LIBRARY}:{name}", family=LIBRARY, task="generate", model="eps",
            sampler=None, schedule=None, defaults={"cfg_scale": 1.0, **options}, version=version,
            expected_nfe=default_nfe(name), max_steps=1000,
            limits={k: STEP_LIMITS[k] for k in ("cfg_scale", *options) if k in STEP_LIMITS},
            requires=("diffusers",), start=None, paper=f"diffusers {library_version()} {name}")
        METHODS.register(method.name, method)


register_all()
