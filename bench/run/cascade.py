"""Cascades: generation at low resolution, then super-resolution to the suite's image size
(the "progressive super-resolution" of cascaded diffusion: Ho et al. 2022, SR3's cascades).

The first stage is any generation method on a model trained at low resolution (`lowres = true`:
the images downsampled by superres_scale exactly as a super-resolution model's inputs are); its
samples are quantised to uint8 like a stored image, which is what the super-resolution model
was trained to be conditioned on, then handed to the second stage's method in cond["lowres"]
(upsampled). Both stages draw their noise from the sample's own generator, the second after the
first, so a cascade's samples depend on the seed and the sample's index only. NFE and time are
counted per stage and summed; the row is a generation row (FID at the suite's size, the same
protocol and reference as direct generation) with the stages in row["cascade"].
"""
import contextlib
import dataclasses
import statistics

import torch

from bench.config import CellSpec
from bench.data.degradation import condition_of
from bench.data.quantize import from_uint8, to_uint8
from bench.run.cost import CompileGuard, CountingDenoiser, Stopwatch
from methods import METHODS, Method


@dataclasses.dataclass(frozen=True)
class Stage:
    """A cascade's super-resolution stage as it runs."""
    spec: CellSpec
    method: Method
    hparams: dict
    model: object          # a LoadedModel, or None for a method without a network (bicubic)


def stage_of(cell: CellSpec, models: dict) -> Stage | None:
    if cell.superres is None:
        return None
    method = METHODS.get(cell.superres.method)
    kind = cell.superres_model_kind
    return Stage(cell.superres, method, method.resolve_hparams(dict(cell.superres.hparams)),
                 None if kind is None else models[kind])


def stage_identity(stage: Stage) -> dict:
    """What decides the second stage's part of a cascade's row (in the cell key and the row)."""
    return {"method": stage.method.name, "version": stage.method.version, "steps": stage.spec.steps,
            "hparams": stage.hparams,
            "checkpoint_sha256": stage.model.checkpoint_sha256 if stage.model else None}


def lowres_shape(shape: tuple[int, ...], scale: int) -> tuple[int, ...]:
    return (shape[0], shape[1] // scale, shape[2] // scale)


def handoff(samples: torch.Tensor) -> torch.Tensor:
    """The first stage's samples as the second stage's LR input: quantised like a stored image
    (`lowres_of`'s last step), in [-1, 1]."""
    return from_uint8(to_uint8(samples)).to(samples.device)


def superresolve(stage: Stage, lowres: torch.Tensor, scale: int, rng, device, wrap=lambda d: d,
                 timed: bool = False) -> tuple[torch.Tensor, float, CountingDenoiser]:
    """The second stage on one batch: its samples, seconds and counted denoiser."""
    counter = CountingDenoiser(wrap(stage.model.denoiser) if stage.model else None)
    cond = {"lowres": condition_of(handoff(lowres), scale).to(device)}
    latents = rng.randn((lowres.shape[1], lowres.shape[2] * scale, lowres.shape[3] * scale))
    with CompileGuard() if timed else contextlib.nullcontext(), Stopwatch(device) as watch:
        x = stage.method.sample(counter, latents, stage.spec.steps, rng=rng, cond=cond, **stage.hparams)
    return x, watch.seconds, counter


class StagedCount:
    """The counted denoisers of a cascade's stages read as one (NFE and time inside summed), and
    each stage's NFE and seconds."""

    def __init__(self, counters: list[CountingDenoiser], seconds: list[float]):
        self.counters, self.seconds = counters, seconds
        self.gradient = None

    def nfe(self, batch_size: int) -> float:
        return sum(c.nfe(batch_size) for c in self.counters)

    def stage_nfe(self, batch_size: int) -> list[float]:
        return [c.nfe(batch_size) for c in self.counters]

    @property
    def seconds_inside(self) -> float:
        return sum(c.seconds_inside for c in self.counters)


def declared_nfe(first: int | None, stage: Stage) -> int | None:
    second = stage.method.planned_nfe(stage.spec.steps, stage.hparams)
    return None if first is None or second is None else first + second


def cascade_record(run_cell: CellSpec, first_model, stage: Stage, records, identity) -> dict:
    """row["cascade"]: the second stage's identity and, per stage, its method, steps, model,
    NFE per image and median seconds per image over the timed batches."""
    timed = [r for r in records if r.timed]
    stages = []
    for number, (spec, model) in enumerate(((run_cell, first_model), (stage.spec, stage.model))):
        nfe = sum(r.stage_nfe[number] * r.images for r in records) / sum(r.images for r in records)
        stages.append({"method": spec.method, "steps": spec.steps, "model": model and identity(model),
                       "nfe": int(nfe) if float(nfe).is_integer() else nfe,
                       "time_per_image_s": statistics.median(r.stage_seconds[number] / r.images
                                                             for r in timed)})
    return {"superres": stage_identity(stage), "stages": stages}


def stage_flops(model, shape: tuple[int, ...], cond_shape: tuple[int, ...] | None, device) -> int:
    """FLOPs of one evaluation of `model` on one image of `shape` (torch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.zeros((1, *shape), device=device)
    cond = {"lowres": torch.zeros((1, *cond_shape), device=device)} if cond_shape else None
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.denoiser(x, torch.tensor([1.0], device=device), cond)
    return int(counter.get_total_flops())

