import pytest
import torch

from bench.run.cost import CompileGuard, CountingDenoiser, Stopwatch, median_forward_seconds
from bench.run.profiling import ProfiledDenoiser, profile_sampling
from methods import METHODS, PerSampleRNG
from tests.helpers import GaussianDenoiser


class ConvDenoiser(GaussianDenoiser):
    """The Gaussian denoiser plus a convolution whose output is discarded: FLOPs to count."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 64, 3, padding=1)

    def forward(self, x, sigma, cond=None):
        self.conv(x)
        return super().forward(x, sigma, cond)


@pytest.fixture
def sampled():
    """One profiled DDPM batch of 16 samples at 20 steps, and an independent wall-clock of it."""
    denoiser, method = ConvDenoiser(), METHODS.get("ddpm")
    rng_args = (0, range(16))

    def run(wrap=lambda d: d):
        rng = PerSampleRNG(*rng_args)
        return method.sample(CountingDenoiser(wrap(denoiser)), rng.randn((1, 16, 16)), 20, rng=rng)

    run()
    with Stopwatch(torch.device("cpu")) as watch:
        run()
    return profile_sampling(lambda: run(ProfiledDenoiser), torch.device("cpu"), 16), watch.seconds, denoiser


def test_profiler_breakdown_sums_to_the_measured_total(sampled):
    parts, wall, _ = sampled
    assert min(parts["denoiser_s"], parts["sampler_arithmetic_s"], parts["other_s"]) >= 0
    assert parts["denoiser_s"] + parts["sampler_arithmetic_s"] + parts["other_s"] == pytest.approx(parts["profiled_s"])
    assert parts["profiled_s"] == pytest.approx(parts["wall_s"], rel=0.1)


def test_profiler_counts_one_range_per_denoiser_call(sampled):
    assert sampled[0]["denoiser_calls"] == 20


def test_profiler_flops_match_torchs_flop_counter(sampled):
    from torch.utils.flop_counter import FlopCounterMode
    parts, _, denoiser = sampled
    with FlopCounterMode(display=False) as counter:
        denoiser.conv(torch.zeros(1, 1, 16, 16))
    assert parts["flops_per_image"] == pytest.approx(20 * counter.get_total_flops(), rel=0.01)
    assert parts["denoiser_gflops_per_s"] > 0


def test_bare_forward_time_is_the_median_of_timed_calls():
    calls = []

    def denoiser(x, sigma, cond):
        calls.append(1)
        return x
    assert median_forward_seconds(denoiser, torch.zeros(2), 1.0, None, rounds=3, warmup=2) >= 0
    assert len(calls) == 5


def test_a_compile_inside_a_timed_region_fails_it():
    compiled = torch.compile(lambda x: x * 2 + 1, backend="eager")
    compiled(torch.ones(3))                       # the warm-up builds the graph
    with CompileGuard():
        compiled(torch.ones(3))                   # same shape: no new graph, fine
    with pytest.raises(RuntimeError, match="compiled inside a timed region"):
        with CompileGuard():
            compiled(torch.ones(3, 4, 5))         # a new shape recompiles
