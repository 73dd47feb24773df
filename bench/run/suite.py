"""Preparing a suite: its device, models, feature extractor, task references and protocols,
computed once (rank 0 first under torchrun) and held in a SuiteContext every cell reads."""
import dataclasses
from pathlib import Path

import torch

from bench.config import CellSpec, SuiteConfig
from bench.config.checks import load_suite_external
from bench.data.datasets import ImageDataset, load_dataset
from bench.data.quantize import to_uint8
from bench.models.classifier import LoadedClassifier, load_classifier
from bench.models.recipes import LoadedModel, ensure_snapshots, ensure_trained, suite_recipes
from bench.paths import cache_dir, ensure_writable
from bench.plugins import loaded_sources
from bench.quality.metrics import (PIXEL_METRICS, check_metrics_available, load_extractor,
                                   protocol_fingerprint, reference_features)
from bench.quality.scoring import Reference, file_reference, split_reference
from bench.quality.stored_features import save_reference
from bench.run.distributed import is_main, main_first
from bench.run.provenance import provenance
from bench.run.tasks import Task, task_of
from bench.store import ROWS_FILE, ResultStore
from methods import METHODS


@dataclasses.dataclass
class SuiteContext:
    config: SuiteConfig
    dataset: ImageDataset           # opened once: every cell's inputs, shapes and references
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


def load_models(config: SuiteConfig, dataset: ImageDataset, device: torch.device
                ) -> tuple[dict[str, LoadedModel], dict]:
    """Model kind -> model, and (kind, train step) -> snapshot for the train-curve cells."""
    models, snapshots = load_suite_external(config, dataset, str(device)), {}
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
    dataset = load_dataset(config.dataset)
    with main_first():   # rank 0 trains and computes statistics into the caches; the others load them
        extractor = load_extractor(config.feature_extractor, config.dataset,
                                   config.inception_weights or None)
        check_metrics_available(config.metrics, extractor, config.path)
        references, protocols, stored = {}, {}, {}
        tasks = {task.key: task for task in (task_of(METHODS.get(c.method), c) for c in config.cells)}
        for key, task in sorted(tasks.items()):
            references[key], protocols[key] = task_protocol(config, dataset, extractor, task)
        models, snapshots = load_models(config, dataset, device)
        guided = any(METHODS.get(c.method).classifier for c in config.cells)
        classifier = load_classifier(dataset, str(device)) if guided else None
    if is_main():
        store.write_config(resolved_config(config, models))
        stored = {key: store_reference(config, dataset, extractor, tasks[key], references[key],
                                       protocols[key], store.directory) for key in references}
    return SuiteContext(config, dataset, store, device, extractor, references, protocols, stored, models,
                        provenance(device), classifier, snapshots)


def store_reference(config: SuiteConfig, dataset: ImageDataset, extractor, task: Task,
                    reference: Reference, protocol: dict, directory: Path) -> dict:
    """The task's reference beside the rows, for paired comparisons: its features when it has
    fewer images than feature dimensions (and comes from a dataset split), else its statistics."""
    features = None
    if not task.uses_statistics_file(config) and reference.count < len(reference.stats["mu"]):
        features = reference_features(extractor, dataset, task.reference_split(config)).numpy()
    return save_reference(directory, protocol_fingerprint(protocol), reference.stats, features)


def task_metrics(config: SuiteConfig, task: Task) -> tuple[str, ...]:
    """The suite's metrics that apply to a task: FID always, the per-image ones (PSNR, SSIM, ...)
    as the task defines them (always computed where they apply, never elsewhere)."""
    return tuple(sorted(({"fid", *config.metrics} - set(PIXEL_METRICS)) | set(task.metrics())))


def task_protocol(config: SuiteConfig, dataset: ImageDataset, extractor, task: Task) -> tuple[Reference, dict]:
    """Reference and metric protocol of a task: generation, img2img and inpainting compare with
    the suite's reference split (or its reference_stats); super-resolution with the whole test
    split. The tasks with inputs take them from the first n_samples test images."""
    task.check(config, dataset)
    metrics = task_metrics(config, task)
    if task.uses_statistics_file(config):
        reference, protocol = file_reference(extractor, config.reference_stats,
                                             to_uint8(dataset.images[:1]), config.n_samples, metrics,
                                             f"{config.path}: [suite].reference_stats")
    else:
        reference, protocol = split_reference(extractor, dataset, task.reference_split(config),
                                              config.n_samples, metrics)
    return reference, {**protocol, **task.protocol(config, dataset)}


def model_of(ctx: SuiteContext, cell: CellSpec) -> LoadedModel | None:
    """The cell's model: its kind's, or for a train-curve cell that model's snapshot."""
    kind = cell.model_kind
    if kind is None:
        return None
    return ctx.snapshots[kind, cell.train_step] if cell.train_step else ctx.models[kind]
