"""A suite killed with SIGKILL mid-way resumes to exactly the rows of an uninterrupted run."""
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from bench.config import load_suite
from bench.run.runner import run_suite
from bench.store import ResultStore
from tests.helpers import TINY_SUITE

MANY_CELLS = TINY_SUITE.replace("steps = [2, 3]", "steps = [2, 3, 4, 5, 6, 7, 8, 9]").replace(
    "n_samples = 24", "n_samples = 48")


def start_run(suite_path, results):
    return subprocess.Popen([sys.executable, "-m", "bench", "run", str(suite_path), "--no-report",
                             "--results-dir", str(results)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())


def wait_for_rows(path, count, process, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if count == 0 or (path.exists() and path.read_bytes().count(b"\n") >= count):
            return
        time.sleep(0.01)
    raise AssertionError(f"run ended or stalled before {count} rows (exit {process.poll()})")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run (which also trains and caches the model)."""
    root = tmp_path_factory.mktemp("resume")
    suite_path = root / "tiny.toml"
    suite_path.write_text(MANY_CELLS)
    config = load_suite(str(suite_path))
    run_suite(config, root / "reference")
    return suite_path, config, {r["cell_key"]: r for r in ResultStore(root / "reference", "tiny").read()[0]}


@pytest.mark.parametrize("seed", range(4))
def test_sigkill_at_a_random_moment_then_resume_gives_the_uninterrupted_rows(reference, tmp_path, seed):
    """The kill lands after a random number of rows (0: during start-up or the first cell) plus
    a random fraction of a second, so inside a cell, between cells or mid-append."""
    suite_path, config, expected = reference
    chance = random.Random(seed)
    results = tmp_path / "killed"
    rows_path = ResultStore(results, "tiny").rows_path
    process = start_run(suite_path, results)
    wait_for_rows(rows_path, chance.randrange(len(config.cells) - 1), process)
    time.sleep(chance.uniform(0.0, 0.5))
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert run_suite(config, results).failed == 0
    rows, problems = ResultStore(results, "tiny").read()
    keys = [r["cell_key"] for r in rows]
    assert problems == [] and len(keys) == len(set(keys)) == len(config.cells)
    assert set(keys) == set(expected)
    for row in rows:
        assert row["metrics"]["fid"]["value"] == expected[row["cell_key"]]["metrics"]["fid"]["value"]
