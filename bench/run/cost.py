"""Cost measurement: NFE by wrapping the denoiser, wall-clock rounds, peak memory."""
import ctypes
import ctypes.util
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from methods.denoisers import inherit_sigma_range


class CountingDenoiser(torch.nn.Module):
    """Wraps a Denoiser and counts its calls and its per-sample evaluations (a batched call on
    2B rows, as classifier-free guidance makes, is two evaluations for each of B samples).
    Keeps the first call's arguments, so a bare forward can be timed on exactly that input, and
    on the CPU (where calls are synchronous) the seconds spent inside the denoiser."""

    def __init__(self, denoiser: torch.nn.Module):
        super().__init__()
        self.inner = denoiser
        self.calls = self.evaluations = 0
        self.first_call = None
        self.seconds_inside = 0.0
        self.gradient: CountingGradient | None = None   # the same batch's guidance gradient, if any
        inherit_sigma_range(self, denoiser)

    def forward(self, x, sigma, cond=None):
        if self.first_call is None:
            self.first_call = (x, sigma, cond)
        self.calls += 1
        self.evaluations += x.shape[0]
        start = time.perf_counter()
        out = self.inner(x, sigma, cond)
        self.seconds_inside += time.perf_counter() - start
        return out

    def nfe(self, batch_size: int) -> float:
        """Network evaluations per sample."""
        return self.evaluations / batch_size


class CountingGradient:
    """Wraps a guidance gradient `gradient(x, sigma, labels)` (a classifier's forward and
    backward pass) and counts its per-sample evaluations and, on the CPU, where calls are
    synchronous, the seconds spent in it: kept apart from the denoiser's NFE and seconds."""

    def __init__(self, gradient):
        self.gradient = gradient
        self.evaluations, self.seconds_inside = 0, 0.0

    def __call__(self, x, sigma, labels):
        self.evaluations += x.shape[0]
        start = time.perf_counter()
        out = self.gradient(x, sigma, labels)
        self.seconds_inside += time.perf_counter() - start
        return out


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Times a region: CUDA events on a GPU, perf_counter on the CPU; device synchronised."""

    def __init__(self, device: torch.device):
        self.device, self.seconds = device, None

    def __enter__(self):
        synchronize(self.device)
        if self.device.type == "cuda":
            self._start, self._end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            self._start.record()
        else:
            self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self._end.record()
            self._end.synchronize()
            self.seconds = self._start.elapsed_time(self._end) / 1000
        else:
            self.seconds = time.perf_counter() - self._start


@dataclasses.dataclass(frozen=True)
class TimingSummary:
    median: float
    iqr: float
    rounds: tuple[float, ...]

    @classmethod
    def of(cls, rounds: list[float]) -> "TimingSummary | None":
        if not rounds:
            return None
        if len(rounds) == 1:
            return cls(rounds[0], 0.0, tuple(rounds))
        q1, _, q3 = statistics.quantiles(rounds, n=4, method="inclusive")
        return cls(statistics.median(rounds), q3 - q1, tuple(rounds))


_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


class PeakMemory:
    """Peak memory over a region. CUDA: peak allocated and reserved since a reset of the peak
    statistics. CPU: the process's peak resident set (VmHWM), after handing freed heap memory
    back to the OS (glibc malloc_trim, else a new allocation reuses already-resident pages and
    the region's peak does not see it) and resetting the kernel's high-water mark through
    /proc/self/clear_refs (Linux); `kind` names which one it is."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind, self.peak_bytes, self.reserved_bytes = None, None, None

    def __enter__(self):
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "cuda_peak_allocated"
        else:
            _return_free_heap_to_os()
            self.kind = "cpu_peak_rss" if _reset_rss_high_water_mark() else "cpu_peak_rss_process"
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
            self.reserved_bytes = torch.cuda.max_memory_reserved(self.device)
        else:
            self.peak_bytes = _read_rss_high_water_mark()


def _return_free_heap_to_os() -> None:
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass   # not glibc: the peak may miss allocations served from freed pages


def _reset_rss_high_water_mark() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _read_rss_high_water_mark() -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def compiled_graphs() -> int:
    """Graphs torch.compile has built so far in this process (0 when it never ran)."""
    from torch._dynamo.utils import counters
    return counters["stats"]["unique_graphs"]


class CompileGuard:
    """Fails a timed region inside which torch.compile built a graph: compilation belongs in
    the warm-up, never in a measurement."""

    def __enter__(self):
        self.before = compiled_graphs()
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None and compiled_graphs() != self.before:
            raise RuntimeError("torch.compile compiled inside a timed region (a new input shape "
                               "or a recompile): raise warmup_batches or keep batch shapes fixed")


def median_forward_seconds(denoiser, x, sigma, cond, rounds: int = 10, warmup: int = 2) -> float:
    """The bare denoiser's forward time on one batch: median of `rounds` after `warmup` calls."""
    seconds = []
    with torch.no_grad():
        for number in range(warmup + rounds):
            with Stopwatch(x.device) as watch:
                denoiser(x, sigma, cond)
            if number >= warmup:
                seconds.append(watch.seconds)
    return statistics.median(seconds)
