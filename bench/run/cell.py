"""A cell as it runs (its method, resolved hyper-parameters, model, task and dataset) and its
identity: the cell key, a hash of everything that decides its row."""
import dataclasses
import hashlib

from bench.config import CellSpec, SuiteConfig
from bench.data.datasets import ImageDataset
from bench.models.recipes import LoadedModel
from bench.quality.metrics import protocol_fingerprint
from bench.run.cascade import Stage, lowres_shape, stage_identity, stage_of
from bench.run.suite import SuiteContext, model_of
from bench.run.tasks import Task, TaskInputs, task_of
from bench.rows import complete
from bench.store import canonical_json
from methods import METHODS, Method


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
                   task_of(method, cell), ctx.dataset, stage_of(cell, ctx.models))

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
    def fingerprint(self) -> str:
        """The metric protocol's fingerprint: which rows' scores can be compared."""
        return protocol_fingerprint(self.protocol)

    @property
    def key(self) -> str:
        """The cell key: a hash of everything that decides the cell's row."""
        model, method, config, ctx = self.model, self.method, self.config, self.ctx
        return identity_key(cell_identity(
            method=method.name, version=method.version, steps=self.cell.steps, hparams=self.hparams,
            checkpoint_sha256=model and model.checkpoint_sha256,
            model_key=model.meta["cache_key"] if model and not model.recipe else None,
            train_step=self.cell.train_step, superres=self.superres and stage_identity(self.superres),
            classifier_sha256=ctx.classifier.sha256 if method.classifier else None,
            dataset_hash=self.dataset.content_hash, n_samples=config.n_samples, seed=config.seed,
            batch_size=config.batch_size, device=str(ctx.device), protocol=self.fingerprint))

    def inputs(self, indices) -> TaskInputs | None:
        """What samples `indices` start from (None for generation)."""
        return self.task.inputs(self.config, self.dataset, indices)


def cell_identity(*, method: str, version: str, steps: int, hparams: dict, checkpoint_sha256: str | None,
                  dataset_hash: str, n_samples: int, seed: int, batch_size: int, device: str,
                  protocol: str, model_key: str | None = None, train_step: int = 0,
                  superres: dict | None = None, classifier_sha256: str | None = None) -> dict:
    """What the cell key hashes. The optional parts appear only when set, so the keys of cells
    without them stay what they were before those parts existed: an external model's key
    (a recipe's model is named by its weights alone), a training snapshot, a cascade's second
    stage, a guiding classifier."""
    optional = {"model_key": model_key, "train_step": train_step, "superres": superres,
                "classifier_sha256": classifier_sha256}
    return {"method": method, "version": version, "steps": steps, "hparams": hparams,
            "checkpoint_sha256": checkpoint_sha256, "dataset_hash": dataset_hash,
            "n_samples": n_samples, "seed": seed, "batch_size": batch_size, "device": device,
            "protocol": protocol, **{name: value for name, value in optional.items() if value}}


def identity_key(identity: dict) -> str:
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:20]


def stored_cell_key(row: dict, fingerprint: str) -> str:
    """The key a stored row's cell gets under `fingerprint`, rebuilt from the row's own fields
    (a row does not say whether its model came from a recipe, so both forms are tried against
    the stored key; the one that matches is the row's)."""
    row = complete(row)
    model, classifier, training, cascade = row["model"], row["classifier"], row["training"], row["cascade"]
    fields = dict(method=row["method"], version=row["method_version"], steps=row["steps"],
                  hparams=row["hparams"], checkpoint_sha256=model and model["checkpoint_sha256"],
                  dataset_hash=row["dataset_hash"], n_samples=row["n_samples"], seed=row["seed"],
                  batch_size=row["batch_size"], device=row["provenance"]["device"],
                  classifier_sha256=classifier and classifier["sha256"],
                  train_step=training and training["step"], superres=cascade and cascade["superres"])
    for model_key in [None] + ([model["cache_key"]] if model else []):
        identity = cell_identity(**fields, model_key=model_key, protocol=row["protocol_fingerprint"])
        if identity_key(identity) == row["cell_key"]:
            return identity_key({**identity, "protocol": fingerprint})
    raise ValueError(f"row {row['cell_key']}: its fields do not give its stored cell key")
