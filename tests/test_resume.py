"""A suite killed with SIGKILL mid-way resumes to exactly the rows of an uninterrupted run."""
import os
import signal
import subprocess
import sys
import time

from bench.config import load_suite
from bench.runner import run_suite
from bench.store import ResultStore
from tests.conftest import TINY_SUITE

MANY_CELLS = TINY_SUITE.replace("steps = [2, 3]", "steps = [2, 3, 4, 5, 6, 7, 8, 9]").replace(
    "n_samples = 24", "n_samples = 48")


def start_run(suite_path, results):
    return subprocess.Popen([sys.executable, "-m", "bench", "run", str(suite_path), "--no-report",
                             "--results-dir", str(results)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())


def wait_for_rows(path, count, process, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"run ended or stalled before {count} rows (exit {process.poll()})")


def test_sigkill_mid_suite_then_resume_gives_the_uninterrupted_rows(write_suite, tmp_path):
    suite_path = write_suite(MANY_CELLS)
    config = load_suite(str(suite_path))
    run_suite(config, tmp_path / "reference")               # also trains and caches the models
    reference = {r["cell_key"]: r for r in ResultStore(tmp_path / "reference", "tiny").read()[0]}

    results = tmp_path / "killed"
    rows_path = ResultStore(results, "tiny").rows_path
    process = start_run(suite_path, results)
    wait_for_rows(rows_path, 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    written_before_kill = rows_path.read_bytes().count(b"\n")
    assert written_before_kill < len(config.cells), "the kill came after the suite had finished"

    assert run_suite(config, results).failed == 0
    rows, problems = ResultStore(results, "tiny").read()
    keys = [r["cell_key"] for r in rows]
    assert problems == [] and len(keys) == len(set(keys)) == len(config.cells)
    assert set(keys) == set(reference)
    for row in rows:
        assert row["metrics"]["fid"]["value"] == reference[row["cell_key"]]["metrics"]["fid"]["value"]
