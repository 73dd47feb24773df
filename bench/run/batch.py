"""One batch of a cell: its conditioning, its samples (counted and timed), their scores and its
share of the sample grid."""
import contextlib
import dataclasses
import functools
import logging
import traceback

import torch

from bench.data.quantize import NonFiniteSamples, to_uint8
from bench.models.recipes import LoadedModel
from bench.quality.scoring import BatchScores, CellScorer
from bench.run.cascade import StagedCount, superresolve
from bench.run.cell import CellRun
from bench.run.cost import CompileGuard, CountingDenoiser, CountingGradient, Stopwatch
from bench.run.suite import task_metrics
from bench.run.tasks import TaskInputs
from methods import PerSampleRNG
from methods.classifier_guidance import log_prob_gradient


log = logging.getLogger("diffbench")


def class_labels(model: LoadedModel | None, indices) -> torch.Tensor | None:
    """Sample i of a class-conditional cell asks for class i mod K (balanced, seed-independent)."""
    classes = model.num_classes if model else 0
    return torch.tensor([i % classes for i in indices]) if classes else None


def requested_labels(run: CellRun, indices) -> torch.Tensor | None:
    """The classes a cell asks for: i mod K, K the classifier's classes for a classifier-guided
    cell (its model is unconditional), else the class-conditional model's."""
    if run.method.classifier:
        return torch.tensor([i % run.ctx.classifier.module.num_classes for i in indices])
    return class_labels(run.model, indices)


def conditioning(run: CellRun, indices, inputs: TaskInputs | None, gradient=None) -> dict | None:
    """What the sampler is conditioned on: class labels, the classifier's gradient and the
    task's inputs (the upsampled LR image, the image to edit, the mask)."""
    classes = run.model.num_classes if run.model else 0
    return sampler_condition(requested_labels(run, indices), classes, gradient, inputs, run.ctx.device)


def sampler_condition(labels, num_classes: int, gradient, inputs: TaskInputs | None,
                      device) -> dict | None:
    """The `cond` dict of the Denoiser contract: labels with the classifier's gradient (classifier
    guidance) or with the null label (a class-conditional model), and the task's inputs."""
    cond = {}
    if gradient is not None:
        cond.update(labels=labels.to(device), classifier_gradient=gradient)
    elif labels is not None:
        cond.update(labels=labels.to(device), null_label=num_classes)
    if inputs is not None:
        cond.update({name: value.to(device) for name, value in inputs.cond.items()})
    return cond or None


def generate(run: CellRun, indices, inputs: TaskInputs | None, wrap=lambda d: d,
             timed: bool = False) -> tuple[torch.Tensor, float, CountingDenoiser]:
    """One batch: samples for `indices`, its wall-clock seconds, and the counted denoiser.
    `wrap` wraps the denoiser (the profiler's ranges); a timed batch that compiles fails."""
    ctx, method, model = run.ctx, run.method, run.model
    counter = CountingDenoiser(wrap(model.denoiser) if model else None)
    if method.classifier:
        counter.gradient = CountingGradient(functools.partial(log_prob_gradient, ctx.classifier.module))
    rng = PerSampleRNG(run.config.seed, indices, ctx.device)
    latents = rng.randn(run.sample_shape)
    cond = conditioning(run, indices, inputs, counter.gradient)
    with CompileGuard() if timed else contextlib.nullcontext(), Stopwatch(ctx.device) as watch:
        x = method.sample(counter, latents, run.cell.steps, rng=rng, cond=cond,
                          start=starting_point(run, inputs), **run.hparams)
    if run.superres is None:
        return x, watch.seconds, counter
    x, seconds, second = superresolve(run.superres, x, run.config.superres_scale, rng, ctx.device,
                                      wrap, timed)
    return x, watch.seconds + seconds, StagedCount([counter, second], [watch.seconds, seconds])


def starting_point(run: CellRun, inputs: TaskInputs | None) -> tuple[torch.Tensor, float] | None:
    """Where the sampler begins when not at pure noise (a denoising cell's noisy image at its
    noise level), for a method with a network (one without reads its inputs from cond)."""
    start = run.task.starting_point(inputs) if run.model is not None else None
    return start and (start[0].to(run.ctx.device), start[1])


def scorer_for(run: CellRun) -> CellScorer:
    return CellScorer(run.ctx.extractor, run.ctx.references[run.task.key],
                      task_metrics(run.config, run.task), run.config.n_samples)


def measure_batch(run: CellRun, scorer: CellScorer, pixels, indices, inputs) -> BatchScores:
    return run.task.measure(scorer, pixels, inputs, requested_labels(run, indices), run.config.superres_scale,
                            functools.partial(views_of, run), run.hparams)


def views_of(run: CellRun, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An anagram cell's two views of its uint8 samples (a view the method leaves as is is the
    samples themselves)."""
    return tuple(pixels if view is None else view(pixels) for view in run.method.views(**run.hparams))


class BatchFailed(Exception):
    """A batch raised (on this or another process); the message is the original error's."""


def error_message(err: Exception) -> str:
    """What an error row says: the exception's type and first line."""
    return f"{type(err).__name__}: {err}".splitlines()[0][:500]


@dataclasses.dataclass
class BatchOutcome:
    """One batch as the process that ran it measured it."""
    number: int
    scores: BatchScores | None = None
    grid: torch.Tensor | None = None    # its first samples, while the cell's grid is not full
    seconds: float = 0.0
    images: int = 0
    timed: bool = False
    nfe: float | None = None
    in_situ: float | None = None
    guidance_evaluations: float | None = None   # classifier gradients per sample
    guidance_seconds: float | None = None       # spent in them (CPU)
    error: str | None = None
    nonfinite: bool = False
    stage_nfe: list[float] | None = None       # a cascade's NFE per sample, per stage
    stage_seconds: list[float] | None = None   # and its seconds for the batch, per stage


def run_batch(run: CellRun, scorer, number: int, local_number: int):
    """Batch `number` (sample indices number x batch_size on): its outcome, and the counted
    denoiser when it ran. Full batches after this process's warm-up ones are timed: one shape,
    compiled and autotuned before."""
    config = run.config
    start = number * config.batch_size
    indices = range(start, min(start + config.batch_size, config.n_samples))
    timed = local_number >= config.warmup_batches and len(indices) == config.batch_size
    try:
        inputs = run.inputs(indices)
        x, seconds, counter = generate(run, indices, inputs, timed=timed)
        pixels = to_uint8(x).cpu()
        scores = measure_batch(run, scorer, pixels, indices, inputs).cpu()
    except NonFiniteSamples as err:
        return BatchOutcome(number, error=str(err), nonfinite=True), None
    except Exception as err:  # reported in the row; the suite goes on
        log.debug("batch %d failed:\n%s", number, traceback.format_exc())
        return BatchOutcome(number, error=error_message(err)), None
    gradient, staged = counter.gradient, isinstance(counter, StagedCount)
    return BatchOutcome(number, scores, run.task.grid_part(pixels, indices[0], config.grid_size, inputs,
                                                             functools.partial(views_of, run)), seconds,
                        len(indices), timed, counter.nfe(len(indices)),
                        seconds / counter.seconds_inside if counter.seconds_inside else None,
                        gradient and gradient.evaluations / len(indices),
                        gradient and gradient.seconds_inside,
                        stage_nfe=counter.stage_nfe(len(indices)) if staged else None,
                        stage_seconds=counter.seconds if staged else None), counter
