"""Runs a suite: train or load models, then for each cell sample, measure, score and store a row.

A method that raises yields an `error` row and the suite goes on; a non-finite sample yields a
`nonfinite` row and no pixels. Cells whose key already has a completed row are skipped.
"""
import contextlib
import dataclasses
import functools
import hashlib
import logging
import statistics
import textwrap
import traceback
from pathlib import Path

import torch

from bench.config import CellSpec, SuiteConfig, load_suite
from bench.data.datasets import ImageDataset, load_dataset
from bench.data.quantize import NonFiniteSamples, to_uint8
from bench.models.classifier import LoadedClassifier, load_classifier
from bench.config.checks import load_suite_external
from bench.models.recipes import LoadedModel, ensure_snapshots, ensure_trained, suite_recipes
from bench.paths import cache_dir, ensure_writable
from bench.plugins import loaded_sources
from bench.quality.metrics import (PIXEL_METRICS, check_metrics_available, load_extractor,
                                   protocol_fingerprint, reference_features)
from bench.quality.scoring import (BatchScores, CellScorer, Reference, file_reference,
                                   metric_records, split_reference)
from bench.quality.stored_features import save_cell_features, save_reference
from bench.rows import new_row
from bench.run.cascade import (Stage, StagedCount, cascade_record, declared_nfe, lowres_shape,
                               stage_flops, stage_identity, stage_of, superresolve)
from bench.run.cost import (CompileGuard, CountingDenoiser, CountingGradient, PeakMemory, Stopwatch,
                            TimingSummary, median_forward_seconds)
from bench.run.distributed import (broadcast_from_main, gather_on_main, is_main, main_first, rank,
                                   world_size)
from bench.run.grids import save_grid
from bench.run.parts import PARTS_DIR, complete_parts, load_part, part_batches, part_path, save_part
from bench.run.profiling import ProfiledDenoiser, profile_sampling
from bench.run.provenance import provenance, utc_now
from bench.run.tasks import Task, TaskInputs, task_of
from bench.run.warmup import warmed_up
from bench.store import ROWS_FILE, ResultStore, canonical_json, shard_file
from methods import METHODS, Method, PerSampleRNG
from methods.classifier_guidance import log_prob_gradient
from methods.errors import DiffbenchError, StorageError

log = logging.getLogger("diffbench")


@dataclasses.dataclass
class SuiteContext:
    config: SuiteConfig
    store: ResultStore
    device: torch.device
    extractor: object
    references: dict[str, Reference]  # task key -> what its samples are compared with
    protocols: dict[str, dict]      # task key -> metric protocol
    stored_references: dict[str, dict]  # task key -> its reference stored beside the rows
    models: dict[str, LoadedModel]
    provenance: dict
    classifier: LoadedClassifier | None = None   # for classifier-guided cells
    snapshots: dict = dataclasses.field(default_factory=dict)   # (kind, train step) -> LoadedModel


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


def load_models(config: SuiteConfig, device: torch.device) -> tuple[dict[str, LoadedModel], dict]:
    """Model kind -> model, and (kind, train step) -> snapshot for the train-curve cells."""
    models, snapshots = load_suite_external(config, str(device)), {}
    for kind, recipe in suite_recipes(config).items():
        steps = tuple(sorted({c.train_step for c in config.cells if c.train_step and c.model_kind == kind}))
        if steps:   # first: the training that keeps the snapshots also leaves the final model
            snapshots.update({(kind, step): model for step, model in
                              ensure_snapshots(recipe, steps, str(device)).items()})
        models[kind] = ensure_trained(recipe, str(device))
    if config.compile:   # compiled lazily: the first (warm-up, untimed) batch builds the graph
        models, snapshots = ({key: dataclasses.replace(m, denoiser=torch.compile(m.denoiser))
                              for key, m in loaded.items()} for loaded in (models, snapshots))
    return models, snapshots


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
        tasks = {task.key: task for task in (task_of(METHODS.get(c.method), c) for c in config.cells)}
        for key, task in sorted(tasks.items()):
            references[key], protocols[key] = task_protocol(config, extractor, task)
        models, snapshots = load_models(config, device)
        guided = any(METHODS.get(c.method).classifier for c in config.cells)
        classifier = load_classifier(config.dataset, str(device)) if guided else None
    if is_main():
        store.write_config(resolved_config(config, models))
        stored = {key: store_reference(config, extractor, tasks[key], references[key], protocols[key],
                                       store.directory) for key in references}
    return SuiteContext(config, store, device, extractor, references, protocols, stored, models,
                        provenance(device), classifier, snapshots)


def store_reference(config, extractor, task: Task, reference: Reference, protocol: dict,
                    directory: Path) -> dict:
    """The task's reference beside the rows, for paired comparisons: its features when it has
    fewer images than feature dimensions (and comes from a dataset split), else its statistics."""
    features = None
    if not task.uses_statistics_file(config) and reference.count < len(reference.stats["mu"]):
        features = reference_features(extractor, config.dataset, task.reference_split(config)).numpy()
    return save_reference(directory, protocol_fingerprint(protocol), reference.stats, features)


def task_metrics(config: SuiteConfig, task: Task) -> tuple[str, ...]:
    """The suite's metrics that apply to a task: FID always, the per-image ones (PSNR, SSIM, ...)
    as the task defines them (always computed where they apply, never elsewhere)."""
    return tuple(sorted(({"fid", *config.metrics} - set(PIXEL_METRICS)) | set(task.metrics())))


def task_protocol(config: SuiteConfig, extractor, task: Task) -> tuple[Reference, dict]:
    """Reference and metric protocol of a task: generation, img2img and inpainting compare with
    the suite's reference split (or its reference_stats); super-resolution with the whole test
    split. The tasks with inputs take them from the first n_samples test images."""
    dataset = load_dataset(config.dataset)
    task.check(config, dataset)
    metrics = task_metrics(config, task)
    if task.uses_statistics_file(config):
        reference, protocol = file_reference(extractor, config.reference_stats,
                                             to_uint8(dataset.images[:1]), config.n_samples, metrics,
                                             f"{config.path}: [suite].reference_stats")
    else:
        reference, protocol = split_reference(extractor, config.dataset, task.reference_split(config),
                                              config.n_samples, metrics)
    return reference, {**protocol, **task.protocol(config, dataset)}


def model_of(ctx: SuiteContext, cell: CellSpec) -> LoadedModel | None:
    """The cell's model: its kind's, or for a train-curve cell that model's snapshot."""
    kind = cell.model_kind
    if kind is None:
        return None
    return ctx.snapshots[kind, cell.train_step] if cell.train_step else ctx.models[kind]


@dataclasses.dataclass(frozen=True)
class CellRun:
    """One cell as it runs: the suite's context, the cell, its method with resolved
    hyper-parameters, its model (None for a method without a network), its task and the
    dataset its inputs and shapes come from."""
    ctx: SuiteContext
    cell: CellSpec
    method: Method
    hparams: dict
    model: LoadedModel | None
    task: Task
    dataset: ImageDataset
    superres: Stage | None = None    # a cascade's second stage

    @classmethod
    def of(cls, ctx: SuiteContext, cell: CellSpec) -> "CellRun":
        method = METHODS.get(cell.method)
        return cls(ctx, cell, method, method.resolve_hparams(dict(cell.hparams)), model_of(ctx, cell),
                   task_of(method, cell), load_dataset(ctx.config.dataset), stage_of(cell, ctx.models))

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """What the (first stage's) sampler makes: the dataset's shape, or a cascade's low resolution."""
        shape = self.dataset.shape
        return lowres_shape(shape, self.config.superres_scale) if self.superres else shape

    @property
    def config(self) -> SuiteConfig:
        return self.ctx.config

    @property
    def protocol(self) -> dict:
        return self.ctx.protocols[self.task.key]

    @property
    def key(self) -> str:
        """The cell key: a hash of everything that decides the cell's row."""
        model, method, config = self.model, self.method, self.config
        identity = {"method": method.name, "version": method.version, "steps": self.cell.steps,
                    "hparams": self.hparams, "checkpoint_sha256": model and model.checkpoint_sha256,
                    **({"model_key": model.meta["cache_key"]} if model and not model.recipe else {}),
                    **({"train_step": self.cell.train_step} if self.cell.train_step else {}),
                    **({"superres": stage_identity(self.superres)} if self.superres else {}),
                    **({"classifier_sha256": self.ctx.classifier.sha256} if method.classifier else {}),
                    "dataset_hash": self.dataset.content_hash,
                    "n_samples": config.n_samples, "seed": config.seed,
                    "batch_size": config.batch_size, "device": str(self.ctx.device),
                    "protocol": protocol_fingerprint(self.protocol)}
        return identity_key(identity)

    def inputs(self, indices) -> TaskInputs | None:
        """What samples `indices` start from (None for generation)."""
        return self.task.inputs(self.config, self.dataset, indices)


def cell_key(ctx: SuiteContext, cell: CellSpec) -> str:
    return CellRun.of(ctx, cell).key


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
                **({"classifier_sha256": row["classifier"]["sha256"]} if row.get("classifier") else {}),
                **({"train_step": row["training"]["step"]} if row.get("training") else {}),
                **({"superres": row["cascade"]["superres"]} if row.get("cascade") else {})}
    forms = [identity] + ([{**identity, "model_key": model["cache_key"]}] if model else [])
    old = [form for form in forms
           if identity_key({**form, "protocol": row["protocol_fingerprint"]}) == row["cell_key"]]
    if not old:
        raise ValueError(f"row {row['cell_key']}: its fields do not give its stored cell key")
    return identity_key(old[0])


def run_suite_text(text: str, name: str, suite_dir: Path, results_root: Path) -> list[dict]:
    """Write `text` as suite `name` (suite_dir/name.toml), run it into results_root and return its
    stored rows: for the scripts and tests that build a suite on the fly."""
    path = suite_dir / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    run_suite(load_suite(str(path)), results_root)
    return ResultStore(results_root, name).read()[0]


def shard_cells(cells: list, shard: tuple[int, int] | None) -> list[tuple[int, CellSpec]]:
    """(number, cell) of the cells shard (i, n) runs: every n-th cell from the i-th, so shards
    are disjoint, together cover the suite, and share its slow and fast cells alike."""
    index, count = shard or (0, 1)
    return [(number, cell) for number, cell in enumerate(cells, 1) if (number - 1) % count == index]


def run_suite(config: SuiteConfig, results_root: Path, shard: tuple[int, int] | None = None,
              part: tuple[int, int] | None = None) -> RunOutcome:
    """Runs the suite's cells (with `shard` = (i, n), only shard i's, into its own rows file),
    holding the rows file's lock on rank 0: a second run into the same file is refused. With
    `part` = (j, K), only part j of every cell's seed range is sampled and stored (no rows:
    `merge_split_cells` makes them once every part is stored)."""
    if part:
        return _run_parts(config, results_root, shard, part)
    store = ResultStore(results_root, config.name, shard_file(*shard) if shard else ROWS_FILE)
    with store.lock() if is_main() else contextlib.nullcontext():
        return _run_suite(config, results_root, shard)


def _run_parts(config, results_root, shard, part) -> RunOutcome:
    if world_size() > 1:
        raise DiffbenchError("--split-samples runs one process per part: do not combine it with torchrun")
    ctx = prepare(config, results_root)
    done = ResultStore(results_root, config.name).completed_keys()
    written = skipped = 0
    for number, cell in shard_cells(config.cells, shard):
        key = cell_key(ctx, cell)
        if key in done or part_path(ctx.store.directory, key, part).is_file():
            skipped += 1
            continue
        run_cell_part(ctx, cell, key, part)
        written += 1
        log.info("[%d/%d] %s steps=%d: part %d of %d stored", number, len(config.cells), cell.label,
                 cell.steps, part[0], part[1])
    return RunOutcome(written, skipped, 0, ctx.store.directory / PARTS_DIR)


def merge_split_cells(config: SuiteConfig, results_root: Path) -> RunOutcome:
    """The rows of every split cell whose parts are all stored (and that has no row yet)."""
    store = ResultStore(results_root, config.name)
    with store.lock():
        ctx = prepare(config, results_root)
        done = store.completed_keys()
        written = waiting = 0
        for number, cell in enumerate(config.cells, 1):
            key = cell_key(ctx, cell)
            if key in done:
                continue
            paths = complete_parts(store.directory, key)
            if paths is None:
                waiting += 1
                continue
            row = store.append(run_cell(ctx, cell, key, functools.partial(merge_parts, paths=paths)))
            written += 1
            log.info("[%d/%d] %s steps=%d: %d parts merged: %s", number, len(config.cells), cell.label,
                     cell.steps, len(paths), summarise(row))
    rows = {r["cell_key"]: r for r in store.read()[0]}
    return RunOutcome(written, waiting, sum(r["status"] != "ok" for r in rows.values()), store.rows_path)


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


def run_cell(ctx: SuiteContext, cell: CellSpec, key: str, measure=None) -> dict:
    """The cell's row; `measure(run, key)` gives its measured fields (by default sampling and
    scoring it; for a split cell, merging its stored parts)."""
    measure = measure or sample_and_score
    run = CellRun.of(ctx, cell)
    row = base_row(run, key)
    if run.method.classifier:   # named in every row of the cell, failed ones too (it is in the key)
        row["classifier"] = classifier_identity(ctx)
    try:
        run, warmup = warmed_up(run)
        if warmup:
            row["warmup"] = warmup
        row.update(measure(run, key))
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


def run_cell_part(ctx: SuiteContext, cell: CellSpec, key: str, part: tuple[int, int]) -> None:
    """Part j of K of a split cell, stored for the merge; a failure before its batches (the
    warm-up) is stored as the part's outcome, so the merge writes the cell's error row."""
    try:
        run, _ = warmed_up(CellRun.of(ctx, cell))
        sample_and_score(run, key, part)
    except StorageError:
        raise
    except Exception as err:
        log.debug("cell %s part %s failed:\n%s", key, part, traceback.format_exc())
        save_part(part_path(ctx.store.directory, key, part), [BatchOutcome(-1, error=error_message(err))],
                  {"kind": "", "peak_bytes": None, "reserved_bytes": None})


def error_message(err: Exception) -> str:
    """What an error row says: the exception's type and first line."""
    return f"{type(err).__name__}: {err}".splitlines()[0][:500]


def base_row(run: CellRun, key: str) -> dict:
    ctx, config, dataset, model = run.ctx, run.config, run.dataset, run.model
    checkpoint = model and model.checkpoint_sha256
    return new_row(
        suite=config.name, cell_key=key, method=run.method, steps=run.cell.steps,
        hparams=run.hparams, label=run.cell.label, model=model and model_identity(model),
        num_parameters=model.num_parameters if model else 0, dataset=dataset,
        n_samples=config.n_samples, seed=config.seed, batch_size=config.batch_size,
        protocol=run.protocol, protocol_fingerprint=protocol_fingerprint(run.protocol),
        provenance={**ctx.provenance, "dataset_hash": dataset.content_hash,
                    "checkpoint_sha256": checkpoint, "extractor": ctx.extractor.name,
                    "extractor_weights_sha256": ctx.extractor.weights_sha256,
                    "extractor_test_accuracy": ctx.extractor.info.get("test_accuracy")},
        compiled=config.compile, created_at=utc_now(), task=run.task.name,
        training=training_record(model) if run.cell.train_step else None,
        cascade={"superres": stage_identity(run.superres)} if run.superres else None,
        gate={"fid": list(run.cell.fid_gate)} if run.cell.fid_gate else None)


def training_record(model: LoadedModel) -> dict:
    """How far a snapshot's training had come (from its sidecar)."""
    meta = model.meta
    return {"step": meta["step"], "budget_steps": meta["budget"]["steps"],
            "images_seen": meta["images_seen"], "seconds": meta["train_seconds"],
            "precision": meta.get("precision"), "batch_size": meta["budget"]["batch_size"]}


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
    """Where a denoising cell's sampler begins: the noisy image at its noise level (a method
    with a network; one without reads the image from cond["source"])."""
    if run.task.name != "denoise" or run.model is None:
        return None
    return inputs.given.to(run.ctx.device), run.task.sigma


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


def scorer_for(run: CellRun) -> CellScorer:
    return CellScorer(run.ctx.extractor, run.ctx.references[run.task.key],
                      task_metrics(run.config, run.task), run.config.n_samples)


def measure_batch(run: CellRun, scorer: CellScorer, pixels, indices, inputs) -> BatchScores:
    if run.task.name == "anagram":
        view_a, view_b = views_of(run, pixels)
        return scorer.measure_views(pixels, view_a, view_b, run.hparams["class_a"], run.hparams["class_b"],
                                    view_b is not pixels)
    per_image = run.task.per_image(pixels, inputs, run.config.superres_scale) if inputs else None
    return scorer.measure(pixels, requested_labels(run, indices), per_image)


def views_of(run: CellRun, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An anagram cell's two views of its uint8 samples (a view the method leaves as is is the
    samples themselves)."""
    return tuple(pixels if view is None else view(pixels) for view in run.method.views(**run.hparams))


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
    return BatchOutcome(number, scores, grid_part(run, pixels, indices, inputs), seconds,
                        len(indices), timed, counter.nfe(len(indices)),
                        seconds / counter.seconds_inside if counter.seconds_inside else None,
                        gradient and gradient.evaluations / len(indices),
                        gradient and gradient.seconds_inside,
                        stage_nfe=counter.stage_nfe(len(indices)) if staged else None,
                        stage_seconds=counter.seconds if staged else None), counter


PER_LINE = 4     # grids of a task with inputs: input | output | original triplets, four a line


def grid_part(run: CellRun, pixels, indices, inputs: TaskInputs | None) -> torch.Tensor:
    """This batch's share of the cell's sample grid: its first samples while the grid is not
    full; for a task with inputs each as input | output | original (a quarter as many samples),
    for anagrams and hybrids each as view a | view b (half as many)."""
    start, size = indices[0], run.config.grid_size
    if run.task.name == "anagram":     # view a | view b pairs
        keep = max(0, size // 2 - start)
        if keep == 0:
            return pixels[:0]
        return torch.stack([view[:keep] for view in views_of(run, pixels[:keep])], 1).flatten(0, 1)
    if inputs is None:
        return pixels[:max(0, size - start)]
    keep = max(0, size // 4 - start)
    if keep == 0:                       # the grid is full: nothing to convert
        return pixels[:0]
    triplets = [run.task.shown(inputs)[:keep], pixels[:keep], to_uint8(inputs.original[:keep])]
    return torch.stack(triplets, 1).flatten(0, 1)


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


def cell_batches(config: SuiteConfig) -> int:
    return -(-config.n_samples // config.batch_size)


def sample_and_score(run: CellRun, key: str, part: tuple[int, int] | None = None) -> dict:
    """Samples the cell batch by batch, scoring each batch as it comes (memory does not grow
    with n_samples); peak memory covers both, timing only the sampler. Under torchrun the
    batches are dealt round-robin to the processes and rank 0 accumulates them in order (see
    bench.run.distributed); elsewhere this is one process taking every batch. With `part`
    (j, K), only part j's seed range is sampled and its batches are stored for the merge
    (bench.run.parts), failure included: the merge writes the cell's row."""
    numbers = part_batches(cell_batches(run.config), part) if part else range(cell_batches(run.config))
    scorer, records, failure, own_timed_counter = scorer_for(run), [], None, None
    with PeakMemory(run.ctx.device) as memory:
        for local_number, first in enumerate(range(numbers.start, numbers.stop, world_size())):
            outcome = counter = None
            if first + rank() < numbers.stop:
                outcome, counter = run_batch(run, scorer, first + rank(), local_number)
                own_timed_counter = counter if outcome.timed and counter else own_timed_counter
            for done in sorted(filter(None, gather_on_main(outcome) or []), key=lambda o: o.number):
                failure = failure or (done if done.error else None)
                if failure is None and part:
                    records.append(done)
                elif failure is None:
                    scorer.accumulate(done.scores)
                    records.append(dataclasses.replace(done, scores=None))
            failure = broadcast_from_main(failure)
            if failure:
                break
        scores = scorer.finish() if is_main() and failure is None and not part else None
    peak = gather_on_main(memory.peak_bytes)
    if part:
        save_part(part_path(run.ctx.store.directory, key, part), records + ([failure] if failure else []),
                  {"kind": memory.kind, "peak_bytes": max(filter(None, peak), default=None),
                   "reserved_bytes": memory.reserved_bytes})
        return {}
    if failure:
        raise (NonFiniteSamples if failure.nonfinite else BatchFailed)(failure.error)
    if not is_main():
        return {}
    return cell_measurements(run, key, SampledCell(records, scores, scorer.features(),
                                                   scorer.per_image_values(), own_timed_counter, memory, peak))


@dataclasses.dataclass(frozen=True)
class StoredMemory:
    """Peak memory as the parts of a split cell recorded it."""
    kind: str
    reserved_bytes: int | None


def merge_parts(run: CellRun, key: str, paths: list[Path]) -> dict:
    """A split cell's measured fields from its stored parts: their batches scored in batch
    order, as `sample_and_score` scores them in one process."""
    loaded = [load_part(path, BatchOutcome) for path in paths]
    outcomes = sorted((o for batch, _ in loaded for o in batch), key=lambda o: o.number)
    failure = next((o for o in outcomes if o.error), None)
    if failure:
        raise (NonFiniteSamples if failure.nonfinite else BatchFailed)(failure.error)
    if [o.number for o in outcomes] != list(range(cell_batches(run.config))):
        raise BatchFailed(f"the parts in {paths[0].parent} hold batches {[o.number for o in outcomes]}, "
                          f"not 0..{cell_batches(run.config) - 1}: delete them and run the parts again")
    scorer = scorer_for(run)
    for outcome in outcomes:
        scorer.accumulate(outcome.scores)
    memories = [memory for _, memory in loaded]
    records = [dataclasses.replace(o, scores=None) for o in outcomes]
    return cell_measurements(run, key, SampledCell(
        records, scorer.finish(), scorer.features(), scorer.per_image_values(), None,
        StoredMemory(memories[0]["kind"], memories[0]["reserved_bytes"]),
        [m["peak_bytes"] for m in memories]))


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
                     nrow=3 * PER_LINE if run.task.has_inputs else 2 * PER_LINE
                     if run.task.name == "anagram" else None)
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
    conditioned = run.dataset.shape if run.task.name == "superres" else None   # on the upsampled LR
    stages = [(run.model, run.sample_shape, conditioned)]
    if run.superres:
        stages.append((run.superres.model, run.dataset.shape, run.dataset.shape))
    return sum(int(round(stage_flops(model, shape, cond_shape, device) * nfe))
               for (model, shape, cond_shape), nfe in zip(stages, stage_nfe) if model is not None and nfe)
