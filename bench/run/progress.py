"""Progress bars with an ETA (tqdm) over a suite's cells and over a cell's batches.

Drawn by rank 0 only, and only where someone watches: on a terminal, or wherever
DIFFBENCH_PROGRESS=1 (0 turns them off everywhere). Log lines go through tqdm while a bar is
drawn, so the two never tear each other."""
import contextlib
import os
import sys

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bench.run.distributed import is_main


def shown() -> bool:
    setting = os.environ.get("DIFFBENCH_PROGRESS")
    wanted = sys.stderr.isatty() if setting is None else setting == "1"
    return wanted and is_main()


def bar(total: int, what: str, unit: str, leave: bool = True) -> tqdm:
    """A bar over `total` `unit`s (drawn or not, it counts the same)."""
    return tqdm(total=total, desc=what, unit=unit, leave=leave, disable=not shown(), dynamic_ncols=True,
                file=sys.stderr)


@contextlib.contextmanager
def logging_beside_bars():
    """Log records written above the bars while they are drawn."""
    with logging_redirect_tqdm() if shown() else contextlib.nullcontext():
        yield
