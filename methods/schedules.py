"""Noise levels for every sigma-space sampler: the `schedule` hyper-parameter, and the grid rule
of the low-NFE solvers (`steps` is their NFE; `afs` and `denoise_to_zero` move grid points).

`schedule` names how n noise levels are spread from sigma_max down to sigma_min:
- `karras`: Karras et al. 2022, Eq. 5: evenly spaced in sigma^(1/rho) (EDM's rho = 7).
- `logsnr`: evenly spaced in log sigma, i.e. in the half log-SNR lambda = -log sigma (Lu et al.
  2022's recommendation for small images; Song et al. 2021's geometric VE levels are the same).
- `time-uniform`: evenly spaced in t^(1/rho) of the VP SDE whose noise range is the schedule's
  (Zhang & Chen 2022, DEIS; rho = 1 is uniform in t, DEIS uses rho = 2): log(1 + sigma(t)^2) =
  beta_d t^2 / 2 + beta_min t for t from 1 down to 1e-3, with beta_min and beta_d chosen so that
  sigma(1) = sigma_max and sigma(1e-3) = sigma_min.
- `edm`: EDM's published grid, `karras` with rho = 7 over [0.002, 80] (clamped to the model's
  range) whatever `rho`, `sigma_min` and `sigma_max` say.
- `explicit`: the cell's own `sigmas = [...]`, descending, inside the model's noise range; as
  many as the method's grid needs for `steps` (a trailing 0 may be written or left out).
- `gits`: found per model by GITS (methods.gits) in a warm-up the harness runs before the cell
  samples, then handed to the sampler as explicit sigmas; as many levels as `karras` has.
Every schedule ends with a 0 appended; levels are clamped to the denoiser's trained range.
"""
import math

import torch

SCHEDULES = ("karras", "logsnr", "time-uniform", "edm", "explicit", "gits")
WARMUP_SCHEDULES = ("gits",)   # found by a warm-up run, not computed from the hyper-parameters
EDM_GRID = {"sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0}
VP_T_MIN = 1e-3             # DEIS's (and the VP SDE's) smallest time, epsilon_s
SCHEDULE_LIMITS = {"schedule": set(SCHEDULES), "sigma_min": (1e-6, 1e4), "sigma_max": (1e-6, 1e4),
                   "rho": (1e-3, 1e3)}


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Eq. 5: n noise levels from sigma_max to sigma_min, evenly spaced in sigma^(1/rho), then 0."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    inv_rho = 1 / rho
    sigmas = (sigma_max ** inv_rho + ramp * (sigma_min ** inv_rho - sigma_max ** inv_rho)) ** rho
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])


def logsnr_levels(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """n levels evenly spaced in log sigma, from sigma_max to sigma_min."""
    if n == 1:
        return torch.tensor([sigma_max], dtype=torch.float64)
    return torch.logspace(math.log10(sigma_max), math.log10(sigma_min), n, dtype=torch.float64)


def vp_fit(sigma_min: float, sigma_max: float) -> tuple[float, float]:
    """(beta_min, beta_d) of the VP SDE with sigma(1) = sigma_max and sigma(VP_T_MIN) = sigma_min."""
    top, bottom = math.log1p(sigma_max ** 2), math.log1p(sigma_min ** 2)
    beta_d = 2 * (bottom / VP_T_MIN - top) / (VP_T_MIN - 1)
    return top - beta_d / 2, beta_d


def vp_sigma(t: torch.Tensor, beta_min: float, beta_d: float) -> torch.Tensor:
    return torch.expm1(beta_d * t ** 2 / 2 + beta_min * t).sqrt()


def vp_time(sigma: torch.Tensor, beta_min: float, beta_d: float) -> torch.Tensor:
    """The VP time of noise level sigma (the inverse of `vp_sigma`)."""
    return ((beta_min ** 2 + 2 * beta_d * torch.log1p(sigma ** 2)).sqrt() - beta_min) / beta_d


def time_uniform_levels(n: int, sigma_min: float, sigma_max: float, rho: float) -> torch.Tensor:
    """n levels evenly spaced in t^(1/rho) of the fitted VP SDE, t from 1 to VP_T_MIN."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    t = (1 + ramp * (VP_T_MIN ** (1 / rho) - 1)) ** rho
    sigmas = vp_sigma(t, *vp_fit(sigma_min, sigma_max))
    sigmas[0], sigmas[-1] = sigma_max, sigma_min if n > 1 else sigma_max   # exact ends
    return sigmas


def explicit_levels(n: int, sigmas, denoiser) -> torch.Tensor:
    """The cell's own levels: n of them, descending, finite, inside the model's range."""
    values = [float(s) for s in sigmas]
    if values and values[-1] == 0:
        values = values[:-1]
    if len(values) != n:
        raise ValueError(f"sigmas has {len(values)} nonzero noise levels, but these steps need {n}: "
                         "give that many, or change steps")
    if not all(math.isfinite(v) for v in values) or any(b >= a for a, b in zip(values, values[1:])):
        raise ValueError(f"sigmas must be finite and strictly descending, got {list(sigmas)}")
    low, high = float(denoiser.sigma_min), float(denoiser.sigma_max)
    if values[-1] < low * (1 - 1e-6) or values[0] > high * (1 + 1e-6):
        raise ValueError(f"sigmas must lie inside the model's noise range [{low:g}, {high:g}], "
                         f"got {values[-1]:g} .. {values[0]:g}")
    return torch.tensor(values, dtype=torch.float64)


def noise_levels(denoiser, n: int, schedule: str, sigma_min: float, sigma_max: float, rho: float,
                 sigmas=()) -> torch.Tensor:
    """n levels of `schedule` from the top of the range to its bottom, then 0."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule in WARMUP_SCHEDULES:
        raise ValueError(f"schedule {schedule!r} is found by the harness's warm-up (diffbench run) "
                         "and handed to the sampler as explicit sigmas; it is not computed alone")
    if (schedule == "explicit") != bool(sigmas):
        raise ValueError("schedule 'explicit' takes the list in 'sigmas', and 'sigmas' needs "
                         "schedule = 'explicit'")
    if schedule == "explicit":
        levels = explicit_levels(n, sigmas, denoiser)
    else:
        if schedule == "edm":
            sigma_min, sigma_max, rho = EDM_GRID["sigma_min"], EDM_GRID["sigma_max"], EDM_GRID["rho"]
        low, high = max(sigma_min, denoiser.sigma_min), min(sigma_max, denoiser.sigma_max)
        if low >= high and n > 1:
            raise ValueError(f"sigma_min ({low:g}) must be below sigma_max ({high:g}) on this model")
        if schedule in ("karras", "edm"):
            return karras_sigmas(n, low, high, rho)
        levels = logsnr_levels(n, low, high) if schedule == "logsnr" else time_uniform_levels(n, low, high, rho)
    return torch.cat([levels, torch.zeros(1, dtype=torch.float64)])


def stand_in(hparams: dict) -> dict:
    """The hyper-parameters with a warm-up schedule replaced by `karras`, which has as many
    levels: to validate a cell, and to count the levels its warm-up must find."""
    return {**hparams, "schedule": "karras"} if hparams.get("schedule") in WARMUP_SCHEDULES else hparams


def solver_levels(steps: int, afs: bool, denoise_to_zero: bool, per_step: int = 1) -> int:
    """How many nonzero levels a solver needs so that it makes exactly `steps` network
    evaluations: a step between two levels costs `per_step` evaluations (a singlestep solver's
    last step is first order when they do not divide), AFS saves the first, and
    `denoise_to_zero` spends one on D(x; sigma_min) at the end."""
    evaluations = steps - int(denoise_to_zero) + int(afs)
    return -(-evaluations // per_step) + 1


def analytic_denoised(denoiser, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """AFS (Zhou et al. 2024): the first evaluation replaced by the exact denoiser of Gaussian
    data N(0, sigma_data^2 I), x sigma_data^2 / (sigma^2 + sigma_data^2); at sigma_max = 80 this
    is the near-pure-noise limit where the network's output is known."""
    variance = denoiser.sigma_data ** 2
    return x * (variance / (sigma ** 2 + variance))
