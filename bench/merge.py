"""`diffbench merge SUITE`: the shard files of a job array (`run --shard i/N`) appended to
results/<suite>/rows.jsonl.

Nothing is merged silently: a damaged line in any file, or one cell with two different completed
rows (two shards that both ran it, or a shard row that contradicts an already merged one), stops
the merge before anything is written. Rows already merged are recognised by their checksum, so
merging twice adds nothing. The main file is only appended to; the shard files are left as
they are.
"""
from dataclasses import dataclass
from pathlib import Path

from bench.errors import DiffbenchError
from bench.store import COMPLETED, ResultStore, read_rows


@dataclass(frozen=True)
class MergeOutcome:
    shards: int
    appended: int
    already_merged: int
    rows_path: Path


def read_intact(path: Path) -> list[dict]:
    rows, problems = read_rows(path)
    if problems:
        raise DiffbenchError(f"{problems[0]}; nothing merged: restore the file or delete the "
                             "damaged line, then merge again")
    return rows


def completed_by_cell(rows: list[dict], source: str, into: dict[str, tuple[dict, str]]) -> None:
    """Adds each completed row to `into` (cell key -> (row, where it came from)); a cell whose
    completed rows differ is a conflict."""
    for row in rows:
        if row.get("status") not in COMPLETED:
            continue
        held = into.get(row["cell_key"])
        if held and held[0]["checksum"] != row["checksum"]:
            raise DiffbenchError(
                f"cell {row['cell_key']} ({row.get('label')}, {row.get('steps')} steps) has two "
                f"different completed rows, in {held[1]} and {source}; nothing merged: delete the "
                "one you do not want (or its shard file) and merge again")
        into[row["cell_key"]] = (row, source)


def merge_shards(results_root: Path, suite: str) -> MergeOutcome:
    store = ResultStore(results_root, suite)
    shard_paths = store.shard_paths()
    if not shard_paths:
        raise DiffbenchError(f"no shard files (rows.shard-*-of-*.jsonl) in {store.directory}: run "
                             f"`diffbench run {suite} --shard i/N` first")
    merged = read_intact(store.rows_path)
    completed: dict[str, tuple[dict, str]] = {}
    completed_by_cell(merged, store.rows_path.name, completed)
    stored = {row["checksum"] for row in merged}
    incoming, already = [], 0
    for path in shard_paths:
        rows = read_intact(path)
        completed_by_cell(rows, path.name, completed)
        for row in rows:
            if row["checksum"] in stored:
                already += 1
            elif row.get("status") in COMPLETED or row["cell_key"] not in completed:
                incoming.append(row)    # a failed attempt matters only while nothing succeeded
                stored.add(row["checksum"])
    store.ensure_writable()
    for row in incoming:
        store.append({k: v for k, v in row.items() if k != "checksum"})
    return MergeOutcome(len(shard_paths), len(incoming), already, store.rows_path)
