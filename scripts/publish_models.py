"""Train (or find) the models and the LeNet extractor behind published suites and copy their
weights into results/published/models/, where every run looks before its cache.

Usage: python scripts/publish_models.py quick mnist-sr mnist photos-sr
Trains into $DIFFBENCH_CACHE first (resumable: run it again after an interruption), then copies
model.safetensors and its sidecar; training states stay in the cache. Rows made with other
weights no longer match: re-run the suites with --results-dir results/published afterwards.
"""
import argparse
import logging
import shutil
from pathlib import Path

from bench.config import load_suite
from bench.models.recipes import ensure_trained, suite_recipes
from bench.paths import published_models_dir
from bench.quality.metrics import load_extractor


def publish(weights) -> None:
    """Copy a weights file and its sidecar into the published folder (sidecar last)."""
    target = published_models_dir() / weights.parent.name
    if weights.parent == target:
        print(f"already published: {target}")
        return
    target.mkdir(parents=True, exist_ok=True)
    for name in (weights.name, weights.name + ".json"):
        shutil.copyfile(weights.parent / name, target / name)
    print(f"published {target}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suites", nargs="+")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for suite in args.suites:
        config = load_suite(suite)
        if config.feature_extractor == "lenet":
            extractor = load_extractor("lenet", config.dataset)
            publish(Path(extractor.info["weights_path"]))
        for kind, recipe in suite_recipes(config).items():
            publish(ensure_trained(recipe).path)


if __name__ == "__main__":
    main()
