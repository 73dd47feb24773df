import os
import textwrap
from pathlib import Path

import pytest
import torch

from tests.helpers import TINY_SUITE, GaussianDenoiser


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Every test shares one throw-away model/statistics cache, never the user's."""
    path = tmp_path_factory.mktemp("diffbench-cache")
    old = os.environ.get("DIFFBENCH_CACHE")
    os.environ["DIFFBENCH_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("DIFFBENCH_CACHE", None)
    else:
        os.environ["DIFFBENCH_CACHE"] = old


@pytest.fixture
def write_suite(tmp_path):
    """write_suite(text, name="tiny") -> path of a suite TOML file in a temporary folder."""
    def write(text: str = TINY_SUITE, name: str = "tiny") -> Path:
        path = tmp_path / "suites" / f"{name}.toml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path
    return write


@pytest.fixture
def gaussian_denoiser():
    return GaussianDenoiser()


def pytest_collection_modifyitems(config, items):
    """`gpu` tests are skipped, not failed, where CUDA is absent (e.g. `pytest -m gpu` on a CPU)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_benchmark_update_machine_info(config, machine_info):
    """GPU, CUDA, driver and torch in pytest-benchmark's machine info, so that `diffbench compare`
    can tell timings from different accelerators apart."""
    machine_info["torch"] = torch.__version__
    machine_info["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        machine_info["gpu_name"] = props.name
        machine_info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        machine_info["cudnn"] = torch.backends.cudnn.version()
        machine_info["gpu_driver"] = nvidia_driver_version()


def nvidia_driver_version() -> str | None:
    import shutil
    import subprocess
    if not shutil.which("nvidia-smi"):
        return None
    done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=30)
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None
