"""Training precision chosen by the machine: bf16 autocast only where the CPU runs bf16 natively.

On a CPU without native bf16 (an AVX2-only x86, say) autocast emulates it and a UNet training
step ran 9x slower than in fp32, so `precision = "auto"` asks torch's own capability queries
and falls back to a short timing probe only where they cannot tell.
"""
import contextlib
import dataclasses
import logging
import platform
import time
from typing import Callable

import torch

log = logging.getLogger("diffbench")

PRECISIONS = ("auto", "fp32", "bf16")
X86 = ("x86_64", "amd64", "i386", "i686")
PROBE_MARGIN = 1.1   # bf16 must beat fp32 by 10 % in the probe to be chosen


@dataclasses.dataclass(frozen=True)
class Precision:
    name: str     # "fp32" or "bf16"
    reason: str


def cpu_bf16_support() -> str:
    """"native", "emulated" or "unknown", from torch's CPU capability queries."""
    try:
        if platform.machine().lower() in X86:
            if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
                return "native"
            # AVX-512 without its bf16 extension converts in vectors: speed varies, so measure.
            return "unknown" if torch.cpu._is_avx512_supported() else "emulated"
        return "native" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "emulated"
    except (AttributeError, RuntimeError):   # an older torch without these queries
        return "unknown"


def resolve_precision(requested: str, probe: Callable[[bool], float] | None = None) -> Precision:
    """The precision training runs in. `probe(bf16)` times a few training steps (seconds); it
    is called only when the capability queries cannot tell."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return Precision(requested, "set in the recipe")
    support = cpu_bf16_support()
    capability = torch.backends.cpu.get_cpu_capability()
    if support == "native":
        return Precision("bf16", f"the CPU runs bf16 natively ({capability}, avx512_bf16 or AMX)")
    if support == "emulated":
        return Precision("fp32", f"the CPU has no native bf16 ({capability}): bf16 autocast "
                                 "would be emulated and several times slower")
    if probe is None:
        return Precision("fp32", f"bf16 support of this CPU ({capability}) is unknown and "
                                 "there was nothing to time")
    fp32_s, bf16_s = probe(False), probe(True)
    faster = fp32_s > PROBE_MARGIN * bf16_s
    return Precision("bf16" if faster else "fp32",
                     f"timing probe on this CPU ({capability}): a training step took "
                     f"{fp32_s * 1e3:.0f} ms in fp32 and {bf16_s * 1e3:.0f} ms under bf16 autocast")


def autocast(precision: str):
    """The forward pass's autocast context for a resolved precision."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def step_timer(step: Callable[[], None], repeats: int = 2) -> Callable[[bool], float]:
    """A probe for `resolve_precision`: the fastest of `repeats` timed calls of `step` (after
    one warm-up), under bf16 autocast or not. `step` must leave no trace on the real run."""
    def probe(bf16: bool) -> float:
        times = []
        for index in range(repeats + 1):
            began = time.perf_counter()
            with autocast("bf16" if bf16 else "fp32"):
                step()
            if index:
                times.append(time.perf_counter() - began)
        return min(times)
    return probe
