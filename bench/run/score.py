"""`diffbench score`: samples made elsewhere, scored with the protocol a run uses.

The samples are a folder of PNG/JPEG images or an .npz of pixels (read as a dataset is, every
image in file order standing for seeds 0..N-1). The reference is a dataset (registered name,
folder or .npz; its `--ref-split`) or FID statistics saved elsewhere (an .npz with mu and sigma).
Features, statistics, FID's seed-block uncertainty and the protocol fingerprint are the runner's
own (`bench.quality.scoring.CellScorer`, `bench.quality.metrics`), so a number printed here is comparable with
a row of a suite with the same fingerprint.

`--append SUITE` stores the scores as a row of results/<SUITE>/ (source "score"): ranked with
the suite's rows that share its protocol fingerprint, with NFE, time and memory n/a, since
diffbench did not make the samples. Its cell is the samples' content and the protocol, so
scoring the same samples again replaces the row in reports (the newest row of a cell is shown).
"""
import dataclasses
import hashlib
import types
from pathlib import Path

import numpy as np
import torch

from bench.data.datasets import load_dataset
from bench.data.quantize import to_uint8
from bench.quality.metrics import (METRICS, check_metrics_available, load_extractor,
                                   protocol_fingerprint)
from bench.quality.scoring import CellScorer, file_reference, metric_records, split_reference
from bench.rows import SCORED, new_row
from bench.run.grids import save_grid
from bench.run.provenance import provenance, utc_now
from bench.store import ResultStore, canonical_json
from methods.errors import DiffbenchError

# The metrics that need nothing but the samples and the reference.
SCORABLE = ("fid", "fid_infinity", "fd", "kid", "cmmd", "cmmd_unbiased", "precision", "recall", "density", "coverage", "isc")


# What stands where a method does in a scored row.
SCORED_SAMPLES = types.SimpleNamespace(
    name="scored", version="1", family="external", task="generate",
    paper="samples made outside diffbench, scored by `diffbench score`")
GRID_SIZE = 64
MAX_LABEL = 80


@dataclasses.dataclass(frozen=True)
class Scored:
    samples: str
    samples_path: str
    samples_hash: str
    n_samples: int
    scores: dict            # metric -> (value, uncertainty or None)
    protocol: dict
    fingerprint: str
    reference: types.SimpleNamespace   # name and content_hash, as a row's dataset
    extractor: object
    grid: torch.Tensor      # the first samples, uint8
    batch_size: int


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
        reference, protocol = file_reference(extractor, ref_spec, pixels, n_samples, metrics, "--ref")
        named = types.SimpleNamespace(name=Path(ref_spec).name, content_hash=protocol[
            "reference"]["statistics_file_sha256"][:16])
    else:
        reference, protocol = split_reference(extractor, ref_spec, ref_split, n_samples, metrics)
        named = load_dataset(ref_spec)
    scorer = CellScorer(extractor, reference, metrics, n_samples)
    for start in range(0, n_samples, batch_size):
        scorer.add(pixels[start:start + batch_size])
    return Scored(samples.name, samples_spec, samples.content_hash, n_samples, scorer.finish(),
                  protocol, protocol_fingerprint(protocol),
                  types.SimpleNamespace(name=named.name, content_hash=named.content_hash),
                  extractor, pixels[:GRID_SIZE], batch_size)


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


def check_label(label: str) -> str:
    """A label reaches every report: printable (no control or bidi characters), short."""
    if not label.strip() or not label.isprintable() or len(label) > MAX_LABEL:
        raise DiffbenchError(f"--label {label!r}: give 1 to {MAX_LABEL} printable characters "
                             "(no control or bidirectional characters)")
    return label.strip()


def scored_row(scored: Scored, suite: str, label: str) -> dict:
    """The row `--append` stores: the scores, the protocol and where the samples came from;
    no model, NFE, time or memory (diffbench did not make the samples)."""
    identity = {"source": SCORED, "samples_sha256": scored.samples_hash,
                "n_samples": scored.n_samples, "protocol": scored.fingerprint}
    key = hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:20]
    extractor = scored.extractor
    row = new_row(
        suite=suite, cell_key=key, method=SCORED_SAMPLES, steps=0, hparams={}, label=label,
        model=None, num_parameters=0, dataset=scored.reference, n_samples=scored.n_samples,
        seed=0, batch_size=scored.batch_size, protocol=scored.protocol,
        protocol_fingerprint=scored.fingerprint,
        provenance={**provenance(torch.device("cpu")), "dataset_hash": scored.reference.content_hash,
                    "checkpoint_sha256": None, "extractor": extractor.name,
                    "extractor_weights_sha256": extractor.weights_sha256,
                    "extractor_test_accuracy": extractor.info.get("test_accuracy")},
        compiled=False, created_at=utc_now())
    row["metrics"] = metric_records(scored.scores)
    row["source"] = SCORED
    row["samples"] = {"path": scored.samples_path, "content_sha256": scored.samples_hash,
                      "count": scored.n_samples}
    return row


def append_scored(scored: Scored, results_root: Path, suite: str, label: str) -> tuple[dict, int]:
    """Store `scored` as a row of results/<suite>/ (its sample grid beside it); returns the
    row and how many stored rows share its protocol fingerprint."""
    store = ResultStore(results_root, suite)
    row = scored_row(scored, suite, label)
    with store.lock():
        stored, _ = store.read()
        grid = save_grid(scored.grid, store.directory / "samples" / f"{row['cell_key']}.png")
        row["samples_grid"] = str(grid.relative_to(store.directory))
        row = store.append(row)
    peers = sum(r["protocol_fingerprint"] == row["protocol_fingerprint"] for r in stored)
    return row, peers
