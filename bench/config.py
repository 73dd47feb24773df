"""Suite configuration: TOML (tomllib) -> frozen dataclasses, validated before any work starts.

Every key is checked: an unknown key, a wrong type, an unknown method, recipe or dataset is a
DiffbenchError naming the key and the file.
"""
import dataclasses
import itertools
import tomllib
from pathlib import Path
from typing import Any

from bench.data.datasets import DATASETS, load_dataset
from bench.data.degradation import MASKS
from bench.models.recipes import (RECIPES, default_recipe_name, load_suite_external, suite_recipes,
                                  untrained_denoiser)
from bench.paths import REPO_ROOT
from bench.plugins import load_plugins
from bench.quality.metrics import EXTRACTORS, METRICS
from bench.quality.vit import is_vit_spec
from methods import METHODS
from methods.errors import DiffbenchError
from methods.registry import typed_like, validate_name, validate_number
from methods.ddpm import NUM_TRAIN_STEPS
from methods.denoising import ddpm_sigma
from methods.schedules import stand_in

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


def suite_names() -> list[str]:
    """The suites `diffbench run NAME` finds, from every suites folder."""
    return sorted({p.stem for d in SUITE_DIRS if d.is_dir() for p in d.glob("*.toml")})


def find_suite(spec: str) -> Path:
    """A path to a TOML file, or a suite name looked up in ./suites then the repository's."""
    path = Path(spec)
    if path.suffix == ".toml" or "/" in spec or "\\" in spec:
        if not path.is_file():
            raise DiffbenchError(f"suite file {spec!r} does not exist: check the path")
        return path
    validate_name(spec, "suite name")
    for directory in SUITE_DIRS:
        if (directory / f"{spec}.toml").is_file():
            return directory / f"{spec}.toml"
    known = suite_names()
    raise DiffbenchError(f"unknown suite {spec!r}; valid names: {', '.join(known) or '(none)'} "
                         "(or give a path to a .toml file)")


def load_suite(spec: str, inception_weights: str | None = None, plugins=()) -> SuiteConfig:
    """The validated suite; `inception_weights` (from the command line) overrides its key and
    `plugins` (from the command line, relative to the working directory) load before the
    suite's own, all before anything is validated."""
    path = find_suite(spec)
    where = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise DiffbenchError(f"{where}: malformed TOML ({err}): fix the file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DiffbenchError(f"{where}: cannot read suite file ({err})") from None
    if inception_weights:
        data.setdefault("suite", {})["inception_weights"] = str(Path(inception_weights).resolve())
    load_suite_plugins(data, path, plugins)
    return parse_suite(data, path)


def load_suite_plugins(data: dict, path: Path, extra=()) -> None:
    written = _table(data.get("suite", {}), "[suite]", str(path)).get("plugins", [])
    written = typed_like(written, (), f"{path}: [suite].plugins", str)
    load_plugins(extra)
    load_plugins(written, base=path.parent)


def parse_suite(data: dict, path: Path) -> SuiteConfig:
    where = str(path)
    unknown = sorted(set(data) - {"suite", "models", "cells", "gate"})
    if unknown:
        raise DiffbenchError(f"{where}: unknown top-level key {unknown[0]!r}; "
                             "valid: suite, models, cells, gate")
    name = validate_name(path.stem, f"suite name (from file {where})")
    fields = {}
    for key, value in _table(data.get("suite", {}), "[suite]", where).items():
        if key not in SUITE_KEYS:
            raise DiffbenchError(f"{where}: unknown key [suite].{key}; valid: {', '.join(SUITE_KEYS)}")
        fields[key] = typed_like(value, SUITE_KEYS[key].default, f"{where}: [suite].{key}", str)
    config = SuiteConfig(name=name, path=str(path), **fields)
    config = dataclasses.replace(config, dataset=_resolve_dataset(config.dataset, path),
                                 feature_extractor=_resolve_extractor(config.feature_extractor, path),
                                 inception_weights=_resolve_file(config.inception_weights, path),
                                 reference_stats=_resolve_file(config.reference_stats, path),
                                 models=_parse_models(data.get("models", {}), path),
                                 fid_gate=_parse_gate(data.get("gate", {}), "[gate]", where))
    config = dataclasses.replace(config, cells=_parse_cells(data.get("cells", []), where, config.fid_gate))
    _validate(config, where)
    return config


def _table(value, what, where) -> dict:
    if not isinstance(value, dict):
        raise DiffbenchError(f"{where}: {what} must be a table")
    return value


def _resolve_dataset(spec: str, suite_path: Path) -> str:
    """A registered dataset name, or a folder / .npz file (relative to the suite file first)."""
    if spec in DATASETS:
        return spec
    if spec and Path(_resolve_file(spec, suite_path)).exists():
        return _resolve_file(spec, suite_path)
    raise DiffbenchError(f"{suite_path}: unknown dataset {spec!r}; valid names: "
                         f"{', '.join(DATASETS)}; or give a folder of images or an .npz file")


def _resolve_extractor(spec: str, suite_path: Path) -> str:
    """A `dinov2:PATH` / `clip:PATH` extractor's path, relative to the suite file first."""
    if not is_vit_spec(spec) or spec.endswith(":hub"):
        return spec
    kind, location = spec.split(":", 1)
    return f"{kind}:{_resolve_file(location, suite_path)}"


def _resolve_file(spec: str, suite_path: Path) -> str:
    """A file named in a suite: relative to the suite file when it exists there."""
    if not spec:
        return spec
    candidate = Path(spec).expanduser()
    if not candidate.is_absolute() and (suite_path.parent / candidate).exists():
        candidate = suite_path.parent / candidate
    return str(candidate.resolve())


def _parse_models(models, path: Path) -> tuple[tuple[str, ModelSpec], ...]:
    where = str(path)
    parsed = []
    for kind, spec in _table(models, "[models]", where).items():
        if isinstance(spec, str):
            spec = {"recipe": spec}
        spec = dict(_table(spec, f"[models.{kind}]", where))
        if "source" in spec:
            parsed.append((kind, _external_spec(kind, spec, path)))
            continue
        recipe = spec.pop("recipe", None)
        if recipe is None:
            raise DiffbenchError(f"{where}: [models.{kind}] needs a 'recipe' key (or a 'source' "
                                 "for an external model)")
        parsed.append((kind, ModelSpec(recipe, tuple(sorted(spec.items())))))
    return tuple(parsed)


def _external_spec(kind: str, spec: dict, path: Path) -> ModelSpec:
    """An external model's table: no recipe, its weights' path relative to the suite file."""
    what = f"{path}: [models.{kind}]"
    source = spec.pop("source")
    if "recipe" in spec:
        raise DiffbenchError(f"{what} has both a recipe and a source: keep one")
    if not isinstance(spec.get("path"), str):
        raise DiffbenchError(f"{what}: source {source!r} needs a 'path' string")
    spec["path"] = _resolve_file(spec["path"], path)
    return ModelSpec("", tuple(sorted(spec.items())), str(source))


def _parse_gate(gate, what: str, where: str) -> tuple[float, float] | None:
    """`gate = { fid = [lo, hi] }`: the FID window (finite, 0 <= lo < hi) a comparison accepts."""
    gate = _table(gate, what, where)
    for key in gate:
        if key != "fid":
            raise DiffbenchError(f"{where}: unknown key {key!r} in {what}; valid: fid")
    if "fid" not in gate:
        return None
    window = gate["fid"]
    if not isinstance(window, list) or len(window) != 2:
        raise DiffbenchError(f"{where}: {what}.fid must be a window [lo, hi], got {window!r}")
    low, high = (float(validate_number(v, f"{where}: {what}.fid", 0)) for v in window)
    if not low < high:
        raise DiffbenchError(f"{where}: {what}.fid must be [lo, hi] with lo < hi, got {window!r}")
    return low, high


def _parse_cells(cells, where, fid_gate=None) -> tuple[CellSpec, ...]:
    if not isinstance(cells, list) or not cells:
        raise DiffbenchError(f"{where}: needs at least one [[cells]] entry")
    expanded = []
    for number, cell in enumerate(cells, 1):
        what = f"[[cells]] #{number}"
        cell = _table(cell, what, where)
        for key in cell:
            if key not in CELL_KEYS:
                raise DiffbenchError(f"{where}: unknown key {key!r} in {what}; "
                                     f"valid: {', '.join(CELL_KEYS)}")
        if not isinstance(cell.get("method"), str):
            raise DiffbenchError(f"{where}: {what} needs a 'method' string")
        model = cell.get("model", "")
        if model:
            validate_name(model if isinstance(model, str) else repr(model), f"{what}.model")
        steps = cell.get("steps", [1])
        if not isinstance(steps, list) or not steps or not all(
                type(s) is int and s > 0 for s in steps):
            raise DiffbenchError(f"{where}: {what}.steps must be a non-empty list of positive ints")
        hparams = _table(cell.get("hparams", {}), f"{what}.hparams", where)
        sweep = _table(cell.get("sweep", {}), f"{what}.sweep", where)
        for key, values in sweep.items():
            if not isinstance(values, list) or not values:
                raise DiffbenchError(f"{where}: {what}.sweep.{key} must be a non-empty list")
        masks = cell.get("mask", [""])
        if "mask" in cell and (not isinstance(masks, list) or not masks
                               or not all(isinstance(m, str) and m for m in masks)):
            raise DiffbenchError(f"{where}: {what}.mask must be a non-empty list of mask names")
        levels = cell.get("denoise_t", [0])
        if "denoise_t" in cell and (not isinstance(levels, list) or not levels or not all(
                type(t) is int and 1 <= t <= NUM_TRAIN_STEPS for t in levels)):
            raise DiffbenchError(f"{where}: {what}.denoise_t must be a non-empty list of DDPM "
                                 f"timesteps, integers in 1..{NUM_TRAIN_STEPS}")
        snapshots = cell.get("train_step", [0])
        if "train_step" in cell and (not isinstance(snapshots, list) or not snapshots or not all(
                type(s) is int and s > 0 for s in snapshots)):
            raise DiffbenchError(f"{where}: {what}.train_step must be a non-empty list of training "
                                 "steps, positive integers")
        stages = _superres_stages(cell["superres"], f"{what}.superres", where) if "superres" in cell else [None]
        gate = _parse_gate(cell["gate"], f"{what}.gate", where) if "gate" in cell else fid_gate
        for combo in itertools.product(*sweep.values()):
            merged = {**hparams, **dict(zip(sweep, combo))}
            for mask, level, snapshot, stage, steps_value in itertools.product(
                    masks, levels, snapshots, stages, steps):
                expanded.append(CellSpec(cell["method"], steps_value, tuple(sorted(merged.items())),
                                         model, mask, level, snapshot, stage, gate))
    return tuple(expanded)


def _superres_stages(stage, what: str, where: str) -> list[CellSpec]:
    """A cascade's second stage, one per step count: `superres = { method = "sr3", steps = [..] }`."""
    stage = _table(stage, what, where)
    for key in stage:
        if key not in STAGE_KEYS:
            raise DiffbenchError(f"{where}: unknown key {key!r} in {what}; valid: {', '.join(STAGE_KEYS)}")
    if not isinstance(stage.get("method"), str):
        raise DiffbenchError(f"{where}: {what} needs a 'method' string (a super-resolution method)")
    steps = stage.get("steps", [1])
    if not isinstance(steps, list) or not steps or not all(type(s) is int and s > 0 for s in steps):
        raise DiffbenchError(f"{where}: {what}.steps must be a non-empty list of positive ints")
    model = stage.get("model", "")
    if model:
        validate_name(model if isinstance(model, str) else repr(model), f"{what}.model")
    hparams = tuple(sorted(_table(stage.get("hparams", {}), f"{what}.hparams", where).items()))
    return [CellSpec(stage["method"], s, hparams, model) for s in steps]


def _validate(config: SuiteConfig, where: str) -> None:

    def named(registry, name, what):
        if name not in registry:
            valid = ", ".join(registry)
            raise DiffbenchError(f"{where}: unknown {what} {name!r}; valid names: {valid}")
        return registry.get(name)

    for metric in config.metrics:
        named(METRICS, metric, "metric")
    if not is_vit_spec(config.feature_extractor):
        named(EXTRACTORS, config.feature_extractor, "feature extractor")
    if config.inception_weights and config.feature_extractor != "inception":
        raise DiffbenchError(f"{where}: inception_weights is set but feature_extractor is "
                             f"{config.feature_extractor!r}: drop it or use \"inception\"")
    for key, (low, high) in SUITE_LIMITS.items():
        validate_number(getattr(config, key), f"{where}: [suite].{key}", low, high, integer=True)
    check_device(config.device, f"{where}: [suite].device")
    if config.n_samples < config.min_samples:
        raise DiffbenchError(f"{where}: n_samples {config.n_samples} is below the suite's "
                             f"min_samples {config.min_samples}: raise n_samples")
    if config.n_samples < (config.warmup_batches + 1) * config.batch_size:
        raise DiffbenchError(f"{where}: n_samples must cover warmup_batches + 1 batches so that "
                             "at least one timed round remains; raise n_samples or lower batch_size")
    if config.reference_split not in ("train", "test"):
        raise DiffbenchError(f"{where}: [suite].reference_split must be 'train' or 'test'")
    if config.reference_stats:
        if not Path(config.reference_stats).is_file():
            raise DiffbenchError(f"{where}: [suite].reference_stats {config.reference_stats!r} does "
                                 "not exist: give an .npz of mu and sigma (relative to the suite)")
        needing = [m for m in config.metrics if m in METRICS and METRICS.get(m).needs == "features"]
        if needing:
            raise DiffbenchError(f"{where}: metrics {', '.join(needing)} need the reference's features, "
                                 "which reference_stats does not hold: drop them or reference_stats")
    for _, spec in config.models:
        if not spec.source:
            named(RECIPES, spec.recipe, "model recipe")
    for cell in config.cells:
        method = named(METHODS, cell.method, "method")
        _check_method_settings(method, cell, where)
        if cell.mask and method.task != "inpaint":
            raise DiffbenchError(f"{where}: method {cell.method!r} (task {method.task!r}) takes no "
                                 "mask: drop it (only inpainting methods do)")
        if cell.mask and cell.mask not in MASKS:
            raise DiffbenchError(f"{where}: unknown inpainting mask {cell.mask!r}; valid: "
                                 f"{', '.join(MASKS)}")
        _check_denoising(cell, method, where)
        if method.task == "anagram" and config.feature_extractor != "lenet":
            raise DiffbenchError(f"{where}: method {cell.method!r} is read in two views by the domain "
                                 "classifier: set feature_extractor = \"lenet\"")
        if method.model is None and cell.model:
            raise DiffbenchError(f"{where}: method {cell.method!r} uses no network: drop its 'model'")
        kind = cell.model_kind
        _check_train_curve(config, cell, method, where, named)
        _check_cascade(config, cell, method, where, named)
        if kind is None or config.model_spec(kind).source:
            continue   # an external model is checked with a forward pass (_validate_models)
        recipe = named(RECIPES, config.model_spec(kind).recipe, "model recipe")
        if recipe.superres != (method.task == "superres"):
            raise DiffbenchError(f"{where}: method {cell.method!r} (task {method.task!r}) cannot use "
                                 f"recipe {recipe.name!r}: pick a {method.task} recipe for "
                                 f"[models.{kind}]")
        if cell.denoise_t and recipe.network.num_classes:
            raise DiffbenchError(f"{where}: recipe {recipe.name!r} is class-conditional: denoising "
                                 f"cells run unconditional models; pick one for [models.{kind}]")
        if method.task == "anagram":
            classes = load_dataset(config.dataset).num_classes if recipe.network.num_classes else 0
            _check_classes(cell, method, classes, where)
    _validate_models(config, where)


def _check_classes(cell: CellSpec, method, classes: int, where: str) -> None:
    """An anagram's or hybrid's two classes exist in its class-conditional model."""
    hparams = method.resolve_hparams(dict(cell.hparams))
    for key in ("class_a", "class_b"):
        if not classes or hparams[key] >= classes:
            raise DiffbenchError(f"{where}: method {cell.method!r}: {key} = {hparams[key]} is not a "
                                 f"class of its model ({classes} classes): pick one below {classes}")


def _check_method_settings(method, cell: CellSpec, where: str) -> None:
    """A cell's (or a cascade stage's) steps and hyper-parameters within the method's ranges,
    and the optional libraries it needs installed."""
    try:
        method.check_steps(cell.steps)
        method.resolve_hparams(dict(cell.hparams))
    except (KeyError, TypeError, ValueError, DiffbenchError) as err:
        raise DiffbenchError(f"{where}: {err.args[0]}") from None
    missing = method.missing_requirements()
    if missing:
        raise DiffbenchError(f"{where}: method {cell.method!r} needs {', '.join(missing)}, which "
                             "is not installed: see the README's set-up for the optional libraries")


def _check_cascade(config: SuiteConfig, cell: CellSpec, method, where: str, named) -> None:
    """A cascade chains a generation method on a low-resolution model (`lowres = true`) with a
    super-resolution method at the suite's superres_scale; a low-resolution model serves only as
    a cascade's first stage (its samples are not the suite's image size)."""
    kind = cell.model_kind
    spec = None if kind is None else config.model_spec(kind)
    lowres = (spec is not None and not spec.source and dict(spec.overrides).get("lowres") is True
              and not named(RECIPES, spec.recipe, "model recipe").superres)   # that one is refused with its model
    if cell.superres is None:
        if lowres:
            raise DiffbenchError(f"{where}: [models.{kind}] is trained at low resolution (lowres = "
                                 f"true): use it as a cascade's first stage (superres = {{ method = ... }})")
        return
    if method.task != "generate" or cell.denoise_t or cell.train_step or method.classifier:
        raise DiffbenchError(f"{where}: method {cell.method!r} cannot start a cascade: its first stage "
                             "is an unguided generation method without denoise_t or train_step")
    stage = named(METHODS, cell.superres.method, "method")
    if stage.task != "superres":
        raise DiffbenchError(f"{where}: a cascade's superres.method must be a super-resolution "
                             f"method; {cell.superres.method!r} is task {stage.task!r}")
    _check_method_settings(stage, cell.superres, where)
    if stage.model is None and cell.superres.model:
        raise DiffbenchError(f"{where}: method {stage.name!r} uses no network: drop its 'model'")
    if kind is not None and not config.model_spec(kind).source and not lowres:
        raise DiffbenchError(f"{where}: [models.{kind}] trains at full resolution: set lowres = true "
                             "there for a cascade's first stage")
    second = cell.superres_model_kind
    if second is not None and not config.model_spec(second).source:
        recipe = named(RECIPES, config.model_spec(second).recipe, "model recipe")
        if not recipe.superres:
            raise DiffbenchError(f"{where}: a cascade's superres stage cannot use recipe "
                                 f"{recipe.name!r}: pick a superres recipe for [models.{second}]")


def _check_train_curve(config: SuiteConfig, cell: CellSpec, method, where: str, named) -> None:
    """A train-curve cell generates from a snapshot its recipe's training can keep: a generation
    method on a recipe (not an external model), a step within the recipe's budget."""
    if not cell.train_step:
        return
    kind = cell.model_kind
    if method.task != "generate" or cell.denoise_t:
        raise DiffbenchError(f"{where}: method {cell.method!r} takes no train_step: training curves "
                             "are measured by generation methods; drop it")
    if kind is None or config.model_spec(kind).source:
        raise DiffbenchError(f"{where}: method {cell.method!r} has no recipe to train "
                             f"({'no network' if kind is None else 'an external model'}): "
                             "train_step needs a [models.X] recipe")
    spec = config.model_spec(kind)
    budget = dict(spec.overrides).get("steps", named(RECIPES, spec.recipe, "model recipe").budget.steps)
    if type(budget) is int and cell.train_step > budget:   # a mistyped steps is refused with the model
        raise DiffbenchError(f"{where}: train_step {cell.train_step} is past the {budget} training "
                             f"steps of [models.{kind}]: pick steps up to {budget} or raise its steps")


def _check_denoising(cell: CellSpec, method, where: str) -> None:
    """A denoising method needs its inputs' noise level; a generation method given one denoises
    from it, if its sampler can start from a noisy image and no classifier guides it."""
    if method.task == "denoise" and not cell.denoise_t:
        raise DiffbenchError(f"{where}: method {cell.method!r} denoises: give the noise level as "
                             "denoise_t = [t, ...] (DDPM timesteps)")
    if not cell.denoise_t or method.task == "denoise":
        return
    if method.task != "generate":
        raise DiffbenchError(f"{where}: method {cell.method!r} (task {method.task!r}) takes no "
                             "denoise_t: drop it (denoising and generation methods do)")
    if method.start is None:
        raise DiffbenchError(f"{where}: method {cell.method!r} cannot start from a noisy image, so "
                             "it cannot denoise: drop its denoise_t")
    if method.classifier:
        raise DiffbenchError(f"{where}: method {cell.method!r} is classifier-guided: denoising "
                             "cells run unconditional models; pick an unguided method")


def _validate_models(config: SuiteConfig, where: str) -> None:
    """Every model the suite's cells need: a recipe whose overrides have the right names, types
    and ranges and whose network builds for the suite's images."""
    dataset = load_dataset(config.dataset)
    for kind, recipe in suite_recipes(config).items():
        recipe = recipe.for_dataset(dataset).check(f"{where}: [models.{kind}]")
        _check_schedules(config, kind, untrained_denoiser(recipe), f"{where}: [models.{kind}]")
    for kind, model in load_suite_external(config).items():
        _check_schedules(config, kind, model.denoiser, f"{where}: [models.{kind}]")


def _check_schedules(config: SuiteConfig, kind: str, denoiser, what: str) -> None:
    """Each cell on the model gets a schedule from it (a discrete-time method needs the
    training noise levels of a discrete-time model; a library's schedule checks its options)."""
    for cell in (stage for c in config.cells for stage in (c, c.superres) if stage is not None):
        method = METHODS.get(cell.method)
        if cell.model_kind != kind:
            continue
        hparams = stand_in(method.resolve_hparams(dict(cell.hparams)))
        try:
            if cell.denoise_t and method.model is not None:
                method.schedule_from(denoiser, ddpm_sigma(cell.denoise_t), cell.steps, hparams)
            else:
                method.schedule_on(denoiser, cell.steps, hparams)
        except Exception as err:
            raise DiffbenchError(f"{what}: method {cell.method!r} cannot schedule {cell.steps} steps on "
                                 f"this model ({type(err).__name__}: {err}); pick a method for its "
                                 "parameterization") from None


def check_device(name: str, what: str) -> None:
    """"cpu", "auto", "cuda" or "cuda:N", and a CUDA device only where torch sees one."""
    import re

    import torch
    if name in ("cpu", "auto"):
        return
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if not match:
        raise DiffbenchError(f"{what} must be \"cpu\", \"cuda\", \"cuda:N\" or \"auto\", got {name!r}")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(match.group(1) or 0)
    if index >= count:
        raise DiffbenchError(f"{what} is {name!r} but torch sees {count} CUDA device(s): use "
                             "\"cpu\" or \"auto\", or run on a machine with a GPU")
