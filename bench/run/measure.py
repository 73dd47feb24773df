"""A cell's measured fields, from its batches' records: NFE checked against the method's rule,
timing, memory, FLOPs, overhead, guidance cost, the grid and the stored features."""
import dataclasses
import statistics

import torch

from bench.quality.scoring import metric_records
from bench.quality.stored_features import save_cell_features
from bench.run.batch import BatchFailed, BatchOutcome, generate
from bench.run.cascade import cascade_record, declared_nfe, stage_flops
from bench.run.cell import CellRun
from bench.run.cost import CountingDenoiser, PeakMemory, TimingSummary, median_forward_seconds
from bench.run.distributed import world_size
from bench.run.grids import save_grid
from bench.run.profiling import ProfiledDenoiser, profile_sampling
from bench.run.suite import model_identity


@dataclasses.dataclass
class SampledCell:
    """Every batch of a cell, sampled and scored (rank 0 holds the scores)."""
    records: list[BatchOutcome]
    scores: dict
    features: object
    per_image: dict
    timed_counter: CountingDenoiser | None
    memory: PeakMemory
    peaks: list


def cell_measurements(run: CellRun, key: str, sampled: SampledCell) -> dict:
    """The row's measured fields, from every batch's record (rank 0)."""
    ctx, config, method, records = run.ctx, run.config, run.method, sampled.records
    nfe = cell_nfe(method, run.cell.steps, records)
    declared = method.planned_nfe(run.cell.steps, run.hparams)
    if run.superres:
        declared = declared_nfe(declared, run.superres)
    if declared is not None and nfe != declared:
        raise BatchFailed(f"counted NFE {nfe} differs from the method's declared NFE {declared} "
                          f"for {run.cell.steps} steps: the method's NFE rule or its sampler is wrong")
    timing = TimingSummary.of([r.seconds / r.images for r in records if r.timed])
    if timing is None:
        raise BatchFailed(f"no timed batch: with {world_size()} process(es), n_samples must cover "
                          f"warmup_batches + 1 batches per process")
    grid = save_grid(torch.cat([r.grid for r in records]), ctx.store.directory / "samples" / f"{key}.png",
                     nrow=run.task.grid_columns)
    in_situ = [r.in_situ for r in records if r.timed]
    peaks = [p for p in sampled.peaks if p is not None]
    return {
        "overhead": None if run.superres else sampled.timed_counter and overhead(
            run.model, sampled.timed_counter, timing.median * config.batch_size, in_situ, ctx.device),
        "profile": profile_cell(run) if config.profile else None,
        "nfe": nfe, "nfe_expected": declared,
        "metrics": metric_records(sampled.scores),
        "time_per_image_s": dataclasses.asdict(timing),
        "throughput_images_per_s": world_size() / timing.median if timing.median > 0 else None,
        "world_size": world_size(),
        "memory": {"kind": sampled.memory.kind, "peak_bytes": max(peaks) if peaks else None,
                   "reserved_bytes": sampled.memory.reserved_bytes, "region": "sampling and scoring"},
        "flops_per_image": flops_per_image(run, records[0].stage_nfe or [nfe]),
        "samples_grid": str(grid.relative_to(ctx.store.directory)),
        "paired": {"features": save_cell_features(ctx.store.directory, key, sampled.features,
                                                       sampled.per_image),
                   "reference": ctx.stored_references[run.task.key]},
        "classifier": guidance_record(ctx, records, timing) if method.classifier else None,
        **({"cascade": cascade_record(run.cell, run.model, run.superres, records, model_identity)}
           if run.superres else {}),
    }


def overhead(model, counter: CountingDenoiser, batch_seconds: float, in_situ: list,
             device: torch.device) -> dict | None:
    """Sampling wall-clock of a full batch over (denoiser calls x the bare denoiser's forward
    time on the input the sampler gave it): what the sampler adds beyond its network
    evaluations (1.0 = nothing). The forward is timed on the sampler's own first call, so a
    guided sampler's doubled batch is timed as the doubled batch it is. On the CPU,
    `ratio_in_situ` is the median over timed batches of a batch's wall-clock over the time spent
    inside its denoiser calls: no separate measurement, so no drift of the machine's speed
    between the two."""
    if model is None or counter.calls == 0:
        return None
    forward = median_forward_seconds(model.denoiser, *counter.first_call)
    in_situ = statistics.median(in_situ) if device.type == "cpu" and None not in in_situ else None
    return {"ratio": batch_seconds / (counter.calls * forward), "ratio_in_situ": in_situ,
            "bare_forward_s": forward, "denoiser_calls": counter.calls,
            "rows_per_call": counter.evaluations // counter.calls, "batch_seconds": batch_seconds}


def profile_cell(run: CellRun) -> dict:
    """The profiler's breakdown of one extra full batch (see bench.run.profiling)."""
    indices = range(run.config.batch_size)
    inputs = run.inputs(indices)
    return profile_sampling(lambda: generate(run, indices, inputs, wrap=ProfiledDenoiser),
                            run.ctx.device, len(indices))


def classifier_identity(ctx) -> dict:
    """The guiding classifier: name, weights hash, held-out accuracy by noise level."""
    return {"name": ctx.classifier.name, "sha256": ctx.classifier.sha256,
            "accuracy_by_sigma": ctx.classifier.accuracy_by_sigma}


def guidance_record(ctx, records, timing: TimingSummary) -> dict:
    """The guiding classifier (name, weights hash, held-out accuracy by noise level) and what its
    gradients cost: evaluations per sample (not in NFE) and, on the CPU, their share of the
    timed sampling time."""
    timed = [r for r in records if r.timed]
    share = (sum(r.guidance_seconds for r in timed) / sum(r.seconds for r in timed)
             if ctx.device.type == "cpu" and timed else None)
    return {**classifier_identity(ctx), "evaluations_per_sample": records[0].guidance_evaluations,
            "time_share": share,
            "ms_per_image": share * timing.median * 1e3 if share is not None else None}


def cell_nfe(method, steps: int, records) -> float:
    """Network evaluations per sample. A fixed-step method makes the same number in every batch
    (anything else is a fault); an adaptive one (no expected NFE, e.g. k-diffusion's
    dpm_adaptive, whose step sizes follow each batch's error) reports the mean over samples."""
    if method.expected_nfe(steps) is None:
        nfe = sum(r.nfe * r.images for r in records) / sum(r.images for r in records)
    else:
        nfe_seen = {r.nfe for r in records}
        if len(nfe_seen) != 1:
            raise RuntimeError(f"network evaluations per sample differ between batches: {sorted(nfe_seen)}")
        nfe = nfe_seen.pop()
    return int(nfe) if float(nfe).is_integer() else nfe


def flops_per_image(run: CellRun, stage_nfe: list[float]) -> int:
    """FLOPs of one denoiser evaluation on one image (torch's flop counter) times measured NFE,
    summed over a cascade's stages."""
    device = run.ctx.device
    stages = [(run.model, run.sample_shape, run.task.conditioned_shape(run.dataset.shape))]
    if run.superres:
        stages.append((run.superres.model, run.dataset.shape, run.dataset.shape))
    return sum(int(round(stage_flops(model, shape, cond_shape, device) * nfe))
               for (model, shape, cond_shape), nfe in zip(stages, stage_nfe) if model is not None and nfe)
