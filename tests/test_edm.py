"""EDM samplers against Karras et al. 2022 on the exact denoiser of a Gaussian."""
import pytest
import torch

from methods import METHODS
from methods.denoisers import EDMPrecond
from methods.edm import karras_sigmas
from tests.test_samplers import SHAPE, run


def test_karras_sigmas_follow_eq_5():
    sigmas = karras_sigmas(18, 0.002, 80.0, 7.0)
    assert len(sigmas) == 19 and sigmas[-1] == 0
    assert float(sigmas[0]) == pytest.approx(80.0) and float(sigmas[-2]) == pytest.approx(0.002)
    i = 5
    expected = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert float(sigmas[i]) == pytest.approx(expected, rel=1e-12)


def test_stochastic_with_zero_churn_equals_heun_exactly(gaussian_denoiser):
    heun = run("edm-heun", gaussian_denoiser, range(16), steps=18)
    churnless = run("edm-stochastic", gaussian_denoiser, range(16), steps=18, S_churn=0.0)
    torch.testing.assert_close(churnless, heun, rtol=0, atol=0)


def test_churn_changes_the_samples(gaussian_denoiser):
    heun = run("edm-heun", gaussian_denoiser, range(16), steps=18)
    churned = run("edm-stochastic", gaussian_denoiser, range(16), steps=18, S_churn=40.0)
    assert (heun - churned).abs().max() > 1e-3


def std_error(name, denoiser, steps, **hparams):
    x = run(name, denoiser, range(2000), steps=steps, **hparams)
    return abs(float(x.std()) - denoiser.s), abs(float(x.mean()) - denoiser.mu)


def test_heun_converges_at_second_order_and_euler_at_first(gaussian_denoiser):
    """Doubling the steps cuts Heun's error about 4x and Euler's (Euler-ancestral with eta = 0,
    the deterministic Euler ODE solver) about 2x; at NFE 63 Heun is the more accurate and lands
    within 0.01 of the data's std and mean."""
    heun = [std_error("edm-heun", gaussian_denoiser, n) for n in (16, 32)]
    euler = [std_error("edm-euler-ancestral", gaussian_denoiser, n, eta=0.0) for n in (31, 63)]
    assert heun[0][0] / heun[1][0] > 3 and 1.5 < euler[0][0] / euler[1][0] < 3
    assert heun[1][0] < euler[1][0] and heun[1][0] < 0.01 and heun[1][1] < 0.01


def test_edm_precond_is_exact_for_an_exact_network():
    """With F = (D_true - c_skip x) / c_out, the preconditioned denoiser returns D_true."""
    mu, s, sd = 0.3, 0.5, 0.5

    class Exact(torch.nn.Module):
        def forward(self, x_in, c_noise, class_labels=None, cond_image=None):
            sigma = (4 * c_noise).exp().reshape(-1, 1, 1, 1)
            x = x_in * (sigma ** 2 + sd ** 2).sqrt()
            d_true = mu + s ** 2 / (s ** 2 + sigma ** 2) * (x - mu)
            c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)
            c_out = sigma * sd / (sigma ** 2 + sd ** 2).sqrt()
            return (d_true - c_skip * x) / c_out

    x = torch.randn(4, *SHAPE)
    sigma = torch.tensor([0.01, 0.5, 3.0, 80.0])
    expected = mu + s ** 2 / (s ** 2 + sigma.reshape(-1, 1, 1, 1) ** 2) * (x - mu)
    torch.testing.assert_close(EDMPrecond(Exact())(x, sigma), expected, rtol=1e-5, atol=1e-5)


def test_edm_heun_default_has_18_steps_and_35_nfe():
    assert METHODS.get("edm-heun").expected_nfe(18) == 35
