"""Where a sampler's time goes, from torch.profiler: inside the denoiser, in the sampler's own
tensor arithmetic (ops outside any denoiser call), and the rest (Python, generator bookkeeping).
FLOPs come from the profiler's `with_flops` and give the denoiser's achieved GFLOP/s.

Profiling perturbs timing, so it is an option (suite key `profile`), run on one extra batch
after the timed ones. On CUDA the denoiser call is synchronised on both sides so that its CPU
range covers its kernels.
"""
import torch
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from bench.run.cost import Stopwatch, synchronize
from methods.denoisers import inherit_sigma_range

SAMPLER_RANGE, DENOISER_RANGE = "diffbench.sampler", "diffbench.denoiser"


class ProfiledDenoiser(torch.nn.Module):
    """Marks every denoiser call as a profiler range."""

    def __init__(self, denoiser: torch.nn.Module):
        super().__init__()
        self.inner = denoiser
        inherit_sigma_range(self, denoiser)

    def forward(self, x, sigma, cond=None):
        synchronize(x.device)
        with record_function(DENOISER_RANGE):
            out = self.inner(x, sigma, cond)
            synchronize(x.device)
        return out


def _ancestors(event):
    parent = event.cpu_parent
    while parent is not None:
        yield parent
        parent = parent.cpu_parent


def _denoiser_flops(events) -> float:
    """FLOPs of ops inside denoiser calls, each counted once (an op that reports FLOPs may call
    another that does too: aten::conv2d -> aten::convolution)."""
    return sum(e.flops for e in events if e.flops
               and any(a.name == DENOISER_RANGE for a in _ancestors(e))
               and not any(a.flops for a in _ancestors(e)))


def breakdown(events, wall_seconds: float, n_images: int) -> dict:
    """Seconds per part of one profiled batch, and FLOPs per image."""
    sampler = [e for e in events if e.name == SAMPLER_RANGE]
    calls = [e for e in events if e.name == DENOISER_RANGE]
    total = sum(e.cpu_time_total for e in sampler) / 1e6
    denoiser = sum(e.cpu_time_total for e in calls) / 1e6
    own_ops = [e for e in events if e.cpu_parent is not None and e.cpu_parent.name == SAMPLER_RANGE
               and e.name != DENOISER_RANGE]
    arithmetic = sum(e.cpu_time_total for e in own_ops) / 1e6
    flops = _denoiser_flops(events)
    return {"wall_s": wall_seconds, "profiled_s": total, "denoiser_s": denoiser,
            "sampler_arithmetic_s": arithmetic, "other_s": total - denoiser - arithmetic,
            "denoiser_calls": len(calls), "flops_per_image": flops / n_images,
            "denoiser_gflops_per_s": flops / denoiser / 1e9 if denoiser > 0 else None}


def profile_sampling(sample, device: torch.device, n_images: int) -> dict:
    """Runs `sample()` (one batch, denoiser already wrapped in ProfiledDenoiser) under the
    profiler and returns its breakdown."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, with_flops=True) as profiler, Stopwatch(device) as watch:
        with record_function(SAMPLER_RANGE):
            sample()
    return breakdown(profiler.events(), watch.seconds, n_images)
