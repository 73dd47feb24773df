"""`diffbench merge SUITE`: the shard files of a job array (`run --shard i/N`) appended to
results/<suite>/rows.jsonl.

Nothing is merged silently: a damaged line in any file stops the merge before anything is
written. Rows already merged are recognised by their checksum, so merging twice adds nothing.
Two completed rows of one cell (two shards, or two runs, that both measured it) are two
measurements of one experiment: both are kept, reports show the newest, and the merge says how
many cells hold more than one. The main file is only appended to, under its lock; the shard
files are left as they are.
"""
from dataclasses import dataclass
from pathlib import Path

from bench.rows import COMPLETED
from bench.store import ResultStore, read_rows
from methods.errors import DiffbenchError


@dataclass(frozen=True)
class MergeOutcome:
    shards: int
    appended: int
    already_merged: int
    rows_path: Path
    repeated_cells: int = 0    # cells with more than one completed row after the merge


def read_intact(path: Path) -> list[dict]:
    rows, problems = read_rows(path, as_stored=True)   # appended as they are
    if problems:
        raise DiffbenchError(f"{problems[0]}; nothing merged: restore the file or delete the "
                             "damaged line, then merge again")
    return rows


def merge_shards(results_root: Path, suite: str) -> MergeOutcome:
    store = ResultStore(results_root, suite)
    shard_paths = store.shard_paths()
    if not shard_paths:
        raise DiffbenchError(f"no shard files (rows.shard-*-of-*.jsonl) in {store.directory}: run "
                             f"`diffbench run {suite} --shard i/N` first")
    with store.lock():
        merged = read_intact(store.rows_path)
        shard_rows = [read_intact(path) for path in shard_paths]
        stored = {row["checksum"] for row in merged}
        succeeded = {row["cell_key"] for rows in [merged, *shard_rows] for row in rows
                     if row["status"] in COMPLETED}
        incoming, already = [], 0
        for row in (row for rows in shard_rows for row in rows):
            if row["checksum"] in stored:
                already += 1
            elif row["status"] in COMPLETED or row["cell_key"] not in succeeded:
                incoming.append(row)    # a failed attempt matters only while nothing succeeded
                stored.add(row["checksum"])
        for row in incoming:
            store.append({k: v for k, v in row.items() if k != "checksum"})
    completed = [row["cell_key"] for row in merged + incoming if row["status"] in COMPLETED]
    repeated = len(completed) - len(set(completed))
    return MergeOutcome(len(shard_paths), len(incoming), already, store.rows_path, repeated)
