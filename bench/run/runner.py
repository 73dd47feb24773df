"""Runs a suite: train or load models, then for each cell sample, measure, score and store a row.

A method that raises yields an `error` row and the suite goes on; a non-finite sample yields a
`nonfinite` row and no pixels. Cells whose key already has a completed row are skipped.
"""
import contextlib
import dataclasses
import functools
import logging
import textwrap
from pathlib import Path

from bench.config import CellSpec, SuiteConfig, load_suite
from bench.run.cell import CellRun
from bench.run import progress
from bench.run.cells import merge_parts, run_cell, run_cell_part
from bench.run.distributed import broadcast_from_main, is_main, world_size
from bench.run.parts import PARTS_DIR, complete_parts, part_path
from bench.run.suite import SuiteContext, prepare
from bench.store import ROWS_FILE, ResultStore, shard_file
from methods.errors import DiffbenchError


log = logging.getLogger("diffbench")


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    rows_written: int
    cells_skipped: int
    failed: int
    results_path: Path


def cell_key(ctx: SuiteContext, cell: CellSpec) -> str:
    return CellRun.of(ctx, cell).key


@dataclasses.dataclass(frozen=True)
class NumberedRun:
    """A cell resolved once for the whole run: its number in the suite, the run and its key."""
    number: int
    run: CellRun
    key: str

    def line(self, total: int, outcome: str) -> str:
        cell = self.run.cell
        return f"[{self.number}/{total}] {cell.label} steps={cell.steps}: {outcome}"


def resolved_cells(ctx: SuiteContext, cells: list[tuple[int, CellSpec]]) -> list[NumberedRun]:
    runs = [(number, CellRun.of(ctx, cell)) for number, cell in cells]
    return [NumberedRun(number, run, run.key) for number, run in runs]


def run_suite_text(text: str, name: str, suite_dir: Path, results_root: Path) -> list[dict]:
    """Write `text` as suite `name` (suite_dir/name.toml), run it into results_root and return its
    stored rows: for the scripts and tests that build a suite on the fly."""
    path = suite_dir / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    run_suite(load_suite(str(path)), results_root)
    return ResultStore(results_root, name).read()[0]


def shard_cells(cells: list, shard: tuple[int, int] | None) -> list[tuple[int, CellSpec]]:
    """(number, cell) of the cells shard (i, n) runs: every n-th cell from the i-th, so shards
    are disjoint, together cover the suite, and share its slow and fast cells alike."""
    index, count = shard or (0, 1)
    return [(number, cell) for number, cell in enumerate(cells, 1) if (number - 1) % count == index]


def run_suite(config: SuiteConfig, results_root: Path, shard: tuple[int, int] | None = None,
              part: tuple[int, int] | None = None) -> RunOutcome:
    """Runs the suite's cells (with `shard` = (i, n), only shard i's, into its own rows file),
    holding the rows file's lock on rank 0: a second run into the same file is refused. With
    `part` = (j, K), only part j of every cell's seed range is sampled and stored (no rows:
    `merge_split_cells` makes them once every part is stored)."""
    if part:
        return _run_parts(config, results_root, shard, part)
    store = ResultStore(results_root, config.name, shard_file(*shard) if shard else ROWS_FILE)
    with store.lock() if is_main() else contextlib.nullcontext():
        return _run_suite(config, results_root, shard)


def _run_parts(config, results_root, shard, part) -> RunOutcome:
    if world_size() > 1:
        raise DiffbenchError("--split-samples runs one process per part: do not combine it with torchrun")
    ctx = prepare(config, results_root)
    done = ResultStore(results_root, config.name).completed_keys()
    written = skipped = 0
    for cell in resolved_cells(ctx, shard_cells(config.cells, shard)):
        if cell.key in done or part_path(ctx.store.directory, cell.key, part).is_file():
            skipped += 1
            continue
        run_cell_part(cell.run, cell.key, part)
        written += 1
        log.info(cell.line(len(config.cells), f"part {part[0]} of {part[1]} stored"))
    return RunOutcome(written, skipped, 0, ctx.store.directory / PARTS_DIR)


def merge_split_cells(config: SuiteConfig, results_root: Path) -> RunOutcome:
    """The rows of every split cell whose parts are all stored (and that has no row yet)."""
    store = ResultStore(results_root, config.name)
    with store.lock():
        ctx = prepare(config, results_root)
        done = store.completed_keys()
        written = waiting = 0
        for cell in resolved_cells(ctx, list(enumerate(config.cells, 1))):
            if cell.key in done:
                continue
            paths = complete_parts(store.directory, cell.key)
            if paths is None:
                waiting += 1
                continue
            row = store.append(run_cell(cell.run, cell.key, functools.partial(merge_parts, paths=paths)))
            written += 1
            log.info(cell.line(len(config.cells), f"{len(paths)} parts merged: {summarise(row)}"))
    rows = {r["cell_key"]: r for r in store.read()[0]}
    return RunOutcome(written, waiting, sum(r["status"] != "ok" for r in rows.values()), store.rows_path)


def _run_suite(config, results_root, shard) -> RunOutcome:
    ctx = prepare(config, results_root, shard_file(*shard) if shard else ROWS_FILE)
    merged = ResultStore(results_root, config.name)
    done = broadcast_from_main(ctx.store.completed_keys() | (merged.completed_keys() if shard else set())
                               if is_main() else None)
    cells = resolved_cells(ctx, shard_cells(config.cells, shard))
    written = skipped = 0
    with progress.bar(len(cells), config.name, "cell") as bar, progress.logging_beside_bars():
        for cell in cells:
            bar.set_postfix_str(f"{cell.run.cell.label} steps={cell.run.cell.steps}", refresh=False)
            if cell.key in done:
                skipped += 1
                log.info(cell.line(len(config.cells), "already stored, skipped"))
            else:
                row = run_cell(cell.run, cell.key)
                if is_main():   # rank 0 holds the gathered scores and writes the row
                    row = ctx.store.append(row)
                    written += 1
                    log.info(cell.line(len(config.cells), summarise(row)))
            bar.update(1)
    # The exit status reflects every cell this run owns as stored, including skipped ones.
    keys = {cell.key for cell in cells}
    rows = ctx.store.read()[0] + (merged.read()[0] if shard else [])
    latest = {r["cell_key"]: r for r in rows if r["cell_key"] in keys}
    failed = sum(r["status"] != "ok" for r in latest.values())
    return RunOutcome(written, skipped, failed, ctx.store.rows_path)


def summarise(row: dict) -> str:
    if row["status"] != "ok":
        return f"{row['status']}: {row['message']}"
    scores = " ".join(f"{name}={m['value']:.4g}" if m["value"] is not None
                      else f"{name}=null ({m['flag']})" for name, m in row["metrics"].items())
    overhead = row["overhead"] and row["overhead"]["ratio"]
    return (f"NFE={row['nfe']} {scores} time/img={row['time_per_image_s']['median'] * 1e3:.2f} ms"
            + (f" overhead={overhead:.3f} (in situ {row['overhead']['ratio_in_situ']:.3f})"
               if overhead and row["overhead"].get("ratio_in_situ") else ""))
