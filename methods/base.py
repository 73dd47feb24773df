"""The contracts every method shares, and a plugin author codes against: the Denoiser, the
sampler and schedule signatures, per-sample randomness, and the method and objective entries."""
import dataclasses
import functools
import hashlib
import inspect
import math
from types import MappingProxyType
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import torch

from methods.registry import Origin, Registry, did_you_mean, typed_like, validate_number

TASKS = ("generate", "superres", "img2img", "inpaint", "denoise", "anagram")
# How a sampler reads its unit noise x: "ve", as the Sampler contract says (x sigmas[0] is the
# state at sigmas[0]); "vp", as the VP state x_T itself (DDPM, DDIM: x_vp = x_ve / sqrt(1 +
# sigma^2)); None, a method that cannot start from a given noisy image (a library's own loop).
STARTS = ("ve", "vp", None)
MAX_STEPS = 10_000   # any method: more steps than this is a typo, not an experiment
# Hyper-parameters that joined methods after their rows were published: a row (and so its cell
# key) holds them only when a cell sets them to something other than the method's default, and
# the sampler and schedule then receive the default, which gives the earlier numerics exactly.
RECORDED_WHEN_SET = ("schedule", "sigmas")


def sample_seed(cell_seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for sample `index` of a cell (neighbouring seeds share nothing)."""
    digest = hashlib.sha256(f"{int(cell_seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class PerSampleRNG:
    """EDM's StackedRandomGenerator: sample i draws all of its noise from its own generator
    seeded by (cell seed, i), so a sample is identical whatever the batch it is drawn in."""

    def __init__(self, cell_seed: int, indices, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.generators = [torch.Generator(self.device).manual_seed(sample_seed(cell_seed, int(i)))
                           for i in indices]

    def randn(self, shape: tuple[int, ...], dtype=torch.float32) -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g, device=self.device, dtype=dtype)
                            for g in self.generators])

    def fork(self, stream: str) -> "PerSampleRNG":
        """A second, independent per-sample stream named `stream` (sample i's is seeded from its
        own generator's seed), so a sampler part that draws from it leaves this one untouched."""
        forked = PerSampleRNG.__new__(PerSampleRNG)
        forked.device = self.device
        forked.generators = [torch.Generator(self.device).manual_seed(
            int.from_bytes(hashlib.sha256(f"{g.initial_seed()}:{stream}".encode()).digest()[:8],
                           "little") & (2**63 - 1)) for g in self.generators]
        return forked

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != len(self.generators):
            raise ValueError(f"batch of {x.shape[0]} but {len(self.generators)} sample generators")
        return self.randn(tuple(x.shape[1:]), dtype=x.dtype)


@runtime_checkable
class Denoiser(Protocol):
    """D(x, sigma, cond) -> x0_hat for x = x0 + sigma * n (EDM's form; k-diffusion's
    `model(x, sigma, **extra_args)`). `sigma` is a scalar or one value per sample; `cond` is None
    or a dict that may hold "labels" (class indices, with "null_label" for the unconditional
    one), "lowres" (the upsampled low-resolution image) and, for the editing tasks, "source"
    (the image to edit) and "mask" (1 where a pixel is known). A network trained on a discrete
    schedule also exposes its training noise levels as `sigmas` (ascending), which discrete-time
    samplers respace."""
    sigma_min: float
    sigma_max: float
    sigma_data: float

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float,
                 cond: dict | None = None) -> torch.Tensor: ...


class Sampler(Protocol):
    """`@torch.no_grad()` sample_<name>(denoiser, x, sigmas, *, rng, cond=None, callback=None,
    **hparams) -> samples. `x` is unit-variance noise (scale it by sigmas[0]); `sigmas` are the
    schedule's n + 1 noise levels ending in 0; every random draw goes through `rng`
    (`PerSampleRNG.randn_like`), never the global RNG; `callback` (if given) receives
    {"i", "x", "sigma", "denoised"} once a step. Keyword-only arguments beyond these are the
    method's hyper-parameters, and their defaults its paper's."""

    def __call__(self, denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                 rng: "PerSampleRNG", cond: dict | None = None,
                 callback: Callable[[dict], None] | None = None, **hparams) -> torch.Tensor: ...


class Schedule(Protocol):
    """schedule(denoiser, steps, **hparams) -> steps + 1 sigmas (float64), descending from the
    first noise level to 0, clamped to [denoiser.sigma_min, denoiser.sigma_max]."""

    def __call__(self, denoiser: Denoiser, steps: int, **hparams) -> torch.Tensor: ...


@dataclasses.dataclass(frozen=True)
class Objective:
    """A training objective: its loss, and how a network trained with it becomes a Denoiser."""
    name: str
    loss: Callable[..., torch.Tensor]          # loss(net, x0, generator, labels=None, lowres=None)
    make_denoiser: Callable[[torch.nn.Module], torch.nn.Module]


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered sampling method: the sampler, its schedule and its defaults."""
    name: str
    family: str
    task: str
    model: str | None                           # the model kind it needs (None: no network)
    sampler: Sampler
    schedule: Schedule
    defaults: Mapping[str, Any]
    version: str
    expected_nfe: Callable[[int], int]          # for planning only: NFE is always measured
    paper: str
    max_steps: int = MAX_STEPS                  # a discrete-time schedule's length, say
    limits: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # hparam -> (low, high) or a set of choices
    requires: tuple[str, ...] = ()              # importable modules it needs (an optional library)
    min_steps: int = 1
    classifier: bool = False                    # guided by the suite's noise-aware classifier
    recorded_when_set: tuple[str, ...] = RECORDED_WHEN_SET   # () for methods that record every key
    start: str | None = "ve"                    # how its sampler reads x (STARTS)
    tune: Callable | None = None                # tune(noisy, clean, **hparams) -> hparams found on held-out pairs
    views: Callable | None = None               # an anagram's: views(**hparams) -> (view a, view b), None = as is

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"method {self.name!r}: task must be one of {TASKS}")
        if self.start not in STARTS:
            raise ValueError(f"method {self.name!r}: start must be one of {STARTS}")
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        object.__setattr__(self, "limits", MappingProxyType(dict(self.limits)))

    def check_steps(self, steps: int) -> None:
        validate_number(steps, f"method {self.name!r}: steps", self.min_steps, self.max_steps, integer=True)

    def missing_requirements(self) -> list[str]:
        """The modules in `requires` that cannot be imported here."""
        import importlib.util
        return [name for name in self.requires if importlib.util.find_spec(name) is None]

    def planned_nfe(self, steps: int, hparams: Mapping[str, Any]) -> int | None:
        """`expected_nfe` for `steps`, given the hyper-parameters its signature names (a
        corrector's step count, say); classifier-free guidance (cfg_scale != 1) evaluates the
        conditional and unconditional halves, two evaluations a call."""
        hparams = {**self.defaults, **hparams}
        named = keyword_defaults(self.expected_nfe)
        nfe = self.expected_nfe(steps, **{k: v for k, v in hparams.items() if k in named})
        return None if nfe is None else nfe * (1 if hparams.get("cfg_scale", 1.0) == 1.0 else 2)

    def schedule_on(self, denoiser, steps: int, hparams: Mapping[str, Any]) -> torch.Tensor:
        """The schedule's sigmas for `steps` on `denoiser`, given the resolved hyper-parameters
        (the schedule receives those its signature names)."""
        schedule_keys = keyword_defaults(self.schedule)
        hparams = {**self.defaults, **hparams}
        return self.schedule(denoiser, steps, **{k: v for k, v in hparams.items() if k in schedule_keys})

    def sample(self, denoiser, latents: torch.Tensor, steps: int, *, rng, cond=None,
               callback=None, start=None, **hparams) -> torch.Tensor:
        """Schedule, then sampler: each receives the hyper-parameters its signature names (a
        name in both, such as a solver's `afs`, goes to both). With `start` = (noisy, sigma) the
        sampler begins from the given image x0 + sigma n instead of noise (iterative denoising):
        the schedule is the method's own on the levels up to sigma, the sampler sees the
        denoiser as if trained up to sigma (`StartingAt`), and `latents` is unused."""
        if start is None:
            sigmas = self.schedule_on(denoiser, steps, hparams)
        else:
            noisy, sigma = start
            sigmas, latents = self.schedule_from(denoiser, sigma, steps, hparams), self.unit_noise_of(noisy, sigma)
            denoiser = StartingAt(denoiser, sigma)
        schedule_keys = set(keyword_defaults(self.schedule)) - set(keyword_defaults(self.sampler))
        sampler_args = {k: v for k, v in {**self.defaults, **hparams}.items() if k not in schedule_keys}
        return self.sampler(denoiser, latents, sigmas.to(latents.device), rng=rng, cond=cond,
                            callback=callback, **sampler_args)

    def schedule_from(self, denoiser, sigma: float, steps: int, hparams: Mapping[str, Any]) -> torch.Tensor:
        """The schedule on the levels up to `sigma`, which must begin exactly there."""
        sigmas = self.schedule_on(StartingAt(denoiser, sigma), steps, hparams)
        if not math.isclose(float(sigmas[0]), sigma, rel_tol=1e-5):
            raise ValueError(f"method {self.name!r} starts at sigma {float(sigmas[0]):.6g}, not at the "
                             f"input's {sigma:.6g}: its schedule cannot begin there on this model")
        return sigmas

    def unit_noise_of(self, noisy: torch.Tensor, sigma: float) -> torch.Tensor:
        """The x that makes this method's sampler start from `noisy` (= x0 + sigma n) at sigma."""
        if self.start is None:
            raise ValueError(f"method {self.name!r} cannot start from a noisy image (its sampling "
                             "loop is a library's own)")
        return noisy / (sigma if self.start == "ve" else math.sqrt(1 + sigma ** 2))

    def resolve_hparams(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults updated by `overrides`; an unknown or mistyped key is an error naming it."""
        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            raise KeyError(f"method {self.name!r} has no hyper-parameter {unknown[0]!r}"
                           f"{did_you_mean(unknown[0], self.defaults)}; "
                           f"valid: {', '.join(sorted(self.defaults)) or '(none)'}")
        resolved = dict(self.defaults)
        for key, value in overrides.items():
            value = typed_like(value, self.defaults[key], f"method {self.name!r}: hyper-parameter {key!r}")
            self._check_value(key, value)
            resolved[key] = value
        return {k: v for k, v in resolved.items()
                if not (k in self.recorded_when_set and v == self.defaults[k])}

    def _check_value(self, key: str, value: Any) -> None:
        what, limit = f"method {self.name!r}: hyper-parameter {key!r}", self.limits.get(key)
        if isinstance(limit, (set, frozenset)):
            if value not in limit:
                raise ValueError(f"{what} must be one of {', '.join(map(repr, sorted(limit)))}, "
                                 f"got {value!r}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            validate_number(value, what, *(limit or (None, None)))


class StartingAt:
    """A Denoiser seen as if trained only up to noise level `sigma`: schedules, which clamp to
    [sigma_min, sigma_max] and respace the training levels, then begin at sigma (a discrete
    schedule at its largest training level not above it), and so do samplers that read the
    model's noise range themselves (k-diffusion's dpm_fast and dpm_adaptive)."""

    def __init__(self, denoiser, sigma: float):
        self.denoiser, self.sigma_max = denoiser, float(sigma)
        self.sigma_min, self.sigma_data = denoiser.sigma_min, denoiser.sigma_data
        if hasattr(denoiser, "sigmas"):
            self.sigmas = denoiser.sigmas[denoiser.sigmas <= sigma * (1 + 1e-6)]

    def __call__(self, x, sigma, cond=None):
        return self.denoiser(x, sigma, cond)

    def __getattr__(self, name):     # anything else (classes, the null label) is the model's
        return getattr(self.__dict__["denoiser"], name)


def with_source_version(method: Method, origin: Origin) -> Method:
    """A plugin's method: its version carries the plugin's source hash, so editing the plugin
    changes every cell key of its methods and no stale row is reused."""
    return dataclasses.replace(method, version=f"{method.version}+{origin.source_sha256[:12]}")


METHODS: Registry[Method] = Registry("method", stamp=with_source_version)
OBJECTIVES: Registry[Objective] = Registry("objective")


CONTRACT_ARGUMENTS = {"rng", "cond", "callback"}


def keyword_defaults(function: Callable) -> dict[str, Any]:
    """The keyword-only arguments of a sampler or schedule beyond the contract's: its
    hyper-parameters, with their paper defaults."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.kind is p.KEYWORD_ONLY and name not in CONTRACT_ARGUMENTS}


def one_per_step(steps: int) -> int:
    return steps


def heun_nfe(steps: int) -> int:
    """Heun samplers: two evaluations a step, one on the last (Euler) step."""
    return 2 * steps - 1


def register_method(**fields) -> Method:
    """Register a method; defaults are the schedule's and sampler's keyword defaults (updated by
    `defaults_override`, a paper's choice of a shared schedule, say) and one NFE per step unless
    given."""
    override = fields.pop("defaults_override", {})
    fields.setdefault("defaults", {**keyword_defaults(fields["schedule"]),
                                   **keyword_defaults(fields["sampler"])})
    fields["defaults"] = {**fields["defaults"], **override}
    fields.setdefault("expected_nfe", one_per_step)
    method = Method(**fields)
    METHODS.register(method.name, method)
    return method


def register_variant(base_name: str, *, suffix: str, model: str, scale: str, limit: tuple,
                     wrap: Callable, note: str, **fields) -> Method:
    """`<base><suffix>`: the base method with its denoiser wrapped by `wrap(denoiser, value of
    the hyper-parameter `scale`, cond)` (a guidance), on `model`; everything else as the base."""
    base = METHODS.get(base_name)

    @functools.wraps(base.sampler)   # its signature is the base's: shared keys reach it
    def sampler(denoiser, x, sigmas, *, rng, cond=None, callback=None, **hparams):
        value = hparams.pop(scale, 1.0)
        return base.sampler(wrap(denoiser, value, cond), x, sigmas, rng=rng, cond=cond,
                            callback=callback, **hparams)
    sampler.__doc__ = f"{base.sampler.__doc__} With {note}."
    sampler.__name__ = f"{base.sampler.__name__}_{suffix.strip('-')}"
    return register_method(
        name=f"{base.name}{suffix}", family=base.family, task=base.task, model=model,
        sampler=sampler, schedule=base.schedule, defaults={**base.defaults, scale: 1.0},
        version=base.version, expected_nfe=base.expected_nfe, max_steps=base.max_steps,
        min_steps=base.min_steps, recorded_when_set=base.recorded_when_set, start=base.start,
        limits={**base.limits, scale: limit},
        paper=f"{base.paper} + {note}", **fields)
