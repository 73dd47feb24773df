"""Running one cell: warm it up, sample and score its batches (or one part of them, or merge its
stored parts) and build its row; a failing method yields an error row, never a stopped suite."""
import dataclasses
import logging
import traceback
from pathlib import Path

from bench.config import SuiteConfig
from bench.data.quantize import NonFiniteSamples
from bench.models.recipes import LoadedModel
from bench.rows import new_row
from bench.run import progress
from bench.run.batch import BatchFailed, BatchOutcome, error_message, run_batch, scorer_for
from bench.run.cascade import stage_identity
from bench.run.cell import CellRun
from bench.run.cost import PeakMemory
from bench.run.distributed import broadcast_from_main, gather_on_main, is_main, rank, world_size
from bench.run.measure import SampledCell, cell_measurements, classifier_identity
from bench.run.parts import load_part, part_batches, part_path, save_part
from bench.run.provenance import utc_now
from bench.run.suite import model_identity
from bench.run.warmup import warmed_up
from methods.errors import StorageError


log = logging.getLogger("diffbench")


def run_cell(run: CellRun, key: str, measure=None) -> dict:
    """The cell's row; `measure(run, key)` gives its measured fields (by default sampling and
    scoring it; for a split cell, merging its stored parts)."""
    measure = measure or sample_and_score
    row = base_row(run, key)
    if run.method.classifier:   # named in every row of the cell, failed ones too (it is in the key)
        row["classifier"] = classifier_identity(run.ctx)
    try:
        run, warmup = warmed_up(run)
        if warmup:
            row["warmup"] = warmup
        row.update(measure(run, key))
    except NonFiniteSamples as err:
        row.update(status="nonfinite", message=str(err))
    except BatchFailed as err:
        row.update(status="error", message=str(err))
    except StorageError:      # the harness could not store something: not the method's failure
        raise
    except Exception as err:  # a failing method must not stop the suite
        log.debug("cell %s failed:\n%s", key, traceback.format_exc())
        row.update(status="error", message=error_message(err))
    return row


def run_cell_part(run: CellRun, key: str, part: tuple[int, int]) -> None:
    """Part j of K of a split cell, stored for the merge; a failure before its batches (the
    warm-up) is stored as the part's outcome, so the merge writes the cell's error row."""
    try:
        sample_and_score(warmed_up(run)[0], key, part)
    except StorageError:
        raise
    except Exception as err:
        log.debug("cell %s part %s failed:\n%s", key, part, traceback.format_exc())
        save_part(part_path(run.ctx.store.directory, key, part), [BatchOutcome(-1, error=error_message(err))],
                  {"kind": "", "peak_bytes": None, "reserved_bytes": None})


def base_row(run: CellRun, key: str) -> dict:
    ctx, config, dataset, model = run.ctx, run.config, run.dataset, run.model
    checkpoint = model and model.checkpoint_sha256
    return new_row(
        suite=config.name, cell_key=key, method=run.method, steps=run.cell.steps,
        hparams=run.hparams, label=run.cell.label, model=model and model_identity(model),
        num_parameters=model.num_parameters if model else 0, dataset=dataset,
        n_samples=config.n_samples, seed=config.seed, batch_size=config.batch_size,
        protocol=run.protocol, protocol_fingerprint=run.fingerprint,
        provenance={**ctx.provenance, "dataset_hash": dataset.content_hash,
                    "checkpoint_sha256": checkpoint, "extractor": ctx.extractor.name,
                    "extractor_weights_sha256": ctx.extractor.weights_sha256,
                    "extractor_test_accuracy": ctx.extractor.info.get("test_accuracy")},
        compiled=config.compile, created_at=utc_now(), task=run.task.name,
        training=training_record(model) if run.cell.train_step else None,
        cascade={"superres": stage_identity(run.superres)} if run.superres else None,
        gate={"fid": list(run.cell.fid_gate)} if run.cell.fid_gate else None)


def training_record(model: LoadedModel) -> dict:
    """How far a snapshot's training had come (from its sidecar)."""
    meta = model.meta
    return {"step": meta["step"], "budget_steps": meta["budget"]["steps"],
            "images_seen": meta["images_seen"], "seconds": meta["train_seconds"],
            "precision": meta.get("precision"), "batch_size": meta["budget"]["batch_size"]}


def cell_batches(config: SuiteConfig) -> int:
    return -(-config.n_samples // config.batch_size)


def sample_and_score(run: CellRun, key: str, part: tuple[int, int] | None = None) -> dict:
    """Samples the cell batch by batch, scoring each batch as it comes (memory does not grow
    with n_samples); peak memory covers both, timing only the sampler. Under torchrun the
    batches are dealt round-robin to the processes and rank 0 accumulates them in order (see
    bench.run.distributed); elsewhere this is one process taking every batch. With `part`
    (j, K), only part j's seed range is sampled and its batches are stored for the merge
    (bench.run.parts), failure included: the merge writes the cell's row."""
    numbers = part_batches(cell_batches(run.config), part) if part else range(cell_batches(run.config))
    scorer, records, failure, own_timed_counter = scorer_for(run), [], None, None
    with PeakMemory(run.ctx.device) as memory, progress.bar(len(numbers), "batches", "batch", leave=False) as bar:
        for local_number, first in enumerate(range(numbers.start, numbers.stop, world_size())):
            outcome = counter = None
            if first + rank() < numbers.stop:
                outcome, counter = run_batch(run, scorer, first + rank(), local_number)
                own_timed_counter = counter if outcome.timed and counter else own_timed_counter
            for done in sorted(filter(None, gather_on_main(outcome) or []), key=lambda o: o.number):
                failure = failure or (done if done.error else None)
                if failure is None and part:
                    records.append(done)
                elif failure is None:
                    scorer.accumulate(done.scores)
                    records.append(dataclasses.replace(done, scores=None))
            failure = broadcast_from_main(failure)
            if failure:
                break
            bar.update(min(world_size(), numbers.stop - first))
        scores = scorer.finish() if is_main() and failure is None and not part else None
    peak = gather_on_main(memory.peak_bytes)
    if part:
        save_part(part_path(run.ctx.store.directory, key, part), records + ([failure] if failure else []),
                  {"kind": memory.kind, "peak_bytes": max(filter(None, peak), default=None),
                   "reserved_bytes": memory.reserved_bytes})
        return {}
    if failure:
        raise (NonFiniteSamples if failure.nonfinite else BatchFailed)(failure.error)
    if not is_main():
        return {}
    return cell_measurements(run, key, SampledCell(records, scores, scorer.features(),
                                                   scorer.per_image_values(), own_timed_counter, memory, peak))


@dataclasses.dataclass(frozen=True)
class StoredMemory:
    """Peak memory as the parts of a split cell recorded it."""
    kind: str
    reserved_bytes: int | None


def merge_parts(run: CellRun, key: str, paths: list[Path]) -> dict:
    """A split cell's measured fields from its stored parts: their batches scored in batch
    order, as `sample_and_score` scores them in one process."""
    loaded = [load_part(path, BatchOutcome) for path in paths]
    outcomes = sorted((o for batch, _ in loaded for o in batch), key=lambda o: o.number)
    failure = next((o for o in outcomes if o.error), None)
    if failure:
        raise (NonFiniteSamples if failure.nonfinite else BatchFailed)(failure.error)
    if [o.number for o in outcomes] != list(range(cell_batches(run.config))):
        raise BatchFailed(f"the parts in {paths[0].parent} hold batches {[o.number for o in outcomes]}, "
                          f"not 0..{cell_batches(run.config) - 1}: delete them and run the parts again")
    scorer = scorer_for(run)
    for outcome in outcomes:
        scorer.accumulate(outcome.scores)
    memories = [memory for _, memory in loaded]
    records = [dataclasses.replace(o, scores=None) for o in outcomes]
    return cell_measurements(run, key, SampledCell(
        records, scorer.finish(), scorer.features(), scorer.per_image_values(), None,
        StoredMemory(memories[0]["kind"], memories[0]["reserved_bytes"]),
        [m["peak_bytes"] for m in memories]))
