"""The cosine training schedule for discrete-time models (Nichol & Dhariwal 2021): the
objective noises on the cosine levels, its denoiser carries them, and a recipe trains and
samples with it."""
import pytest
import torch

from methods.ddpm import (NUM_TRAIN_STEPS, cosine_eps_loss, ddpm_eps_loss, discrete_alphas_cumprod,
                          linear_alphas_cumprod, make_cosine_eps_denoiser)
from bench.store import ResultStore
from tests.helpers import run_suite_text


class TrueNoise(torch.nn.Module):
    """Predicts the exact noise of x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps for a known x0
    under schedule `alphas_cumprod`: the loss is 0 only on that schedule."""

    def __init__(self, x0, alphas_cumprod):
        super().__init__()
        self.x0, self.abar = x0, alphas_cumprod.float()

    def forward(self, x_t, t, class_labels=None, cond_image=None):
        abar = self.abar[t.long()].reshape(-1, 1, 1, 1)
        return (x_t - abar.sqrt() * self.x0) / (1 - abar).sqrt()


@pytest.mark.parametrize("loss, schedule, other", [
    (cosine_eps_loss, "squaredcos_cap_v2", "linear"), (ddpm_eps_loss, "linear", "squaredcos_cap_v2")])
def test_each_objective_noises_on_its_own_schedule(loss, schedule, other):
    x0 = torch.rand(16, 1, 8, 8) * 2 - 1
    exact = loss(TrueNoise(x0, discrete_alphas_cumprod(schedule)), x0, torch.Generator().manual_seed(0))
    wrong = loss(TrueNoise(x0, discrete_alphas_cumprod(other)), x0, torch.Generator().manual_seed(0))
    assert float(exact) < 1e-6 < float(wrong)


def test_the_cosine_denoiser_carries_the_cosine_levels():
    denoiser = make_cosine_eps_denoiser(torch.nn.Identity())
    abar = discrete_alphas_cumprod("squaredcos_cap_v2")
    expected = ((1 - abar) / abar).sqrt()
    assert len(denoiser.sigmas) == NUM_TRAIN_STEPS
    torch.testing.assert_close(denoiser.sigmas.double(), expected.to(denoiser.sigmas.device).double(), rtol=1e-6, atol=0)
    assert not torch.allclose(abar, linear_alphas_cumprod().double())


SUITE = """
[suite]
description = "cosine-schedule eps model"
dataset = "digits8"
n_samples = 16
batch_size = 8

[models.eps]
recipe = "eps-cosine-digits8"
steps = 10
base_channels = 8

[[cells]]
method = "ddim"
steps = [4]
"""


def test_a_cosine_recipe_trains_and_samples(tmp_path):
    results = run_suite_text(tmp_path, SUITE, "cosine")
    (row,) = ResultStore(results, "cosine").read()[0]
    assert row["status"] == "ok", row["message"]
    assert row["model"]["recipe"] == "eps-cosine-digits8" and row["nfe"] == 4
