"""Every registered sampler at fixed shapes on a fixed-size random-weight network (speed needs
no trained model): batch 16 of 28x28 images, 10 steps, the mnist suites' UNet.

The default test run (benchmarks disabled) runs each once, as a smoke test. To time them and
check a change for regressions:

    pytest tests/benchmarks -k sampler --benchmark-enable --benchmark-json=now.json --benchmark-save-data
    diffbench compare baseline.json now.json
"""
import functools

import pytest
import torch

from bench.measure import synchronize
from bench.recipes import RECIPES
from bench.tasks import inpaint_masks, sketch_of
from methods import METHODS, OBJECTIVES, PerSampleRNG, UNet
from methods.classifier_guidance import NoiseAwareClassifier, log_prob_gradient

BATCH, STEPS, SIZE, CLASSES = 16, 10, 28, 10
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ROUNDS, WARMUP_ROUNDS = 10, 2


def random_denoiser(kind: str) -> torch.nn.Module:
    """The network of model kind `kind` at the mnist suites' size, random weights, seed 0."""
    recipe = RECIPES.get(kind)
    network = recipe.network.__class__(**{
        **recipe.network.__dict__, "image_size": SIZE, "image_channels": 1,
        "num_classes": CLASSES if recipe.network.num_classes else 0,
        "cond_channels": 1 if recipe.superres else 0})
    torch.manual_seed(0)
    return OBJECTIVES.get(recipe.objective).make_denoiser(UNet(network)).to(DEVICE).eval()


def conditioning(method, denoiser) -> dict | None:
    cond = {}
    if method.model and method.model.endswith("-cond"):
        cond.update(labels=torch.arange(BATCH, device=DEVICE) % CLASSES, null_label=CLASSES)
    if method.classifier:   # a random-weight classifier costs what a trained one does
        torch.manual_seed(0)
        classifier = NoiseAwareClassifier(1, CLASSES).to(DEVICE).eval().requires_grad_(False)
        cond.update(labels=torch.arange(BATCH, device=DEVICE) % CLASSES,
                    classifier_gradient=functools.partial(log_prob_gradient, classifier))
    images = torch.rand(BATCH, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    if method.task == "superres":
        cond["lowres"] = images.to(DEVICE)
    if method.task == "img2img":
        cond["source"] = sketch_of(images).to(DEVICE)
    if method.task == "inpaint":
        cond.update(source=images.to(DEVICE), mask=inpaint_masks("centre", (1, SIZE, SIZE), range(BATCH)).to(DEVICE))
    return cond or None


@pytest.mark.parametrize("name", list(METHODS))
def test_sampler_speed(benchmark, name):
    method = METHODS.get(name)
    denoiser = random_denoiser(method.model) if method.model else None
    cond = conditioning(method, denoiser)

    def setup():
        rng = PerSampleRNG(0, range(BATCH), DEVICE)
        return (rng.randn((1, SIZE, SIZE)),), {"rng": rng}

    def sample(latents, rng):
        out = method.sample(denoiser, latents, STEPS, rng=rng, cond=cond, **method.defaults)
        synchronize(DEVICE)     # the round ends when the device has finished, not when queued
        return out

    benchmark.extra_info.update(batch=BATCH, steps=STEPS, image_size=SIZE, device=str(DEVICE))
    out = benchmark.pedantic(sample, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)
    assert out.shape == (BATCH, 1, SIZE, SIZE) and torch.isfinite(out).all()
