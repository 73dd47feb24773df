"""Runs a suite: train or load models, then for each cell sample, measure, score and store a row.

A method that raises yields an `error` row and the suite goes on; a non-finite sample yields a
`nonfinite` row and no pixels. Cells whose key already has a completed row are skipped.
"""
import contextlib
import dataclasses
import functools
import hashlib
import statistics
import logging
import traceback
from pathlib import Path

import torch

from bench.classifier import LoadedClassifier, load_classifier
from bench.config import CellSpec, SuiteConfig
from bench.datasets import load_dataset
from bench.measure import (CompileGuard, CountingDenoiser, CountingGradient, PeakMemory, Stopwatch,
                           TimingSummary, median_forward_seconds)
from bench.profiling import ProfiledDenoiser, profile_sampling
from bench.fidelity import fidelity_convention
from bench.metrics import (METRICS, SUPERRES_METRICS, check_metrics_available, fid_protocol,
                           load_extractor, protocol_fingerprint, reference_features,
                           reference_statistics, statistics_file_protocol, stored_metric)
from bench.paths import cache_dir, ensure_writable
from bench.plugins import loaded_sources
from bench.provenance import provenance, utc_now
from bench.quantize import NonFiniteSamples, to_uint8
from bench.recipes import LoadedModel, ensure_trained, load_suite_external, suite_recipes
from bench.distributed import broadcast_from_main, gather_on_main, is_main, main_first, rank, world_size
from bench.errors import DiffbenchError, StorageError
from bench.samples import save_grid
from bench.stored_features import save_cell_features, save_reference
from bench.scoring import BatchScores, CellScorer, Reference
from bench.rows import new_row
from bench.store import ROWS_FILE, ResultStore, canonical_json, shard_file
from bench.superres import DEGRADATION, check_scale, condition_of, lowres_of, side_by_side
from methods import METHODS, PerSampleRNG
from methods.classifier_guidance import log_prob_gradient

log = logging.getLogger("diffbench")


@dataclasses.dataclass
class SuiteContext:
    config: SuiteConfig
    store: ResultStore
    device: torch.device
    extractor: object
    references: dict[str, Reference]  # task -> what its samples are compared with
    protocols: dict[str, dict]      # task -> metric protocol
    stored_references: dict[str, dict]  # task -> its reference stored beside the rows
    models: dict[str, LoadedModel]
    provenance: dict
    classifier: LoadedClassifier | None = None   # for classifier-guided cells


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    rows_written: int
    cells_skipped: int
    failed: int
    results_path: Path


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def resolved_config(config: SuiteConfig, models: dict[str, LoadedModel]) -> dict:
    """The suite as it will run: every default and recipe filled in (written beside results)."""
    data = dataclasses.asdict(config)
    data["cells"] = [{"method": c.method, "steps": c.steps,
                      "hparams": METHODS.get(c.method).resolve_hparams(dict(c.hparams))}
                     for c in config.cells]
    data["models"] = {kind: {**model_identity(m),
                             **({"network": m.meta["network"], "budget": m.meta["budget"]}
                                if m.recipe else {"external": m.meta["external"]})}
                      for kind, m in models.items()}
    data["plugin_sources"] = loaded_sources()
    return data


def model_identity(model: LoadedModel) -> dict:
    """How a row and the resolved config name a model: recipe (or source), cache key, weights hash."""
    return {"recipe": model.name, "cache_key": model.meta["cache_key"],
            "checkpoint_sha256": model.checkpoint_sha256}


def load_models(config: SuiteConfig, device: torch.device) -> dict[str, LoadedModel]:
    models = load_suite_external(config, str(device))
    for kind, recipe in suite_recipes(config).items():
        models[kind] = ensure_trained(recipe, str(device))
    if config.compile:   # compiled lazily: the first (warm-up, untimed) batch builds the graph
        models = {kind: dataclasses.replace(m, denoiser=torch.compile(m.denoiser))
                  for kind, m in models.items()}
    return models


def prepare(config: SuiteConfig, results_root: Path, rows_file: str = ROWS_FILE) -> SuiteContext:
    store = ResultStore(results_root, config.name, rows_file)
    if is_main():
        store.ensure_writable()
        ensure_writable(cache_dir(), "model cache", "set DIFFBENCH_CACHE to a writable folder")
    device = resolve_device(config.device)
    if device.type == "cuda":   # autotuned per shape in the warm-up batch; the flag is in provenance
        torch.backends.cudnn.benchmark = True
    with main_first():   # rank 0 trains and computes statistics into the caches; the others load them
        extractor = load_extractor(config.feature_extractor, config.dataset,
                                   config.inception_weights or None)
        check_metrics_available(config.metrics, extractor, config.path)
        references, protocols, stored = {}, {}, {}
        for task in sorted({METHODS.get(c.method).task for c in config.cells}):
            references[task], protocols[task] = task_protocol(config, extractor, task)
        models = load_models(config, device)
        guided = any(METHODS.get(c.method).classifier for c in config.cells)
        classifier = load_classifier(config.dataset, str(device)) if guided else None
    if is_main():
        store.write_config(resolved_config(config, models))
        stored = {task: store_reference(config, extractor, task, references[task], protocols[task],
                                        store.directory) for task in references}
    return SuiteContext(config, store, device, extractor, references, protocols, stored, models,
                        provenance(device), classifier)


def store_reference(config, extractor, task: str, reference: Reference, protocol: dict,
                    directory: Path) -> dict:
    """The task's reference beside the rows, for paired comparisons: its features when it has
    fewer images than feature dimensions (and comes from a dataset split), else its statistics."""
    features = None
    if not (task == "generate" and config.reference_stats) and reference.count < len(reference.stats["mu"]):
        split = config.reference_split if task == "generate" else "test"
        features = reference_features(extractor, config.dataset, split).numpy()
    return save_reference(directory, protocol_fingerprint(protocol), reference.stats, features)


def task_metrics(config: SuiteConfig, task: str) -> tuple[str, ...]:
    """The suite's metrics that apply to a task: PSNR, SSIM and LR-consistency only to
    super-resolution (where they are always computed), FID always."""
    chosen = {"fid", *config.metrics} - set(SUPERRES_METRICS)
    if task == "superres":
        chosen |= set(SUPERRES_METRICS)
    return tuple(sorted(chosen))


def task_protocol(config: SuiteConfig, extractor, task: str) -> tuple[Reference, dict]:
    """Reference and metric protocol of a task. Generation compares with the suite's
    reference split; super-resolution super-resolves the first n_samples test images and
    compares with the whole test split."""
    dataset = load_dataset(config.dataset)
    if task == "superres":
        check_scale(dataset.shape, config.superres_scale, config.path)
        if config.n_samples > len(dataset.test_index):
            raise DiffbenchError(f"{config.path}: n_samples {config.n_samples} exceeds the "
                                 f"{len(dataset.test_index)} test images super-resolution runs on; "
                                 "lower n_samples")
    split = config.reference_split if task == "generate" else "test"
    metrics = task_metrics(config, task)
    if task == "generate" and config.reference_stats:
        return statistics_file_reference(config, extractor, metrics)
    stats, count = reference_statistics(extractor, config.dataset, split)
    needs_features = any(METRICS.get(m).needs == "features" for m in metrics)
    reference = Reference(stats, count, reference_features(extractor, config.dataset, split)
                          if needs_features else None)
    protocol = fid_protocol(extractor, config.dataset, split, stats, count, config.n_samples,
                            metrics)
    if task == "superres":
        protocol["superres"] = {"scale": config.superres_scale, "degradation": DEGRADATION,
                                "inputs": "test split, first n_samples",
                                "fidelity": fidelity_convention(dataset.shape[0], config.superres_scale)}
    return reference, protocol


def statistics_file_reference(config: SuiteConfig, extractor, metrics) -> tuple[Reference, dict]:
    """Generated samples compared with FID statistics from a file (`reference_stats`)."""
    probe = to_uint8(load_dataset(config.dataset).images[:1])
    stats, count, protocol = statistics_file_protocol(extractor, config.reference_stats, probe,
                                                      config.n_samples, metrics,
                                                      f"{config.path}: [suite].reference_stats")
    return Reference(stats, count or 0), protocol


def model_of(ctx: SuiteContext, cell: CellSpec) -> LoadedModel | None:
    kind = cell.model_kind
    return None if kind is None else ctx.models[kind]


def cell_key(ctx: SuiteContext, cell: CellSpec) -> str:
    method = METHODS.get(cell.method)
    model = model_of(ctx, cell)
    identity = {"method": method.name, "version": method.version, "steps": cell.steps,
                "hparams": method.resolve_hparams(dict(cell.hparams)),
                "checkpoint_sha256": model and model.checkpoint_sha256,
                **({"model_key": model.meta["cache_key"]} if model and not model.recipe else {}),
                **({"classifier_sha256": ctx.classifier.sha256} if method.classifier else {}),
                "dataset_hash": load_dataset(ctx.config.dataset).content_hash,
                "n_samples": ctx.config.n_samples, "seed": ctx.config.seed,
                "batch_size": ctx.config.batch_size, "device": str(ctx.device),
                "protocol": protocol_fingerprint(ctx.protocols[method.task])}
    return identity_key(identity)


def identity_key(identity: dict) -> str:
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:20]


def stored_cell_key(row: dict, fingerprint: str) -> str:
    """The key `cell_key` gave a stored generated row, rebuilt from the row's own fields under
    `fingerprint` (a row does not say whether its model came from a recipe, so both forms are
    tried against the stored key; the one that matches is the row's)."""
    model = row.get("model") or {}
    identity = {"method": row["method"], "version": row["method_version"], "steps": row["steps"],
                "hparams": row["hparams"], "checkpoint_sha256": model.get("checkpoint_sha256"),
                "dataset_hash": row["dataset_hash"], "n_samples": row["n_samples"],
                "seed": row["seed"], "batch_size": row["batch_size"],
                "device": row["provenance"]["device"], "protocol": fingerprint,
                **({"classifier_sha256": row["classifier"]["sha256"]} if row.get("classifier") else {})}
    forms = [identity] + ([{**identity, "model_key": model["cache_key"]}] if model else [])
    old = [form for form in forms
           if identity_key({**form, "protocol": row["protocol_fingerprint"]}) == row["cell_key"]]
    if not old:
        raise ValueError(f"row {row['cell_key']}: its fields do not give its stored cell key")
    return identity_key(old[0])


def shard_cells(cells: list, shard: tuple[int, int] | None) -> list[tuple[int, CellSpec]]:
    """(number, cell) of the cells shard (i, n) runs: every n-th cell from the i-th, so shards
    are disjoint, together cover the suite, and share its slow and fast cells alike."""
    index, count = shard or (0, 1)
    return [(number, cell) for number, cell in enumerate(cells, 1) if (number - 1) % count == index]


def run_suite(config: SuiteConfig, results_root: Path,
              shard: tuple[int, int] | None = None) -> RunOutcome:
    """Runs the suite's cells (with `shard` = (i, n), only shard i's, into its own rows file),
    holding the rows file's lock on rank 0: a second run into the same file is refused."""
    store = ResultStore(results_root, config.name, shard_file(*shard) if shard else ROWS_FILE)
    with store.lock() if is_main() else contextlib.nullcontext():
        return _run_suite(config, results_root, shard)


def _run_suite(config, results_root, shard) -> RunOutcome:
    ctx = prepare(config, results_root, shard_file(*shard) if shard else ROWS_FILE)
    merged = ResultStore(results_root, config.name)
    done = broadcast_from_main(ctx.store.completed_keys() | (merged.completed_keys() if shard else set())
                               if is_main() else None)
    cells = shard_cells(config.cells, shard)
    keys = [cell_key(ctx, cell) for _, cell in cells]
    written = skipped = 0
    for (number, cell), key in zip(cells, keys):
        if key in done:
            skipped += 1
            log.info("[%d/%d] %s steps=%d: already stored, skipped", number, len(config.cells),
                     cell.label, cell.steps)
            continue
        row = run_cell(ctx, cell, key)
        if not is_main():
            continue   # rank 0 holds the gathered scores and writes the row
        row = ctx.store.append(row)
        written += 1
        log.info("[%d/%d] %s steps=%d: %s", number, len(config.cells), cell.label, cell.steps,
                 summarise(row))
    # The exit status reflects every cell this run owns as stored, including skipped ones.
    rows = ctx.store.read()[0] + (merged.read()[0] if shard else [])
    latest = {r["cell_key"]: r for r in rows if r["cell_key"] in set(keys)}
    failed = sum(r["status"] != "ok" for r in latest.values())
    return RunOutcome(written, skipped, failed, ctx.store.rows_path)


def summarise(row: dict) -> str:
    if row["status"] != "ok":
        return f"{row['status']}: {row['message']}"
    scores = " ".join(f"{name}={m['value']:.4g}" if m["value"] is not None
                      else f"{name}=null ({m['flag']})" for name, m in row["metrics"].items())
    overhead = row["overhead"] and row["overhead"]["ratio"]
    return (f"NFE={row['nfe']} {scores} time/img={row['time_per_image_s']['median'] * 1e3:.2f} ms"
            + (f" overhead={overhead:.3f} (in situ {row['overhead']['ratio_in_situ']:.3f})"
               if overhead and row["overhead"].get("ratio_in_situ") else ""))


def run_cell(ctx: SuiteContext, cell: CellSpec, key: str) -> dict:
    method = METHODS.get(cell.method)
    hparams = method.resolve_hparams(dict(cell.hparams))
    model = model_of(ctx, cell)
    row = base_row(ctx, cell, key, method, hparams, model)
    if method.classifier:   # named in every row of the cell, failed ones too (it is in the key)
        row["classifier"] = classifier_identity(ctx)
    try:
        row.update(sample_and_score(ctx, cell, method, hparams, model, key))
    except NonFiniteSamples as err:
        row.update(status="nonfinite", message=str(err))
    except BatchFailed as err:
        row.update(status="error", message=str(err))
    except StorageError:      # the harness could not store something: not the method's failure
        raise
    except Exception as err:  # a failing method must not stop the suite
        log.debug("cell %s failed:\n%s", key, traceback.format_exc())
        row.update(status="error", message=error_message(err))
    return row


def error_message(err: Exception) -> str:
    """What an error row says: the exception's type and first line."""
    return f"{type(err).__name__}: {err}".splitlines()[0][:500]


def base_row(ctx, cell, key, method, hparams, model) -> dict:
    config = ctx.config
    dataset = load_dataset(config.dataset)
    protocol = ctx.protocols[method.task]
    checkpoint = model and model.checkpoint_sha256
    return new_row(
        suite=config.name, cell_key=key, method=method, steps=cell.steps, hparams=hparams,
        label=cell.label, model=model and model_identity(model),
        num_parameters=model.num_parameters if model else 0, dataset=dataset,
        n_samples=config.n_samples, seed=config.seed, batch_size=config.batch_size,
        protocol=protocol, protocol_fingerprint=protocol_fingerprint(protocol),
        provenance={**ctx.provenance, "dataset_hash": dataset.content_hash,
                    "checkpoint_sha256": checkpoint, "extractor": ctx.extractor.name,
                    "extractor_weights_sha256": ctx.extractor.weights_sha256,
                    "extractor_test_accuracy": ctx.extractor.info.get("test_accuracy")},
        compiled=config.compile, created_at=utc_now())


def class_labels(model: LoadedModel | None, indices) -> torch.Tensor | None:
    """Sample i of a class-conditional cell asks for class i mod K (balanced, seed-independent)."""
    classes = model.num_classes if model else 0
    return torch.tensor([i % classes for i in indices]) if classes else None


def superres_inputs(ctx, indices) -> tuple[torch.Tensor, torch.Tensor]:
    """HR test images `indices` and their LR inputs."""
    highres, _ = load_dataset(ctx.config.dataset).split("test")
    highres = highres[list(indices)]
    return highres, lowres_of(highres, ctx.config.superres_scale)


def requested_labels(ctx, method, model, indices) -> torch.Tensor | None:
    """The classes a cell asks for: i mod K, K the classifier's classes for a classifier-guided
    cell (its model is unconditional), else the class-conditional model's."""
    if method.classifier:
        return torch.tensor([i % ctx.classifier.module.num_classes for i in indices])
    return class_labels(model, indices)


def conditioning(ctx, method, model, indices, gradient=None) -> dict | None:
    """What the sampler is conditioned on: class labels, the classifier's gradient and/or the
    upsampled LR image."""
    cond = {}
    labels = requested_labels(ctx, method, model, indices)
    if gradient is not None:
        cond.update(labels=labels.to(ctx.device), classifier_gradient=gradient)
    elif labels is not None:
        cond.update(labels=labels.to(ctx.device), null_label=model.num_classes)
    if method.task == "superres":
        _, lowres = superres_inputs(ctx, indices)
        cond["lowres"] = condition_of(lowres, ctx.config.superres_scale).to(ctx.device)
    return cond or None


def generate(ctx, method, hparams, model, steps, indices, wrap=lambda d: d,
             timed: bool = False) -> tuple[torch.Tensor, float, CountingDenoiser]:
    """One batch: samples for `indices`, its wall-clock seconds, and the counted denoiser.
    `wrap` wraps the denoiser (the profiler's ranges); a timed batch that compiles fails."""
    counter = CountingDenoiser(wrap(model.denoiser) if model else None)
    if method.classifier:
        counter.gradient = CountingGradient(functools.partial(log_prob_gradient, ctx.classifier.module))
    rng = PerSampleRNG(ctx.config.seed, indices, ctx.device)
    latents = rng.randn(load_dataset(ctx.config.dataset).shape)
    cond = conditioning(ctx, method, model, indices, counter.gradient)
    with CompileGuard() if timed else contextlib.nullcontext(), Stopwatch(ctx.device) as watch:
        x = method.sample(counter, latents, steps, rng=rng, cond=cond, **hparams)
    return x, watch.seconds, counter


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


def profile_cell(ctx, method, hparams, model, steps) -> dict:
    """The profiler's breakdown of one extra full batch (see bench.profiling)."""
    indices = range(ctx.config.batch_size)
    return profile_sampling(
        lambda: generate(ctx, method, hparams, model, steps, indices, wrap=ProfiledDenoiser),
        ctx.device, len(indices))


def scorer_for(ctx, method) -> CellScorer:
    return CellScorer(ctx.extractor, ctx.references[method.task],
                      task_metrics(ctx.config, method.task), ctx.config.n_samples,
                      ctx.config.superres_scale if method.task == "superres" else None)


def measure_batch(ctx, scorer: CellScorer, method, model, pixels, indices) -> BatchScores:
    labels = requested_labels(ctx, method, model, indices)
    if method.task == "superres":
        return scorer.measure(pixels, labels, *superres_inputs(ctx, indices))
    return scorer.measure(pixels, labels)


class BatchFailed(Exception):
    """A batch raised (on this or another process); the message is the original error's."""


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


def run_batch(ctx, cell, method, hparams, model, scorer, number: int, local_number: int):
    """Batch `number` (sample indices number x batch_size on): its outcome, and the counted
    denoiser when it ran. Full batches after this process's warm-up ones are timed: one shape,
    compiled and autotuned before."""
    config = ctx.config
    start = number * config.batch_size
    indices = range(start, min(start + config.batch_size, config.n_samples))
    timed = local_number >= config.warmup_batches and len(indices) == config.batch_size
    try:
        x, seconds, counter = generate(ctx, method, hparams, model, cell.steps, indices, timed=timed)
        pixels = to_uint8(x).cpu()
        scores = measure_batch(ctx, scorer, method, model, pixels, indices).cpu()
    except NonFiniteSamples as err:
        return BatchOutcome(number, error=str(err), nonfinite=True), None
    except Exception as err:  # reported in the row; the suite goes on
        log.debug("batch %d failed:\n%s", number, traceback.format_exc())
        return BatchOutcome(number, error=error_message(err)), None
    gradient = counter.gradient
    return BatchOutcome(number, scores, grid_part(ctx, method, pixels, indices), seconds,
                        len(indices), timed, counter.nfe(len(indices)),
                        seconds / counter.seconds_inside if counter.seconds_inside else None,
                        gradient and gradient.evaluations / len(indices),
                        gradient and gradient.seconds_inside), counter


SR_PER_LINE = 4     # super-resolution grids: LR | output | HR triplets, four a line


def grid_part(ctx, method, pixels, indices) -> torch.Tensor:
    """This batch's share of the cell's sample grid: its first samples while the grid is not
    full; for super-resolution each as LR input | output | HR (a quarter as many samples)."""
    start = indices[0]
    if method.task != "superres":
        return pixels[:max(0, ctx.config.grid_size - start)]
    keep = indices[:max(0, ctx.config.grid_size // 4 - start)]
    if not keep:
        return pixels[:0]
    highres, lowres = superres_inputs(ctx, keep)
    return side_by_side(lowres, pixels[:len(keep)], highres)


def sample_and_score(ctx, cell, method, hparams, model, key) -> dict:
    """Samples the cell batch by batch, scoring each batch as it comes (memory does not grow
    with n_samples); peak memory covers both, timing only the sampler. Under torchrun the
    batches are dealt round-robin to the processes and rank 0 accumulates them in order (see
    bench.distributed); elsewhere this is one process taking every batch."""
    config = ctx.config
    batches = -(-config.n_samples // config.batch_size)
    scorer, records, failure, own_timed_counter = scorer_for(ctx, method), [], None, None
    with PeakMemory(ctx.device) as memory:
        for local_number, first in enumerate(range(0, batches, world_size())):
            outcome = counter = None
            if first + rank() < batches:
                outcome, counter = run_batch(ctx, cell, method, hparams, model, scorer,
                                             first + rank(), local_number)
                own_timed_counter = counter if outcome.timed and counter else own_timed_counter
            for done in sorted(filter(None, gather_on_main(outcome) or []), key=lambda o: o.number):
                failure = failure or (done if done.error else None)
                if failure is None:
                    scorer.accumulate(done.scores)
                    records.append(dataclasses.replace(done, scores=None))
            failure = broadcast_from_main(failure)
            if failure:
                break
        scores = scorer.finish() if is_main() and failure is None else None
    peak = gather_on_main(memory.peak_bytes)
    if failure:
        raise (NonFiniteSamples if failure.nonfinite else BatchFailed)(failure.error)
    return cell_measurements(ctx, cell, method, hparams, model, key, records, scores,
                             scorer.features(), own_timed_counter, memory, peak) if is_main() else {}


def cell_measurements(ctx, cell, method, hparams, model, key, records, scores, features,
                      own_timed_counter, memory, peaks) -> dict:
    """The row's measured fields, from every batch's record (rank 0)."""
    config = ctx.config
    nfe = cell_nfe(method, cell.steps, records)
    timing = TimingSummary.of([r.seconds / r.images for r in records if r.timed])
    if timing is None:
        raise BatchFailed(f"no timed batch: with {world_size()} process(es), n_samples must cover "
                          f"warmup_batches + 1 batches per process")
    grid = save_grid(torch.cat([r.grid for r in records]), ctx.store.directory / "samples" / f"{key}.png",
                     nrow=3 * SR_PER_LINE if method.task == "superres" else None)
    in_situ = [r.in_situ for r in records if r.timed]
    return {
        "overhead": own_timed_counter and overhead(model, own_timed_counter,
                                                   timing.median * config.batch_size, in_situ, ctx.device),
        "profile": profile_cell(ctx, method, hparams, model, cell.steps) if config.profile else None,
        "nfe": nfe, "nfe_expected": method.planned_nfe(cell.steps, hparams),
        "metrics": {name: stored_metric(name, *value) for name, value in scores.items()},
        "time_per_image_s": dataclasses.asdict(timing),
        "throughput_images_per_s": world_size() / timing.median if timing.median > 0 else None,
        "world_size": world_size(),
        "memory": {"kind": memory.kind, "peak_bytes": max(p for p in peaks if p is not None)
                   if any(p is not None for p in peaks) else None,
                   "reserved_bytes": memory.reserved_bytes, "region": "sampling and scoring"},
        "flops_per_image": flops_per_image(ctx, method, model, nfe),
        "samples_grid": str(grid.relative_to(ctx.store.directory)),
        "paired": {"features": save_cell_features(ctx.store.directory, key, features),
                   "reference": ctx.stored_references[method.task]},
        "classifier": guidance_record(ctx, records, timing) if method.classifier else None,
    }


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


def flops_per_image(ctx, method, model, nfe: float) -> int:
    """FLOPs of one denoiser evaluation on one image (torch's flop counter) times measured NFE."""
    from torch.utils.flop_counter import FlopCounterMode
    if model is None or nfe == 0:
        return 0
    x = torch.zeros((1, *load_dataset(ctx.config.dataset).shape), device=ctx.device)
    cond = {"lowres": torch.zeros_like(x)} if method.task == "superres" else None
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.denoiser(x, torch.tensor([1.0], device=ctx.device), cond)
    return int(round(counter.get_total_flops() * nfe))
