"""Flow matching samplers with the exact velocity of the Gaussian path."""
import torch

from methods.flow import flow_schedule
from tests.helpers import GaussianDenoiser
from tests.test_samplers import run


def wide_gaussian():
    """The exact Gaussian denoiser, usable up to t = 1 - 1e-4 (sigma = 1e4)."""
    denoiser = GaussianDenoiser()
    denoiser.sigma_min, denoiser.sigma_max = 1e-4, 1e4
    return denoiser


def test_flow_schedule_is_uniform_in_t_and_ends_at_zero():
    sigmas = flow_schedule(wide_gaussian(), 4)
    t = sigmas / (1 + sigmas)
    assert len(sigmas) == 5 and sigmas[-1] == 0
    torch.testing.assert_close(t.diff(), torch.full((4,), -float(t[0]) / 4, dtype=t.dtype))


def std_error(name, steps):
    denoiser = wide_gaussian()
    x = run(name, denoiser, range(2000), steps=steps)
    return abs(float(x.std()) - denoiser.s), abs(float(x.mean()) - denoiser.mu)


def test_exact_velocity_transports_noise_to_the_gaussian():
    for name, steps in (("flow-euler", 256), ("flow-heun", 64)):
        std_err, mean_err = std_error(name, steps)
        assert std_err < 0.01 and mean_err < 0.01, name


def test_heun_converges_at_second_order_and_euler_at_first():
    heun = [std_error("flow-heun", n)[0] for n in (8, 16)]
    euler = [std_error("flow-euler", n)[0] for n in (15, 31)]
    assert heun[0] / heun[1] > 3 and 1.5 < euler[0] / euler[1] < 3
    assert heun[1] < euler[1]        # equal NFE (31)
