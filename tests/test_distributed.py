"""torchrun with two gloo processes on the CPU gives the rows of a one-process run."""
import os
import subprocess
import sys

import pytest

from bench.config import load_suite
from bench.run.runner import run_suite
from bench.store import ResultStore
from tests.helpers import TINY_SUITE

# Three full batches a cell, so each of two processes has a warm-up batch and rank 0 a timed one.
SUITE = TINY_SUITE.replace("n_samples = 24", "n_samples = 40")


def torchrun(suite_path, results, processes=2):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={processes}", "-m", "bench", "run", str(suite_path),
               "--results-dir", str(results), "--no-report"]
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    suite_path = root / "tiny.toml"
    suite_path.write_text(SUITE)
    run_suite(load_suite(str(suite_path)), root / "one")     # also trains and caches the model
    done = torchrun(suite_path, root / "two")
    assert done.returncode == 0, done.stderr[-3000:]
    one = {r["cell_key"]: r for r in ResultStore(root / "one", "tiny").read()[0]}
    two = {r["cell_key"]: r for r in ResultStore(root / "two", "tiny").read()[0]}
    return one, two, root, done


def test_two_processes_write_each_row_once(two_runs):
    one, two, root, _ = two_runs
    lines = ResultStore(root / "two", "tiny").rows_path.read_bytes().count(b"\n")
    assert lines == len(two) == len(one) and two.keys() == one.keys()
    assert all(r["status"] == "ok" and r["world_size"] == 2 for r in two.values())


@pytest.mark.parametrize("metric", ["fid"])
def test_two_processes_give_the_one_process_metrics(two_runs, metric):
    one, two, _, _ = two_runs
    for key, row in two.items():
        assert row["metrics"][metric]["value"] == pytest.approx(one[key]["metrics"][metric]["value"], rel=1e-6)
        blocks = row["metrics"][metric]["uncertainty"]["block_values"]
        assert blocks == pytest.approx(one[key]["metrics"][metric]["uncertainty"]["block_values"], rel=1e-6)
        assert row["nfe"] == one[key]["nfe"]


def test_two_processes_draw_the_same_samples(two_runs):
    one, two, root, _ = two_runs
    for key, row in two.items():
        grid_two = (root / "two" / "tiny" / row["samples_grid"]).read_bytes()
        assert grid_two == (root / "one" / "tiny" / one[key]["samples_grid"]).read_bytes()


def test_only_rank_zero_logs(two_runs):
    *_, done = two_runs
    assert done.stderr.count("[1/4] ddim steps=2") == 1
