"""Every registered sampler at fixed shapes on a fixed-size random-weight network (speed needs
no trained model): batch 16 of 28x28 images, 10 steps, the mnist suites' UNet.

The default test run (benchmarks disabled) runs each once, as a smoke test. To time them and
check a change for regressions:

    pytest tests/benchmarks -k sampler --benchmark-enable --benchmark-json=now.json --benchmark-save-data
    diffbench compare baseline.json now.json
"""
import functools
from types import SimpleNamespace

import pytest
import torch

from bench.config import CellSpec, SuiteConfig
from bench.data.datasets import load_dataset
from bench.models.recipes import default_recipe_name, resolve_recipe, untrained_denoiser
from bench.run.cost import synchronize
from bench.run.batch import class_labels, sampler_condition
from bench.run.tasks import Denoising, Task
from bench.run.tasks import task_of as cell_task
from methods import METHODS, PerSampleRNG
from methods.classifier_guidance import NoiseAwareClassifier, log_prob_gradient

BATCH, STEPS = 16, 10
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ROUNDS, WARMUP_ROUNDS = 10, 2
DATASET = "mnist5k"                  # the mnist suites' images: 28x28 grey, 10 classes
SUITE = SuiteConfig(name="speed", path="tests/benchmarks/test_sampler_speed.py", dataset=DATASET)
DENOISE_T = 500                      # a denoising method's inputs: DDPM t = 500 (sigma 3.42)
SETTINGS = {"gaussian-blur": {"kernel_size": 27, "blur_sigma": 2.6903}}   # mnist-denoise's choice at t = 500


def task_of(method) -> Task:
    return Denoising(DENOISE_T) if method.task == "denoise" else cell_task(method, CellSpec(method.name, STEPS))


def random_denoiser(kind: str) -> torch.nn.Module:
    """The network the mnist suites' recipe for model kind `kind` builds, random weights, seed 0
    (the recipe sized by the dataset as for training)."""
    dataset = load_dataset(DATASET)
    recipe = resolve_recipe(default_recipe_name(kind, DATASET), DATASET, "speed benchmark")
    torch.manual_seed(0)
    return untrained_denoiser(recipe.for_dataset(dataset)).to(DEVICE)


def conditioning(method) -> dict | None:
    """What the runner hands the sampler for the first BATCH samples of a cell: the task's
    inputs from the dataset's test images, class labels, a classifier's gradient."""
    indices = range(BATCH)
    task = task_of(method)
    inputs = task.inputs(SUITE, load_dataset(DATASET), indices)
    classes = load_dataset(DATASET).num_classes
    conditional = bool(method.model and method.model.endswith("-cond"))
    labels = (class_labels(SimpleNamespace(num_classes=classes), indices)
              if conditional or method.classifier else None)
    gradient = None
    if method.classifier:   # a random-weight classifier costs what a trained one does
        torch.manual_seed(0)
        classifier = NoiseAwareClassifier(1, classes).to(DEVICE).eval().requires_grad_(False)
        gradient = functools.partial(log_prob_gradient, classifier)
    return sampler_condition(labels, classes, gradient, inputs, DEVICE)


@pytest.mark.parametrize("name", list(METHODS))
def test_sampler_speed(benchmark, name):
    method = METHODS.get(name)
    denoiser = random_denoiser(method.model) if method.model else None
    cond = conditioning(method)
    task = task_of(method)
    start = (cond["source"], task.sigma) if task.name == "denoise" and method.model else None
    hparams = {**method.defaults, **SETTINGS.get(name, {})}

    def setup():
        rng = PerSampleRNG(0, range(BATCH), DEVICE)
        return (rng.randn(load_dataset(DATASET).shape),), {"rng": rng}

    def sample(latents, rng):
        out = method.sample(denoiser, latents, STEPS, rng=rng, cond=cond, start=start, **hparams)
        synchronize(DEVICE)     # the round ends when the device has finished, not when queued
        return out

    benchmark.extra_info.update(batch=BATCH, steps=STEPS, dataset=DATASET, device=str(DEVICE))
    out = benchmark.pedantic(sample, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)
    assert out.shape == (BATCH, *load_dataset(DATASET).shape) and torch.isfinite(out).all()
