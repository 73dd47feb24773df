"""A cell split by seed range (`diffbench run SUITE --split-samples K --part j`): part j of K
samples a contiguous range of the cell's batches and stores what each batch measured (its
features at full precision, per-image metrics, its share of the sample grid, NFE and timings)
in results/<suite>/parts/<cell key>/part-<j>-of-<K>.safetensors; the merge reads the K parts in
batch order and scores them once, as one process scoring every batch would. Sample i's noise
depends only on (seed, i), so the samples are the unsplit cell's, and so are its features, FID
and grid; only its timings (each part warms up on its own first batch) differ.

The files hold tensors and JSON metadata only (safetensors: nothing is unpickled).
"""
import json
import re
from pathlib import Path

import torch
from safetensors.torch import load, save

from bench.paths import atomic_write
from bench.quality.scoring import BatchScores
from methods.errors import DiffbenchError

PARTS_DIR = "parts"
PART_FILE = re.compile(r"part-(\d+)-of-(\d+)\.safetensors")
SCALARS = ("number", "seconds", "images", "timed", "nfe", "in_situ", "guidance_evaluations",
           "guidance_seconds", "error", "nonfinite", "stage_nfe", "stage_seconds")


def part_batches(batches: int, part: tuple[int, int]) -> range:
    """Batch numbers of part (j, K): the j-th of K contiguous ranges, as even as they go."""
    index, count = part
    return range(index * batches // count, (index + 1) * batches // count)


def part_path(directory: Path, key: str, part: tuple[int, int]) -> Path:
    return Path(directory) / PARTS_DIR / key / f"part-{part[0]}-of-{part[1]}.safetensors"


def _score_tensors(prefix: str, scores: BatchScores) -> tuple[dict, dict]:
    tensors = {f"{prefix}features": scores.features.contiguous()}
    if scores.logits is not None:
        tensors[f"{prefix}logits"] = scores.logits.contiguous()
    tensors.update({f"{prefix}per_image.{name}": torch.as_tensor(values).contiguous()
                    for name, values in scores.per_image.items()})
    meta = {"correct": scores.correct, "labelled": scores.labelled, "per_image": sorted(scores.per_image)}
    if scores.view is not None:
        view_tensors, meta["view"] = _score_tensors(f"{prefix}view.", scores.view)
        tensors.update(view_tensors)
    return tensors, meta


def _scores_from(prefix: str, tensors: dict, meta: dict) -> BatchScores:
    return BatchScores(tensors[f"{prefix}features"], tensors.get(f"{prefix}logits"), meta["correct"],
                       meta["labelled"], {name: tensors[f"{prefix}per_image.{name}"].numpy()
                                          for name in meta["per_image"]},
                       _scores_from(f"{prefix}view.", tensors, meta["view"]) if "view" in meta else None)


def save_part(path: Path, outcomes: list, memory: dict) -> None:
    """A part's batch outcomes (bench.run.batch.BatchOutcome, with their scores), written
    whole or not at all."""
    tensors, batches = {}, []
    for outcome in outcomes:
        prefix = f"b{outcome.number}."
        entry = {name: getattr(outcome, name) for name in SCALARS}
        if outcome.scores is not None:
            score_tensors, entry["scores"] = _score_tensors(prefix, outcome.scores)
            tensors.update(score_tensors)
        if outcome.grid is not None:
            tensors[f"{prefix}grid"] = outcome.grid.contiguous()
        batches.append(entry)
    metadata = {"batches": json.dumps(batches), "memory": json.dumps(memory)}
    atomic_write(path, save(tensors, metadata=metadata))


def load_part(path: Path, outcome_class) -> tuple[list, dict]:
    """(outcomes, memory: kind, peak_bytes, reserved_bytes) of a stored part; a damaged file
    is a one-line error."""
    data = path.read_bytes()
    try:
        tensors = load(data)
        metadata = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]
        batches = json.loads(metadata["batches"])
    except Exception as err:   # safetensors raises its own error types
        raise DiffbenchError(f"{path}: not a readable part file ({type(err).__name__}); delete it "
                             "and run that part again") from None
    outcomes = []
    for entry in batches:
        prefix = f"b{entry['number']}."
        scores = _scores_from(prefix, tensors, entry["scores"]) if "scores" in entry else None
        outcomes.append(outcome_class(**{name: entry[name] for name in SCALARS}, scores=scores,
                                      grid=tensors.get(f"{prefix}grid")))
    return outcomes, json.loads(metadata["memory"])


def complete_parts(directory: Path, key: str) -> list[Path] | None:
    """The cell's part files when one full set of K is stored (else None)."""
    folder = Path(directory) / PARTS_DIR / key
    found = {}
    for path in folder.glob("part-*-of-*.safetensors") if folder.is_dir() else []:
        match = PART_FILE.fullmatch(path.name)
        if match:
            found.setdefault(int(match.group(2)), {})[int(match.group(1))] = path
    for count, paths in sorted(found.items()):
        if sorted(paths) == list(range(count)):
            return [paths[index] for index in range(count)]
    return None


def check_split(count: int, index: int | None, batches: int, warmup_batches: int) -> None:
    """K parts (and part j, when given) of cells of `batches` batches: every part needs its
    warm-up batches and one timed batch."""
    if count < 2:
        raise DiffbenchError(f"--split-samples must be at least 2, got {count}")
    if index is not None and not 0 <= index < count:
        raise DiffbenchError(f"--part {index}: parts are numbered 0..{count - 1}")
    if batches // count < warmup_batches + 1:
        raise DiffbenchError(f"--split-samples {count}: a cell has {batches} batches, and every part "
                             f"needs warmup_batches + 1 = {warmup_batches + 1} of them: use at most "
                             f"{max(1, batches // (warmup_batches + 1))} parts, or more samples per cell")

