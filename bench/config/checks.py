"""A parsed suite checked against what it names before any work starts: registered names, ranges,
what each method's task allows, and each model with the schedules its cells need."""
from pathlib import Path

from bench.config.spec import SUITE_LIMITS, CellSpec, SuiteConfig
from bench.data.datasets import ImageDataset, load_dataset
from bench.data.degradation import MASKS
from bench.models.external import check_options, load_external
from bench.models.recipes import RECIPES, LoadedModel, model_kinds, suite_recipes, untrained_denoiser
from bench.plugins import load_factory
from bench.quality.metrics import EXTRACTORS, METRICS
from bench.quality.vit import is_vit_spec
from methods import METHODS
from methods.errors import DiffbenchError
from methods.registry import did_you_mean, validate_number
from methods.denoising import ddpm_sigma
from methods.schedules import stand_in

def validate_suite(config: SuiteConfig, where: str) -> None:

    def named(registry, name, what):
        if name not in registry:
            valid = ", ".join(registry)
            raise DiffbenchError(f"{where}: unknown {what} {name!r}{did_you_mean(name, registry)}; "
                                 f"valid names: {valid}")
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
    dataset = load_dataset(config.dataset)   # opened once for every check below
    for cell in config.cells:
        method = named(METHODS, cell.method, "method")
        _check_method_settings(method, cell, where)
        if cell.mask and method.task != "inpaint":
            raise DiffbenchError(f"{where}: method {cell.method!r} (task {method.task!r}) takes no "
                                 "mask: drop it (only inpainting methods do)")
        if cell.mask and cell.mask not in MASKS:
            raise DiffbenchError(f"{where}: unknown inpainting mask {cell.mask!r}"
                                 f"{did_you_mean(cell.mask, MASKS)}; valid: "
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
            classes = dataset.num_classes if recipe.network.num_classes else 0
            _check_classes(cell, method, classes, where)
    _validate_models(config, dataset, where)


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


def _validate_models(config: SuiteConfig, dataset: ImageDataset, where: str) -> None:
    """Every model the suite's cells need: a recipe whose overrides have the right names, types
    and ranges and whose network builds for the suite's images."""
    for kind, recipe in suite_recipes(config).items():
        recipe = recipe.for_dataset(dataset).check(f"{where}: [models.{kind}]")
        _check_schedules(config, kind, untrained_denoiser(recipe), f"{where}: [models.{kind}]")
    for kind, model in load_suite_external(config, dataset).items():
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


def load_suite_external(config: SuiteConfig, dataset: ImageDataset, device: str = "cpu") -> dict[str, LoadedModel]:
    """Model kind -> loaded external model, for the suite's kinds given a `source`. A safetensors
    model's factory is plugin code: it is loaded here and handed to the loader as a callable."""
    models = {}
    for kind in model_kinds(config):
        spec, where = config.model_spec(kind), f"{config.path}: [models.{kind}]"
        if not spec.source:
            continue
        options = check_options(spec.source, dict(spec.overrides), where)
        factory = (load_factory(options["factory"], Path(config.path).parent, where)
                   if "factory" in options else None)
        superres = any((c.model_kind == kind and METHODS.get(c.method).task == "superres")
                       or c.superres_model_kind == kind for c in config.cells)
        models[kind] = load_external(kind, spec.source, options, dataset,
                                     superres, where, device, factory)
    return models


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
