"""Every built-in honours the contracts declared in methods/base.py that plugins code against."""
import inspect

import pytest

from methods import METHODS, OBJECTIVES, Denoiser, UNet, UNetConfig
from tests.helpers import GaussianDenoiser

TINY_NET = UNetConfig(image_size=8, base_channels=8, channel_mult=(1,), num_res_blocks=1)


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_every_objectives_denoiser_is_a_denoiser(objective):
    denoiser = OBJECTIVES.get(objective).make_denoiser(UNet(TINY_NET))
    assert isinstance(denoiser, Denoiser)
    assert 0 < denoiser.sigma_min < denoiser.sigma_max


def test_something_without_a_noise_range_is_not_a_denoiser():
    assert isinstance(GaussianDenoiser(), Denoiser) and not isinstance(UNet(TINY_NET), Denoiser)


@pytest.mark.parametrize("name", [name for name, m in METHODS.items() if m.sampler is not None])
def test_every_sampler_has_the_contracts_signature(name):
    parameters = inspect.signature(METHODS.get(name).sampler).parameters
    positional = [p.name for p in parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    keyword = {p.name: p.default for p in parameters.values() if p.kind is p.KEYWORD_ONLY}
    assert positional == ["denoiser", "x", "sigmas"]
    assert "rng" in keyword and keyword.get("cond", 0) is None and keyword.get("callback", 0) is None


def test_a_method_that_runs_its_own_loop_keeps_the_method_signature():
    """diffusers' schedulers replace schedule-then-sampler by their own loop (no sampler)."""
    from methods.base import Method
    from methods.diffusers_schedulers import DiffusersMethod
    assert inspect.signature(DiffusersMethod.sample) == inspect.signature(Method.sample)
    without_sampler = [m for _, m in METHODS.items() if m.sampler is None]
    assert without_sampler and all(isinstance(m, DiffusersMethod) for m in without_sampler)
