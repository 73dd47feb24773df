"""`diffbench score`: samples made elsewhere, scored with the protocol a run uses.

The samples are a folder of PNG/JPEG images or an .npz of pixels (read as a dataset is, every
image in file order standing for seeds 0..N-1). The reference is a dataset (registered name,
folder or .npz; its `--ref-split`) or FID statistics saved elsewhere (an .npz with mu and sigma).
Features, statistics, FID's seed-block uncertainty and the protocol fingerprint are the runner's
own (`bench.scoring.CellScorer`, `bench.metrics`), so a number printed here is comparable with
a row of a suite with the same fingerprint.
"""
import dataclasses
from pathlib import Path

import numpy as np

from bench.datasets import load_dataset
from bench.errors import DiffbenchError
from bench.metrics import (METRICS, check_metrics_available, fid_protocol, load_extractor,
                           protocol_fingerprint, reference_features, reference_statistics,
                           statistics_file_protocol)
from bench.quantize import to_uint8
from bench.scoring import CellScorer, Reference


# The metrics that need nothing but the samples and the reference.
SCORABLE = ("fid", "fid_infinity", "kid", "precision", "recall", "isc")


@dataclasses.dataclass(frozen=True)
class Scored:
    samples: str
    n_samples: int
    scores: dict            # metric -> (value, uncertainty or None)
    protocol: dict
    fingerprint: str


def is_statistics_file(spec: str) -> bool:
    """An .npz holding `mu` and `sigma` (not pixels) is reference statistics."""
    path = Path(spec)
    if path.suffix != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            return {"mu", "sigma"} <= set(data.files)
    except (OSError, ValueError, EOFError):
        return False


def score_samples(samples_spec: str, ref_spec: str, metrics=("fid",), feature_extractor="lenet",
                  ref_split: str = "train", inception_weights: str | None = None,
                  batch_size: int = 500) -> Scored:
    metrics = tuple(sorted({"fid", *metrics}))
    for name in metrics:
        if name not in SCORABLE:
            raise DiffbenchError(f"metric {name!r} cannot score samples made elsewhere (it needs "
                                 f"targets or requested classes); valid: {', '.join(SCORABLE)}")
    from_file = is_statistics_file(ref_spec)
    if from_file and feature_extractor == "lenet":
        raise DiffbenchError(f"--ref {ref_spec!r} is a statistics file, but LeNet features are "
                             "trained on a dataset: give --ref a dataset or use --feature-extractor inception")
    needs_features = any(METRICS.get(m).needs == "features" for m in metrics)
    if from_file and needs_features:
        raise DiffbenchError(f"{', '.join(m for m in metrics if METRICS.get(m).needs == 'features')} "
                             f"need the reference's features, which --ref {ref_spec!r} (statistics) "
                             "does not hold: give a dataset, or score fid only")
    samples = load_dataset(samples_spec)
    pixels = to_uint8(samples.images)
    extractor = load_extractor(feature_extractor, samples_spec if from_file else ref_spec, inception_weights)
    check_metrics_available(metrics, extractor, "--metrics")
    if not from_file:
        check_shapes(samples.shape, load_dataset(ref_spec).shape, samples_spec, ref_spec)
    n_samples = len(pixels)
    if from_file:
        stats, count, protocol = statistics_file_protocol(extractor, ref_spec, pixels, n_samples,
                                                          metrics, "--ref")
        reference = Reference(stats, count or 0)
    else:
        stats, count = reference_statistics(extractor, ref_spec, ref_split)
        reference = Reference(stats, count, reference_features(extractor, ref_spec, ref_split)
                              if needs_features else None)
        protocol = fid_protocol(extractor, ref_spec, ref_split, stats, count, n_samples, metrics)
    scorer = CellScorer(extractor, reference, metrics, n_samples)
    for start in range(0, n_samples, batch_size):
        scorer.add(pixels[start:start + batch_size])
    return Scored(samples.name, n_samples, scorer.finish(), protocol, protocol_fingerprint(protocol))


def check_shapes(samples_shape, reference_shape, samples_spec, ref_spec) -> None:
    if tuple(samples_shape) != tuple(reference_shape):
        raise DiffbenchError(f"samples {samples_spec!r} are {'x'.join(map(str, samples_shape))} (C x H x W) "
                             f"but --ref {ref_spec!r} is {'x'.join(map(str, reference_shape))}: "
                             "score samples of the reference's size and channels")


def summary(scored: Scored) -> str:
    parts = []
    for name, (value, uncertainty) in scored.scores.items():
        error = uncertainty and uncertainty.get("value")
        parts.append(f"{name}={value:.4g}" + (f" ± {error:.2g}" if error is not None else ""))
    return (f"{scored.samples}: {' '.join(parts)} (n={scored.n_samples}, "
            f"extractor {scored.protocol['extractor']}, protocol {scored.fingerprint})")
