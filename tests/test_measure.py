import time

import pytest
import torch

from bench.run.cost import CountingDenoiser, PeakMemory, Stopwatch, TimingSummary


def test_timing_summary_reports_median_and_iqr():
    summary = TimingSummary.of([1.0, 2.0, 3.0, 4.0, 100.0])
    assert summary.median == 3.0 and summary.iqr == 2.0 and len(summary.rounds) == 5


def test_stopwatch_measures_a_sleep_on_cpu():
    with Stopwatch(torch.device("cpu")) as watch:
        time.sleep(0.05)
    assert 0.04 < watch.seconds < 1.0


def test_cpu_peak_memory_sees_a_large_allocation():
    with PeakMemory(torch.device("cpu")) as small:
        pass
    with PeakMemory(torch.device("cpu")) as large:
        block = torch.ones(64 * 2**20 // 4)   # 64 MiB, touched
        del block
    assert large.kind.startswith("cpu_peak_rss")
    assert large.peak_bytes - small.peak_bytes > 32 * 2**20


def test_counting_denoiser_keeps_the_sigma_range():
    class Inner(torch.nn.Module):
        sigma_min, sigma_max, sigma_data = 0.1, 10.0, 0.5

        def forward(self, x, sigma, cond=None):
            return x

    counter = CountingDenoiser(Inner())
    counter(torch.zeros(1), 1.0)
    counter(torch.zeros(1), 1.0)
    assert counter.calls == 2 and (counter.sigma_min, counter.sigma_max) == (0.1, 10.0)


@pytest.mark.gpu
def test_cuda_stopwatch_and_peak_memory():
    device = torch.device("cuda")
    with PeakMemory(device) as memory, Stopwatch(device) as watch:
        x = torch.randn(1024, 1024, device=device)
        (x @ x).sum().item()
    assert watch.seconds > 0 and memory.kind == "cuda_peak_allocated"
    assert memory.peak_bytes >= 4 * 2**20 and memory.reserved_bytes >= memory.peak_bytes


@pytest.mark.gpu
def test_per_sample_noise_on_cuda_is_batch_independent():
    from methods import PerSampleRNG
    full = PerSampleRNG(0, range(8), "cuda").randn((3,))
    single = PerSampleRNG(0, [5], "cuda").randn((3,))
    torch.testing.assert_close(full[5:6], single)
