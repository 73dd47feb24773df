"""The same mnist cells scored twice: Inception FID (torch-fidelity's inception-v3-compat, the
weights resolved as bench/quality/inception.py says) next to LeNet-feature FID, with the same samples
(same seeds), sample count and reference (the 1,000 test digits). Results go to
results/inception-vs-lenet-*.

Usage: python scripts/inception_vs_lenet.py [N]   (default 500)
"""
import sys

from bench.paths import REPO_ROOT
from bench.run.runner import run_suite_text
from bench.store import latest_per_cell

SUITE = """
[suite]
description = "mnist cells under the {extractor} extractor"
dataset = "mnist5k"
n_samples = {n}
batch_size = 100
reference_split = "test"
feature_extractor = "{extractor}"
[models.flow]
recipe = "flow"
[models.eps]
recipe = "eps"
[[cells]]
method = "flow-heun"
steps = [10]
[[cells]]
method = "ddim"
steps = [20]
"""


def main(n: int = 500) -> None:
    folder = REPO_ROOT / "results"
    scores = {}
    for extractor in ("lenet", "inception"):
        name = f"inception-vs-lenet-{extractor}"
        rows = run_suite_text(SUITE.format(n=n, extractor=extractor), name, folder, folder)
        for row in latest_per_cell(rows):
            fid = row["metrics"]["fid"]
            scores.setdefault(row["label"] + f" NFE {row['nfe']}", {})[extractor] = (
                fid["value"], fid["uncertainty"]["value"])
    print(f"| cell | LeNet FID ({n} samples) | Inception FID ({n} samples) |\n|---|---|---|")
    for label, by in scores.items():
        print(f"| {label} | " + " | ".join(f"{by[e][0]:.2f} ± {by[e][1]:.2f}" for e in ("lenet", "inception")) + " |")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
