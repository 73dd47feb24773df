"""Peak memory of one cell at two sample counts: scoring streams features into running moments,
so a cell's peak should not grow with n_samples. Runs ddim-10 on the mnist eps model (trained
once into the cache) with FID, then with FID + KID + precision/recall, which must keep every
feature. Results go to a temporary folder.

Usage: python scripts/memory_vs_n.py [N_SMALL N_LARGE]   (default 1000 10000)
"""
import sys
import tempfile
from pathlib import Path

from bench.config import load_suite
from bench.runner import run_suite
from bench.store import ResultStore

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
    path = folder / f"{name}.toml"
    path.write_text(SUITE.format(n=n, metrics=str(metrics).replace("'", '"')))
    run_suite(load_suite(str(path)), folder / "results")
    rows, _ = ResultStore(folder / "results", name).read()
    return rows[-1]["memory"]["peak_bytes"] / 2**20


def main(small: int = 1000, large: int = 10000) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for metrics in (["fid"], ["fid", "kid", "precision", "recall"]):
            figures = {n: peak_mib(n, metrics, Path(folder)) for n in (small, large)}
            print(f"metrics {', '.join(metrics)}: " + ", ".join(
                f"{n} samples {mib:.0f} MiB" for n, mib in figures.items()), flush=True)


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
