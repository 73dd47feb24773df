"""FID of real held-out images against a suite's reference statistics: the floor a sampler can
reach at that sample count (FID is biased upwards at small N).

Usage: python scripts/real_fid.py [SUITE]   (default: quick)
"""
import sys

from bench.config import load_suite
from bench.data.datasets import load_dataset
from bench.data.quantize import to_uint8
from bench.quality.metrics import features_of, fid_statistics, load_extractor, reference_statistics
from bench.quality.statistics import frechet_distance


def main(suite: str = "quick") -> None:
    config = load_suite(suite)
    extractor = load_extractor(config.feature_extractor, config.dataset,
                               config.inception_weights or None)
    reference, count = reference_statistics(extractor, config.dataset, config.reference_split)
    held_out = "test" if config.reference_split == "train" else "train"
    images, _ = load_dataset(config.dataset).split(held_out)
    for n in sorted({config.n_samples, len(images)}):
        stats = fid_statistics(features_of(extractor, to_uint8(images[:n])))
        print(f"{config.dataset} {held_out}[:{n}] vs {config.reference_split} ({count}): "
              f"FID {frechet_distance(reference, stats):.3f} ({extractor.name})")


if __name__ == "__main__":
    main(*sys.argv[1:])
