"""What a cell does before it samples: GITS's schedule search (methods.gits), or a method tuning
its hyper-parameters on held-out pairs (gaussian-blur's kernel for a denoising level). The warm-up runs on the raw denoiser with its own seeds (no sample of any cell
uses them), is timed and counted, and its cost is stored in the row's `warmup`, never in NFE.
The schedule it finds reaches the sampler as explicit sigmas, while the row keeps the cell's own
hyper-parameters (schedule = "gits"), so its key does not depend on what was found.

The teacher and its step costs depend on the model, the noise range and the warm-up seeds, not
on the NFE, so a suite's GITS cells of one model share one warm-up (each row records it, marked
`shared` after the first)."""
import dataclasses

import torch

from bench.run.cost import CountingDenoiser, Stopwatch
from bench.run.tasks import Denoising
from methods.base import PerSampleRNG
from methods.gits import FINE_LEVELS, WARMUP_SAMPLES, gits_costs, gits_levels
from methods.schedules import WARMUP_SCHEDULES, karras_sigmas, stand_in

WARMUP_SEED_OFFSET = 10 ** 12     # warm-up sample i draws from seed (cell seed, offset + i)
_SHARED: dict[tuple, tuple[torch.Tensor, torch.Tensor, dict]] = {}


def fine_grid(denoiser, hparams: dict) -> torch.Tensor:
    """The teacher's Karras levels (rho = 7) over the cell's noise range, clamped to the model's."""
    low = max(hparams.get("sigma_min", 0.002), denoiser.sigma_min)
    high = min(hparams.get("sigma_max", 80.0), denoiser.sigma_max)
    return karras_sigmas(FINE_LEVELS, low, high, 7.0)[:-1]


def teacher_costs(run) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """GITS's step costs for the run's model and noise range, and what finding them cost."""
    denoiser, device = run.model.denoiser, run.ctx.device
    fine = fine_grid(denoiser, run.hparams)
    identity = (run.model.checkpoint_sha256, run.config.seed, tuple(fine.tolist()), str(device))
    if identity in _SHARED:
        costs, fine, record = _SHARED[identity]
        return costs, fine, {**record, "shared": True}
    rng = PerSampleRNG(run.config.seed, range(WARMUP_SEED_OFFSET, WARMUP_SEED_OFFSET + WARMUP_SAMPLES), device)
    counter = CountingDenoiser(denoiser)
    with torch.no_grad(), Stopwatch(device) as watch:
        costs = gits_costs(counter, rng.randn(run.dataset.shape), fine.to(device))
    record = {"method": "gits", "samples": WARMUP_SAMPLES, "fine_levels": FINE_LEVELS,
              "evaluations_per_sample": counter.nfe(WARMUP_SAMPLES), "seconds": watch.seconds,
              "shared": False}
    _SHARED[identity] = (costs, fine, record)
    return costs, fine, record


def tuned(run):
    """The run with the hyper-parameters its method found on the task's held-out pairs, and what
    it found; the row keeps the cell's own (0 = tuned), so the key does not depend on them."""
    noisy, clean = run.task.heldout(run.dataset)
    with Stopwatch(torch.device("cpu")) as watch:
        found = run.method.tune(noisy, clean, **run.hparams)
    if found is None:
        return run, None
    chosen = {k: v for k, v in found.items() if k in run.method.defaults}
    record = {"method": f"{run.method.name} tuning", "heldout_images": len(clean), "found": chosen,
              "scores": {k: v for k, v in found.items() if k not in chosen}, "seconds": watch.seconds}
    return dataclasses.replace(run, hparams={**run.hparams, **chosen}), record


def warmed_up(run):
    """The run as it samples (a warm-up schedule replaced by the levels it found, tuned
    hyper-parameters filled in) and the warm-up's record for the row (None when the cell needs
    none)."""
    if run.method.tune is not None and isinstance(run.task, Denoising):
        return tuned(run)
    if run.hparams.get("schedule") not in WARMUP_SCHEDULES:
        return run, None
    levels = len(run.method.schedule_on(run.model.denoiser, run.cell.steps, stand_in(run.hparams))) - 1
    costs, fine, record = teacher_costs(run)
    sigmas = gits_levels(costs, fine, levels)
    sampling = dataclasses.replace(run, hparams={**run.hparams, "schedule": "explicit", "sigmas": tuple(sigmas)})
    return sampling, {**record, "sigmas": sigmas}
