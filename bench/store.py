"""Append-only JSONL results: one row per line, each with a checksum of its own content.

A row is appended with a single write() on an O_APPEND descriptor and fsynced before the next
cell starts, so a killed run loses at most the row it was writing. A half-written last line is
sealed off with a newline before the next append and skipped (and named) when reading, and so
is a row that does not fit the row schema. A run holds a lock on its rows file, so two runs
never write one file at once; if two completed rows of one cell still meet (copied or merged
files), both are kept and the newest is the one reports show.
"""
import contextlib
import errno
import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from bench.paths import atomic_write, ensure_writable
from bench.rows import COMPLETED, Row, complete, row_problem
from methods.errors import DiffbenchError
from methods.registry import validate_name

ROWS_FILE = "rows.jsonl"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def row_checksum(row: dict) -> str:
    body = {k: v for k, v in row.items() if k != "checksum"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:16]


def shard_file(index: int, count: int) -> str:
    """The rows file of shard `index` (0-based) of `count`: rows.shard-<i>-of-<n>.jsonl."""
    return f"rows.shard-{index}-of-{count}.jsonl"


class ResultStore:
    """results/<suite>/rows.jsonl (or a shard's own rows file) plus the resolved config;
    refuses unwritable locations early."""

    def __init__(self, root: Path, suite: str, rows_file: str = ROWS_FILE):
        self.directory = Path(root) / validate_name(suite, "suite name")
        self.rows_path = self.directory / rows_file

    def shard_paths(self) -> list[Path]:
        return sorted(self.directory.glob("rows.shard-*-of-*.jsonl"))

    def unmerged_shard_rows(self) -> int:
        """Rows of shard files that rows.jsonl does not hold yet."""
        merged = {row["checksum"] for row in self.read()[0]}
        return sum(row["checksum"] not in merged for path in self.shard_paths()
                   for row in read_rows(path)[0])

    def ensure_writable(self) -> None:
        ensure_writable(self.directory, "results directory",
                        "fix its permissions, free disk space or pass --results-dir")

    @contextlib.contextmanager
    def lock(self):
        """Hold the rows file's lock (`<rows file>.lock`, released by the OS if the process
        dies); a second writer of the same file is refused at once."""
        self.ensure_writable()
        path = self.rows_path.with_name(self.rows_path.name + ".lock")
        handle = open(path, "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise DiffbenchError(
                    f"{str(self.rows_path)!r} is being written by {holder}: wait for that run, or "
                    "give this one another --results-dir or a --shard of its own") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"diffbench pid {os.getpid()}\n")
            handle.flush()
            yield
        finally:
            handle.close()

    def write_config(self, resolved: dict) -> None:
        atomic_write(self.directory / "config.json",
                     (json.dumps(resolved, indent=2, sort_keys=True) + "\n").encode())

    def append(self, row: dict) -> dict:
        row = {**row, "checksum": row_checksum(row)}
        line = (canonical_json(row) + "\n").encode()
        try:
            fd = os.open(self.rows_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if _ends_without_newline(self.rows_path):
                    os.write(fd, b"\n")      # seal a line a killed writer left half-written
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:
            raise DiffbenchError(f"cannot append a row to {str(self.rows_path)!r} "
                                 f"({err.strerror or err}): free disk space or fix permissions, then "
                                 "run again; the rows already stored are intact") from None
        return row

    def read(self) -> tuple[list[dict], list[str]]:
        return read_rows(self.rows_path)

    def completed_keys(self) -> set[str]:
        rows, _ = self.read()
        return {r["cell_key"] for r in rows if r["status"] in COMPLETED}


def _ends_without_newline(path: Path) -> bool:
    size = path.stat().st_size
    if size == 0:
        return False
    with open(path, "rb") as handle:
        handle.seek(size - 1)
        return handle.read(1) != b"\n"


def read_rows(path: Path, as_stored: bool = False) -> tuple[list[Row], list[str]]:
    """All intact rows that fit the row schema (`bench.rows`), completed with their absent
    optional fields (`as_stored`: exactly as stored, to copy them), and a description of every
    damaged or misfit line (which is skipped)."""
    if not Path(path).is_file():
        return [], []
    rows, problems = [], []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
                if not isinstance(row, dict) or row.get("checksum") != row_checksum(row):
                    raise ValueError("checksum mismatch")
            except (ValueError, UnicodeDecodeError) as err:
                problems.append(f"{path}:{number}: damaged row skipped ({err.__class__.__name__})")
                continue
            problem = row_problem(row)
            if problem:
                problems.append(f"{path}:{number}: row skipped, it does not fit the row schema "
                                f"({problem})")
                continue
            rows.append(row if as_stored else complete(row))
    return rows, problems


def latest_per_cell(rows: list[dict]) -> list[dict]:
    """The newest row of each cell, by `created_at` and then file order (two runs, or a merged
    file, may hold several rows of one cell: all are kept, the newest is shown), in the order
    the cells first appear."""
    newest: dict[str, int] = {}
    for index in sorted(range(len(rows)), key=lambda i: (rows[i]["created_at"], i)):
        newest[rows[index]["cell_key"]] = index
    first = {}
    for index, row in enumerate(rows):
        first.setdefault(row["cell_key"], index)
    return [rows[newest[key]] for key in sorted(newest, key=first.get)]


def to_dataframe(rows: list[dict]) -> pd.DataFrame:
    """Rows as a flat DataFrame (nested fields become dotted columns, e.g. `metrics.fid.value`)."""
    if not rows:
        return pd.DataFrame()
    return pd.json_normalize([{k: v for k, v in r.items() if k != "time_rounds"} for r in rows])


def load_dataframe(root: Path, suite: str) -> pd.DataFrame:
    rows, _ = ResultStore(root, suite).read()
    return to_dataframe(rows)
