"""What a suite is: its models, its cells and its settings, as frozen dataclasses (read from TOML by
bench.config.parse, checked by bench.config.checks)."""
import dataclasses
from pathlib import Path
from typing import Any

from bench.models.recipes import default_recipe_name
from bench.paths import REPO_ROOT
from methods import METHODS

SUITE_DIRS = (Path("suites"), REPO_ROOT / "suites")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    recipe: str                                  # "" for an external model
    overrides: tuple[tuple[str, Any], ...] = ()  # recipe overrides, or an external model's keys
    source: str = ""                             # an external model's source (bench.models.external)


@dataclasses.dataclass(frozen=True)
class CellSpec:
    method: str
    steps: int
    hparams: tuple[tuple[str, Any], ...] = ()   # as written in the suite (resolved later)
    model: str = ""                             # the model kind, when not the method's own
    mask: str = ""                              # an inpainting cell's mask (bench.run.tasks.MASKS)
    denoise_t: int = 0                          # a denoising cell's DDPM timestep (its inputs' noise)
    train_step: int = 0                         # a train-curve cell's snapshot (training steps)
    superres: "CellSpec | None" = None          # a cascade's second stage (x superres_scale)
    fid_gate: tuple[float, float] | None = dataclasses.field(default=None, compare=False)
    # ^ the FID window `diffbench compare` accepts (the cell's `gate`, else the suite's [gate]);
    #   not part of the cell: a changed window judges the same measurement differently

    @property
    def label(self) -> str:
        shown = ((("model", self.model),) if self.model else ()) + ((("mask", self.mask),) if self.mask else ()) \
            + ((("t", self.denoise_t),) if self.denoise_t else ()) \
            + ((("step", self.train_step),) if self.train_step else ()) + self.hparams
        extra = ", ".join(f"{k}={v}" for k, v in shown)
        label = f"{self.method}({extra})" if extra else self.method
        if self.superres is None:
            return label
        stage = self.superres
        return f"{label} {self.steps} steps -> {stage.label} {stage.steps} steps"

    @property
    def model_kind(self) -> str | None:
        """The suite model the cell samples from: its `model`, else its method's."""
        return self.model or METHODS.get(self.method).model

    @property
    def superres_model_kind(self) -> str | None:
        """A cascade's super-resolution model (None for any other cell)."""
        return None if self.superres is None else self.superres.model_kind


@dataclasses.dataclass(frozen=True)
class SuiteConfig:
    name: str
    path: str
    description: str = ""
    dataset: str = "mnist5k"
    n_samples: int = 500
    min_samples: int = 0           # cells with fewer samples are refused (FID is biased at small N)
    seed: int = 0
    batch_size: int = 100
    warmup_batches: int = 1
    reference_split: str = "train"
    reference_stats: str = ""      # FID statistics (.npz: mu, sigma) to compare generated samples with
    feature_extractor: str = "lenet"
    inception_weights: str = ""    # a weights file for the inception extractor ("" = look it up)
    metrics: tuple[str, ...] = ("fid",)
    device: str = "cpu"
    grid_size: int = 64
    profile: bool = False          # torch.profiler breakdown of one extra batch per cell
    compile: bool = False          # torch.compile the denoiser (compiled during the warm-up)
    superres_scale: int = 4        # LR = HR downsampled by this factor (superres cells)
    plugins: tuple[str, ...] = ()  # modules or .py files (relative to the suite) loaded first
    models: tuple[tuple[str, ModelSpec], ...] = ()
    cells: tuple[CellSpec, ...] = ()
    fid_gate: tuple[float, float] | None = None   # [gate] fid = [lo, hi]: every cell's FID window

    def model_spec(self, kind: str) -> ModelSpec:
        return dict(self.models).get(kind) or ModelSpec(default_recipe_name(kind, self.dataset))


SUITE_KEYS = {f.name: f for f in dataclasses.fields(SuiteConfig)
              if f.name not in ("name", "path", "models", "cells", "fid_gate")}
SUITE_LIMITS = {"n_samples": (1, 10**7), "min_samples": (0, 10**7), "seed": (0, 2**63 - 1),
                "batch_size": (1, 65536), "warmup_batches": (0, 1000), "grid_size": (1, 1024),
                "superres_scale": (1, 64)}
CELL_KEYS = {"method": str, "steps": list, "hparams": dict, "sweep": dict, "model": str,
             "mask": list, "denoise_t": list, "train_step": list, "superres": dict, "gate": dict}
STAGE_KEYS = ("method", "steps", "hparams", "model")   # a cascade's super-resolution stage

