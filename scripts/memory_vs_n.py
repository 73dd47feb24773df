"""Peak memory of one cell at two sample counts: scoring streams features into running moments,
so a cell's peak should not grow with n_samples. Runs ddim-10 on the mnist eps model (trained
once into the cache) with FID, each sample count in a fresh process (a process's resident set
carries whatever earlier work left behind). Results go to a temporary folder.

Usage: python scripts/memory_vs_n.py [N_SMALL N_LARGE]   (default 1000 10000)
       python scripts/memory_vs_n.py --one N      (one count, in this process)
"""
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.run.runner import run_suite_text

SUITE = """
[suite]
dataset = "mnist5k"
n_samples = {n}
batch_size = 100
feature_extractor = "lenet"
metrics = {metrics}
[models.eps]
recipe = "eps"
[[cells]]
method = "ddim"
steps = [10]
"""


def peak_mib(n: int, metrics: list[str], folder: Path) -> float:
    name = f"memory-{n}-{len(metrics)}"
    rows = run_suite_text(SUITE.format(n=n, metrics=str(metrics).replace("'", '"')), name, folder,
                          folder / "results")
    return rows[-1]["memory"]["peak_bytes"] / 2**20


def main(small: int = 1000, large: int = 10000) -> None:
    runs = {n: subprocess.Popen([sys.executable, __file__, "--one", str(n)], stdout=subprocess.PIPE,
                                text=True) for n in (small, large)}
    for n, run in runs.items():
        print(f"ddim-10, FID only: {n} samples, peak {run.communicate()[0].strip()} MiB", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        with tempfile.TemporaryDirectory() as folder:
            print(f"{peak_mib(int(sys.argv[2]), ['fid'], Path(folder)):.0f}")
    else:
        main(*map(int, sys.argv[1:]))
