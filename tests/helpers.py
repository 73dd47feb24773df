"""What several test modules share: the tiny suite, a suite runner for module fixtures and the
exact denoiser of a Gaussian. (Fixtures stay in conftest.py.)"""
from pathlib import Path

import torch

from bench.run.runner import run_suite_text as run_suite_file
from methods.ddpm import linear_alphas_cumprod

TINY_SUITE = """
[suite]
description = "tiny test suite"
dataset = "digits8"
n_samples = 24
batch_size = 8
grid_size = 16

[models.eps]
recipe = "eps-digits8"
steps = 20
base_channels = 8
checkpoint_every = 10

[[cells]]
method = "ddim"
steps = [2, 3]

[[cells]]
method = "ddpm"
steps = [2, 4]
"""



# A tiny EDM model on digits8 (20 training steps), for suites of EDM-model methods.
TINY_EDM_MODEL = """
[models.edm]
recipe = "edm"
steps = 20
base_channels = 8
channel_mult = [1, 2]
"""


def run_suite_text(directory: Path, text: str, name: str = "tiny") -> Path:
    """Run the suite `text` with its results under `directory`; returns the results folder.
    For module-scoped fixtures that share one run between tests."""
    run_suite_file(text, name, directory / "suites", directory / "results")
    return directory / "results"


class GaussianDenoiser(torch.nn.Module):
    """The exact denoiser of data ~ N(mu, s^2 I): D(x, sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu).

    Carries the DDPM training sigmas so the discrete-time samplers can respace them.
    """

    def __init__(self, mu: float = 0.3, s: float = 0.5):
        super().__init__()
        self.mu, self.s = mu, s
        abar = linear_alphas_cumprod()
        self.sigmas = ((1 - abar) / abar).sqrt().float()
        self.sigma_min, self.sigma_max, self.sigma_data = float(self.sigmas[0]), float(self.sigmas[-1]), s

    def forward(self, x, sigma, cond=None):
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
        return self.mu + self.s ** 2 / (self.s ** 2 + sigma ** 2) * (x - self.mu)
