"""Model recipes: network config + training objective + dataset + training budget.

A recipe's hash (with the dataset's content hash) is its checkpoint's cache key, so changing
any of them trains a new model and never reuses a stale one.
"""
import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Mapping

import torch

import bench.models.precision
from bench.data.datasets import ImageDataset, load_dataset
from bench.data.degradation import DEGRADATION, check_scale, condition_of, lowres_of
from bench.models.checkpoints import checkpoint_exists, load_checkpoint
from bench.models.precision import PRECISIONS, resolve_precision, step_timer
from bench.models.training import TrainBudget, snapshot_path, train
from bench.paths import cache_dir, checkpoint_folders, ensure_writable
from methods import OBJECTIVES, UNet, UNetConfig
from methods.errors import DiffbenchError
from methods.registry import Registry, did_you_mean, typed_like, validate_number

log = logging.getLogger("diffbench")
FORMAT_VERSION = 2    # 2: the budget's resolved precision replaces its bf16 flag
LABEL_DROPOUT = 0.1   # class-conditional training drops the label this often (Ho & Salimans 2022)


@dataclasses.dataclass(frozen=True)
class ModelRecipe:
    name: str
    model: str                 # the model kind methods ask for ("eps", ...)
    objective: str             # a registered training objective
    dataset: str               # "" for a template that trains on the suite's dataset
    network: UNetConfig = UNetConfig()
    budget: TrainBudget = TrainBudget()
    superres: bool = False     # conditioned on the upsampled LR image (task = superres)
    superres_scale: int = 0    # set from the suite for a superres recipe
    lowres_scale: int = 0      # set from the suite for a generation recipe given `lowres = true`:
                               # trained on the images downsampled as SR inputs are (a cascade's first stage)

    def with_overrides(self, overrides: Mapping[str, Any], where: str) -> "ModelRecipe":
        """Replace network or budget fields by name; an unknown key or wrong type is an error."""
        network_fields = {f.name: f for f in dataclasses.fields(UNetConfig)}
        budget_fields = {f.name: f for f in dataclasses.fields(TrainBudget)}
        network, budget = {}, {}
        for key, value in overrides.items():
            target = network if key in network_fields else budget if key in budget_fields else None
            if target is None:
                valid = ", ".join(sorted({*network_fields, *budget_fields}))
                raise DiffbenchError(f"{where}: unknown model key {key!r}"
                                     f"{did_you_mean(key, {*network_fields, *budget_fields})}; valid: {valid}")
            default = getattr(self.network if target is network else self.budget, key)
            target[key] = typed_like(value, default, f"{where}: model key {key!r}",
                                     type(default[0]) if isinstance(default, tuple) and default else None)
        return dataclasses.replace(self, network=dataclasses.replace(self.network, **network),
                                   budget=dataclasses.replace(self.budget, **budget))

    def check(self, where: str) -> "ModelRecipe":
        """Every number in range and a network that builds, or a one-line error naming the key;
        call it on the recipe bound to its dataset (`for_dataset`)."""
        for config in (self.network, self.budget):
            for key, (low, high) in config.limits().items():
                value = getattr(config, key)
                validate_number(value, f"{where}: model key {key!r}", low, high,
                                integer=isinstance(value, int) and not isinstance(value, bool))
        if self.budget.precision not in PRECISIONS:
            raise DiffbenchError(f"{where}: model key 'precision' must be one of "
                                 f"{', '.join(PRECISIONS)}, got {self.budget.precision!r}")
        problem = self.network.build_problem()
        if problem:
            raise DiffbenchError(f"{where}: the network of recipe {self.name!r} cannot be built "
                                 f"({problem}): change base_channels, channel_mult or attention_levels")
        return self

    def with_precision(self, precision: str) -> "ModelRecipe":
        return dataclasses.replace(self, budget=dataclasses.replace(self.budget, precision=precision))

    def for_dataset(self, dataset: ImageDataset) -> "ModelRecipe":
        """Image shape, and for a class-conditional network the class count, from the data."""
        channels, size = dataset.shape[0], dataset.shape[1] // (self.lowres_scale or 1)
        classes = dataset.num_classes if self.network.num_classes else 0
        return dataclasses.replace(self, network=dataclasses.replace(
            self.network, image_channels=channels, image_size=size, num_classes=classes,
            cond_channels=channels if self.superres else 0))

    def cache_key(self, dataset_hash: str) -> str:
        """Identifies the trained model; needs a resolved precision (fp32 and bf16 training
        give different models)."""
        if self.budget.precision == "auto":
            raise ValueError(f"recipe {self.name!r}: resolve its precision before its cache key")
        spec = {"format": FORMAT_VERSION, "model": self.model, "objective": self.objective,
                "dataset_hash": dataset_hash, "network": dataclasses.asdict(self.network),
                "budget": dataclasses.asdict(self.budget)}
        if self.superres:
            spec["superres"] = {"scale": self.superres_scale, "degradation": DEGRADATION}
        if self.lowres_scale:
            spec["lowres"] = {"scale": self.lowres_scale, "degradation": DEGRADATION}
        spec["budget"].pop("checkpoint_every")  # how often we save does not change the model
        objective_source = OBJECTIVES.origin(self.objective).source_sha256
        if objective_source:   # a plugin's objective: editing it trains a new model
            spec["objective_source_sha256"] = objective_source
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


RECIPES: Registry[ModelRecipe] = Registry("model recipe")


def register_recipe(recipe: ModelRecipe) -> ModelRecipe:
    return RECIPES.register(recipe.name, recipe)


register_recipe(ModelRecipe(
    name="eps", model="eps", objective="ddpm-eps", dataset="",
    network=UNetConfig(base_channels=32, channel_mult=(1, 2), num_res_blocks=1),
    budget=TrainBudget(steps=900, batch_size=128, lr=2e-3)))
# The eps model on the cosine schedule (the convergence comparison's second DDPM): same network
# and budget, only the training schedule differs; its samplers respace its own levels.
register_recipe(dataclasses.replace(RECIPES.get("eps"), name="eps-cosine", objective="ddpm-eps-cosine"))
register_recipe(ModelRecipe(
    name="edm", model="edm", objective="edm", dataset="",
    network=UNetConfig(base_channels=32, channel_mult=(1, 2), num_res_blocks=1),
    budget=TrainBudget(steps=900, batch_size=128, lr=2e-3)))
register_recipe(ModelRecipe(
    name="flow", model="flow", objective="flow", dataset="",
    network=UNetConfig(base_channels=32, channel_mult=(1, 2), num_res_blocks=1),
    budget=TrainBudget(steps=900, batch_size=128, lr=2e-3)))
for _kind in ("eps", "edm", "flow"):
    _base = RECIPES.get(_kind)
    register_recipe(dataclasses.replace(  # num_classes is set from the dataset
        _base, name=f"{_kind}-cond", model=f"{_kind}-cond",
        network=dataclasses.replace(_base.network, num_classes=1)))
# Super-resolution: the same UNet, conditioned on the upsampled LR image (concatenated input).
# Conditional SR is an easier task than generation, so a smaller budget (600 steps at 64).
register_recipe(ModelRecipe(
    name="sr3", model="sr3", objective="ddpm-eps", dataset="", superres=True,
    network=UNetConfig(base_channels=32, channel_mult=(1, 2), num_res_blocks=1),
    budget=TrainBudget(steps=600, batch_size=64, lr=2e-3)))
register_recipe(ModelRecipe(
    name="sr-edm", model="sr-edm", objective="edm", dataset="", superres=True,
    network=UNetConfig(base_channels=32, channel_mult=(1, 2), num_res_blocks=1),
    budget=TrainBudget(steps=600, batch_size=64, lr=2e-3)))
register_recipe(ModelRecipe(
    name="eps-digits8", model="eps", objective="ddpm-eps", dataset="digits8",
    network=UNetConfig(image_size=8, base_channels=16, channel_mult=(1, 2)),
    budget=TrainBudget(steps=300, batch_size=64, lr=2e-3)))
register_recipe(dataclasses.replace(RECIPES.get("eps-digits8"), name="eps-cosine-digits8",
                                    objective="ddpm-eps-cosine"))


def resolve_recipe(name: str, dataset: str, where: str, superres_scale: int = 4) -> ModelRecipe:
    """A registered recipe bound to `dataset` (templates take it, specific recipes must match)
    and, for a superres recipe, to the suite's scale."""
    recipe = RECIPES.get(name)
    if recipe.superres:
        recipe = dataclasses.replace(recipe, superres_scale=superres_scale)
    if not recipe.dataset:
        return dataclasses.replace(recipe, dataset=dataset)
    if recipe.dataset != dataset:
        raise DiffbenchError(f"{where}: recipe {name!r} trains on {recipe.dataset!r} but the suite "
                             f"uses dataset {dataset!r}; pick a recipe for {dataset!r} or the template")
    return recipe


def default_recipe_name(model_kind: str, dataset: str) -> str:
    specific = f"{model_kind}-{dataset}"
    return specific if specific in RECIPES else model_kind


def suite_recipes(config) -> dict[str, ModelRecipe]:
    """Model kind -> recipe (bound to the suite's dataset and scale, overrides applied) for every
    model the suite's cells need."""
    recipes = {}
    for kind in model_kinds(config):
        spec, where = config.model_spec(kind), f"{config.path}: [models.{kind}]"
        if spec.source:
            continue
        recipe = resolve_recipe(spec.recipe, config.dataset, where, config.superres_scale)
        overrides = dict(spec.overrides)
        if overrides.pop("lowres", False) is not False:
            recipe = lowres_recipe(recipe, spec, config, where)
        recipes[kind] = recipe.with_overrides(overrides, where)
    return recipes


def lowres_recipe(recipe: ModelRecipe, spec, config, where: str) -> ModelRecipe:
    """The recipe trained at the suite's low resolution (`lowres = true`): the images downsampled
    by superres_scale as a super-resolution model's inputs are."""
    if dict(spec.overrides)["lowres"] is not True:
        raise DiffbenchError(f"{where}: model key 'lowres' must be true or left out")
    if recipe.superres:
        raise DiffbenchError(f"{where}: recipe {recipe.name!r} is a super-resolution recipe: "
                             "lowres = true is for the generation model of a cascade's first stage")
    check_scale(load_dataset(config.dataset).shape, config.superres_scale, where)
    return dataclasses.replace(recipe, lowres_scale=config.superres_scale)


def model_kinds(config) -> list[str]:
    """The model kinds the suite's cells need (a cascade's both stages)."""
    return sorted({kind for c in config.cells for kind in (c.model_kind, c.superres_model_kind)} - {None})


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedModel:
    name: str                  # its recipe's, or "<source>:<file>" for an external model
    denoiser: torch.nn.Module
    checkpoint_sha256: str
    num_parameters: int
    num_classes: int           # class-conditional: labels 0..K-1, and K the unconditional one
    meta: dict                 # the sidecar, or an external model's description; has "cache_key"
    path: Path                 # the weights file (published, cached or external)
    recipe: ModelRecipe | None = None   # None: an external model (bench.models.external)


def model_folder_name(recipe: ModelRecipe, dataset: ImageDataset) -> str:
    return f"{recipe.name}-{recipe.cache_key(dataset.content_hash)}"


def find_model(recipe: ModelRecipe, dataset: ImageDataset, snapshots: tuple[int, ...] = ()) -> Path | None:
    """The recipe's trained weights (with every snapshot asked for beside them): published ones
    first, then the cache. Under precision "auto" a published model trained in either precision
    will do (it is what makes a user's rows comparable with the leaderboards); from the cache,
    the one this machine would train (either, when its bf16 support is unknown and deciding
    would take a timing probe)."""
    requested = recipe.budget.precision
    support = bench.models.precision.cpu_bf16_support()   # looked up here, so tests can fake it
    if requested != "auto":
        published = cached = [requested]
    else:
        published = ["bf16", "fp32"] if support == "native" else ["fp32", "bf16"]
        cached = published if support == "unknown" else published[:1]
    for place, precisions in ((0, published), (1, cached)):
        for precision in precisions:
            name = model_folder_name(recipe.with_precision(precision), dataset)
            final = checkpoint_folders("models", name)[place] / "model.safetensors"
            if checkpoint_exists(final) and all(checkpoint_exists(snapshot_path(final.parent, step))
                                                for step in snapshots):
                return final
    return None


def ensure_trained(recipe: ModelRecipe, device: str = "cpu") -> LoadedModel:
    """Load the recipe's published or cached checkpoint, training (or resuming) it first when
    there is none."""
    recipe, dataset, objective = bound_recipe(recipe)
    final = find_model(recipe, dataset) or _train_recipe(recipe, dataset, objective)
    return _load(recipe, objective, final, device)


def ensure_snapshots(recipe: ModelRecipe, steps: tuple[int, ...], device: str = "cpu") -> dict[int, LoadedModel]:
    """The recipe's EMA weights after each of `steps` (a training curve's checkpoints), training
    it again into the cache when they are not all beside a published or cached model."""
    recipe, dataset, objective = bound_recipe(recipe)
    final = find_model(recipe, dataset, steps) or _train_recipe(recipe, dataset, objective, steps)
    return {step: _load(recipe, objective, snapshot_path(final.parent, step), device) for step in steps}


def is_trained(recipe: ModelRecipe) -> bool:
    """Whether the recipe's weights are published or cached (nothing to train)."""
    recipe, dataset, _ = bound_recipe(recipe)
    return find_model(recipe, dataset) is not None


def bound_recipe(recipe: ModelRecipe):
    """The recipe sized for its dataset, the dataset, and its objective."""
    dataset = load_dataset(recipe.dataset)
    if recipe.network.num_classes and dataset.labels is None:
        raise DiffbenchError(f"recipe {recipe.name!r} is class-conditional but dataset "
                             f"{recipe.dataset!r} has no labels: use an unconditional recipe")
    return recipe.for_dataset(dataset), dataset, OBJECTIVES.get(recipe.objective)


def _load(recipe: ModelRecipe, objective, path: Path, device: str) -> LoadedModel:
    tensors, meta = load_checkpoint(path, f"model {recipe.name!r}")
    net = UNet(recipe.network)
    try:
        net.load_state_dict(tensors)
    except RuntimeError:
        raise DiffbenchError(f"model checkpoint {str(path)!r} does not fit recipe "
                             f"{recipe.name!r}: delete {str(path.parent)!r} to retrain") from None
    net.eval().requires_grad_(False)
    denoiser = objective.make_denoiser(net).to(device)
    log.info("model %s: %s (trained in %s)", recipe.name, path, meta.get("precision"))
    return LoadedModel(recipe.name, denoiser, meta["sha256"], sum(p.numel() for p in net.parameters()),
                       recipe.network.num_classes, meta, path, recipe)


def untrained_denoiser(recipe: ModelRecipe):
    """The recipe's denoiser with random weights (a recipe bound to its dataset): what its
    parameterisation offers a sampler, known before anything is trained."""
    return OBJECTIVES.get(recipe.objective).make_denoiser(UNet(recipe.network)).eval()


def recipe_loss(recipe: ModelRecipe, dataset: ImageDataset, objective):
    """loss(model, batch_index, generator) on the recipe's training split."""
    images, labels = dataset.split("train")
    if recipe.lowres_scale:
        images = lowres_of(images, recipe.lowres_scale)
    use_labels = bool(recipe.network.num_classes)
    if recipe.superres:
        check_scale(dataset.shape, recipe.superres_scale, f"recipe {recipe.name!r}")
        conditions = condition_of(lowres_of(images, recipe.superres_scale), recipe.superres_scale)

    def loss_fn(model, index, generator):
        batch_labels = None
        if use_labels:  # drop the label (use the null class) LABEL_DROPOUT of the time
            dropped = torch.rand(len(index), generator=generator) < LABEL_DROPOUT
            batch_labels = torch.where(dropped, recipe.network.num_classes, labels[index])
        lowres = conditions[index] if recipe.superres else None
        return objective.loss(model, images[index], generator, labels=batch_labels, lowres=lowres)
    return loss_fn, len(images)


def training_precision(recipe: ModelRecipe, loss_fn, num_examples: int):
    """The precision this machine trains the recipe in (a throw-away network is timed only
    when torch's capability queries cannot tell)."""
    def one_step():
        with torch.random.fork_rng(devices=[]):
            net = UNet(recipe.network)
            index = torch.arange(min(recipe.budget.batch_size, num_examples))
            loss_fn(net, index, torch.Generator().manual_seed(0)).float().backward()
    return resolve_precision(recipe.budget.precision, step_timer(one_step))


def _train_recipe(recipe, dataset, objective, snapshots: tuple[int, ...] = ()) -> Path:
    loss_fn, num_examples = recipe_loss(recipe, dataset, objective)
    precision = training_precision(recipe, loss_fn, num_examples)
    recipe = recipe.with_precision(precision.name)
    directory = cache_dir() / "models" / model_folder_name(recipe, dataset)
    ensure_writable(directory, "model cache", "set DIFFBENCH_CACHE to a writable folder")
    log.info("train %s: %s, because %s", recipe.name, precision.name, precision.reason)
    torch.manual_seed(recipe.budget.seed)  # network initialisation only
    net = UNet(recipe.network)
    meta = {"recipe": recipe.name, "cache_key": recipe.cache_key(dataset.content_hash),
            "model": recipe.model, "objective": recipe.objective, "dataset": dataset.name,
            "dataset_hash": dataset.content_hash, "network": dataclasses.asdict(recipe.network),
            "budget": dataclasses.asdict(recipe.budget), "torch": torch.__version__,
            "precision": precision.name, "precision_reason": precision.reason,
            "superres_scale": recipe.superres_scale}
    train(net, loss_fn, num_examples, recipe.budget, directory, recipe.name, meta, snapshots=snapshots)
    return directory / "model.safetensors"
