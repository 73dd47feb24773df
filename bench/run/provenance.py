"""Where a number came from: code version, libraries, device and numerics flags."""
import datetime
import platform
import subprocess

import torch
import torch_fidelity

from bench.paths import REPO_ROOT


def git_state() -> tuple[str | None, bool | None]:
    """HEAD and whether tracked code or config differs from it (results/ and reports/ are
    outputs, so regenerating them does not make a run "dirty")."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        changes = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                      ":(exclude)results", ":(exclude)reports")
        return git("rev-parse", "HEAD"), bool(changes)
    except (OSError, subprocess.SubprocessError):
        return None, None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def provenance(device: torch.device) -> dict:
    sha, dirty = git_state()
    return {
        "git_sha": sha, "git_dirty": dirty,
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "torch_fidelity": torch_fidelity.__version__,
        "python": platform.python_version(),
        "device": str(device), "device_name": device_name(device),
        # the vector instructions torch's CPU kernels use (AVX2, AVX512, ...): results agree
        # across kinds only to the last bits, timings differ more
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "num_threads": torch.get_num_threads(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
    }


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
