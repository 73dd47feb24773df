"""`diffbench run --dry-run`: what a suite would do, known before any work. Each cell with its
task, model, steps and planned NFE, and an estimated sampling time. The models it would train
are listed too. Nothing is trained, sampled or stored.

The estimate is NFE x batches x one network evaluation on a full batch. That evaluation is timed
on a copy of each network: random weights for a recipe, the real weights for an external model.
It leaves out the sampler's own arithmetic, scoring and a guiding classifier's gradients. It is a
lower bound, to tell minutes from hours.
"""
import dataclasses
import math

import torch

from bench.config import SuiteConfig
from bench.config.checks import load_suite_external
from bench.data.datasets import load_dataset
from bench.models.recipes import bound_recipe, is_trained, suite_recipes, untrained_denoiser
from bench.run.cascade import lowres_shape
from bench.run.cost import median_forward_seconds
from bench.run.suite import resolve_device
from bench.run.tasks import task_of
from methods import METHODS


@dataclasses.dataclass(frozen=True)
class PlannedCell:
    number: int
    label: str
    task: str
    model: str | None          # the model kind it samples from (None: no network)
    steps: int
    nfe: float | None          # planned per sample (None: adaptive, counted when it runs)
    seconds: float | None      # estimated sampling time of the whole cell


@dataclasses.dataclass(frozen=True)
class Plan:
    cells: list[PlannedCell]
    to_train: list[str]        # the models neither published nor cached: trained first
    device: str

    @property
    def seconds(self) -> float:
        return sum(c.seconds or 0.0 for c in self.cells)


def forward_seconds(denoiser, config: SuiteConfig, shape, num_classes: int, lowres: bool, device) -> float:
    """One evaluation on a full batch, conditioned as the suite's cells condition it."""
    x = torch.zeros((config.batch_size, *shape), device=device)
    cond = {}
    if num_classes:
        cond["labels"] = torch.zeros(config.batch_size, dtype=torch.long, device=device)
    if lowres:
        cond["lowres"] = torch.zeros_like(x)
    sigma = torch.ones(config.batch_size, device=device)
    return median_forward_seconds(denoiser.to(device), x, sigma, cond or None, rounds=3, warmup=1)


def plan_suite(config: SuiteConfig) -> Plan:
    device = resolve_device(config.device)
    dataset = load_dataset(config.dataset)
    recipes, external = suite_recipes(config), load_suite_external(config, dataset, str(device))
    to_train = [f"{kind} ({recipe.name}, {recipe.budget.steps} steps)" for kind, recipe in recipes.items()
                if not is_trained(recipe)]
    networks = {kind: (untrained_denoiser(bound_recipe(recipe)[0]), recipe.network.num_classes)
                for kind, recipe in recipes.items()}
    networks.update({kind: (model.denoiser, model.num_classes) for kind, model in external.items()})
    conditioned = {stage.model_kind for c in config.cells for stage in (c, c.superres)   # on the LR image
                   if stage is not None and (stage is c.superres or METHODS.get(stage.method).task == "superres")}
    timed: dict[tuple, float] = {}

    def evaluation(kind, shape) -> float:
        if (kind, shape) not in timed:
            denoiser, classes = networks[kind]
            timed[kind, shape] = forward_seconds(denoiser, config, shape, classes, kind in conditioned, device)
        return timed[kind, shape]

    batches = math.ceil(config.n_samples / config.batch_size)
    cells = []
    for number, cell in enumerate(config.cells, 1):
        first = lowres_shape(dataset.shape, config.superres_scale) if cell.superres else dataset.shape
        nfe = seconds = 0.0
        for stage, shape in ((cell, first),) + (((cell.superres, dataset.shape),) if cell.superres else ()):
            method = METHODS.get(stage.method)
            stage_nfe = method.planned_nfe(stage.steps, method.resolve_hparams(dict(stage.hparams)))
            if stage_nfe is None or nfe is None:
                nfe = seconds = None
                continue
            nfe += stage_nfe
            seconds += stage_nfe * batches * evaluation(stage.model_kind, shape) if stage.model_kind else 0.0
        task = task_of(METHODS.get(cell.method), cell).key
        cells.append(PlannedCell(number, cell.label, task, cell.model_kind, cell.steps,
                                 None if nfe is None else int(nfe) if float(nfe).is_integer() else nfe, seconds))
    return Plan(cells, to_train, str(device))


def plan_lines(plan: Plan, config: SuiteConfig) -> list[str]:
    """The plan as `diffbench run --dry-run` prints it."""
    lines = [f"suite {config.name}: {len(plan.cells)} cell(s), {config.n_samples} samples each in "
             f"batches of {config.batch_size}, on {plan.device}"]
    for cell in plan.cells:
        nfe = "adaptive" if cell.nfe is None else f"{cell.nfe:g}"
        seconds = "?" if cell.seconds is None else f"{cell.seconds:.1f} s"
        lines.append(f"  [{cell.number}/{len(plan.cells)}] {cell.label} steps={cell.steps} NFE={nfe} "
                     f"task={cell.task} model={cell.model or '-'} ~{seconds}")
    lines.append(f"estimated sampling time: {plan.seconds:.0f} s (network evaluations only, timed on "
                 "a copy of each network: a lower bound)")
    lines.append("to train first: " + ("; ".join(plan.to_train) if plan.to_train
                                       else "nothing (every model is published or cached)"))
    return lines
