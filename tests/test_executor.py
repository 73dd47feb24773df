"""`diffbench run --executor local|submitit`: the suite as one submitit job array (local
processes here, as a Slurm array on a cluster), then merged into rows equal to a plain run's."""
import pytest

from bench.cli import main
from bench.run.executor import ClusterOptions, make_executor
from bench.store import ResultStore
from methods.errors import DiffbenchError
from tests.helpers import TINY_SUITE

submitit = pytest.importorskip("submitit")


def measured(row):
    """What a cell measured, without when, where and how fast."""
    return (row["cell_key"], row["nfe"], row["metrics"]["fid"]["value"], row["paired"]["features"]["sha256"])


@pytest.fixture(scope="module")
def array_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("array")
    suite = root / "tiny.toml"
    suite.write_text(TINY_SUITE)
    code = main(["run", str(suite), "--executor", "local", "--max-parallel", "2", "--results-dir",
                 str(root / "array"), "--reports-dir", str(root / "reports")])
    assert main(["run", str(suite), "--results-dir", str(root / "plain"), "--no-report"]) == 0
    return root, code


def test_a_local_array_run_exits_0_and_renders_its_report(array_run):
    root, code = array_run
    assert code == 0 and (root / "reports" / "tiny" / "index.html").is_file()


def test_the_array_writes_one_shard_file_per_task_and_merges_them(array_run):
    root, _ = array_run
    store = ResultStore(root / "array", "tiny")
    assert [p.name for p in store.shard_paths()] == ["rows.shard-0-of-2.jsonl", "rows.shard-1-of-2.jsonl"]
    assert len(store.read()[0]) == 4 and store.unmerged_shard_rows() == 0


def test_the_array_gives_the_rows_a_plain_run_gives(array_run):
    root, _ = array_run
    array, plain = (sorted(map(measured, ResultStore(root / side, "tiny").read()[0])) for side in ("array", "plain"))
    assert array == plain


@pytest.mark.slow   # a second array (~35 s)
def test_a_second_array_run_finds_every_cell_stored(array_run, capsys):
    root, _ = array_run
    assert main(["run", str(root / "tiny.toml"), "--executor", "local", "--results-dir",
                 str(root / "array"), "--no-report"]) == 0
    assert "merged: 0 row(s) appended" in capsys.readouterr().out


def test_submitit_without_slurm_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DiffbenchError, match="sbatch is not on this machine's PATH"):
        make_executor(ClusterOptions("submitit"), tmp_path)


@pytest.mark.parametrize("argv, message", [
    (["--shard", "0/2"], "do not combine"), (["--max-parallel", "-1"], "--max-parallel"),
    (["--slurm-time", "0"], "--slurm-time")])
def test_bad_array_options_exit_2(write_suite, tmp_path, capsys, argv, message):
    suite = write_suite()
    assert main(["run", str(suite), "--executor", "local", "--results-dir", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


FIRST_ATTEMPT_PLUGIN = """
import os
import time
from pathlib import Path

from methods.base import register_method
from methods.ddim import sample_ddim
from methods.ddpm import respaced_sigmas

MARKER = Path(__file__).with_suffix(".first")


def sample(*args, **kwargs):
    if not MARKER.exists():        # the first attempt only
        MARKER.write_text("first attempt")
        {first_attempt}
    return sample_ddim(*args, **kwargs)


register_method(name="{name}", family="test", task="generate", model="eps", sampler=sample,
                schedule=respaced_sigmas, version="1", paper="DDIM, after a first attempt that fails")
"""


def first_attempt_suite(folder, name: str, first_attempt: str):
    """The tiny suite with its DDIM cells by a plugin method whose first attempt runs
    `first_attempt` (its process dying, or waiting to be preempted); returns the suite path."""
    plugin = name.replace("-", "_")
    (folder / f"{plugin}.py").write_text(FIRST_ATTEMPT_PLUGIN.format(name=name, first_attempt=first_attempt))
    suite = folder / "tiny.toml"
    suite.write_text(TINY_SUITE.replace('description = "tiny test suite"',
                                        f'description = "tiny test suite"\nplugins = ["{plugin}.py"]')
                     .replace('method = "ddim"', f'method = "{name}"'))
    return suite


@pytest.mark.slow   # a fresh process per attempt, each loading torch and the suite (~70 s)
def test_a_task_whose_process_dies_is_submitted_again_and_completes(tmp_path, caplog):
    suite = first_attempt_suite(tmp_path, "dies-once", "os._exit(3)   # as on a lost node")
    with caplog.at_level("INFO", logger="diffbench"):
        assert main(["run", str(suite), "--executor", "local", "--max-parallel", "1",
                     "--results-dir", str(tmp_path / "results"), "--no-report"]) == 0
    assert (tmp_path / "dies_once.first").is_file()
    assert "array task 0 failed: submitted again (1 of 2)" in caplog.text
    rows = ResultStore(tmp_path / "results", "tiny").read()[0]
    assert sorted(r["method"] for r in rows) == ["ddpm", "ddpm", "dies-once", "dies-once"]
    assert all(r["status"] == "ok" for r in rows)


@pytest.mark.slow   # an array of parts plus a plain run (~70 s); split cells alone: tests/test_split_samples.py
def test_split_cells_run_as_array_tasks_equal_the_plain_run(tmp_path):
    """2 parts of every cell as 2 array tasks, then a merge job: the rows a plain run gives."""
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE.replace("n_samples = 24", "n_samples = 48"))
    assert main(["run", str(suite), "--executor", "local", "--split-samples", "2", "--max-parallel", "2",
                 "--results-dir", str(tmp_path / "array"), "--no-report"]) == 0
    assert main(["run", str(suite), "--results-dir", str(tmp_path / "plain"), "--no-report"]) == 0
    array, plain = (sorted(map(measured, ResultStore(tmp_path / side, "tiny").read()[0]))
                    for side in ("array", "plain"))
    assert array == plain and len(array) == 4
    assert len(list((tmp_path / "array" / "tiny" / "parts").glob("*/part-*-of-2.safetensors"))) == 8


@pytest.mark.slow   # waits out a 90 s time limit
def test_a_task_out_of_time_is_requeued_and_resumes(tmp_path):
    """The signal Slurm sends before a time limit or a preemption (submitit's local executor
    sends it too): the task checkpoints, is requeued with the same shard and completes."""
    from bench.run.executor import SuiteJob
    suite = first_attempt_suite(tmp_path, "slow-once", "time.sleep(300)   # until the signal")
    executor = submitit.LocalExecutor(tmp_path / "logs", max_num_timeout=2)
    executor.update_parameters(timeout_min=1.5, signal_delay_s=5)
    task = executor.submit(SuiteJob(str(suite), (), str(tmp_path / "results"), 1), 0)
    assert task.result() == 4      # the requeued attempt ran all four cells
    assert (tmp_path / "slow_once.first").is_file() and "Requeued" in task.stderr() + task.stdout()
    rows = ResultStore(tmp_path / "results", "tiny", "rows.shard-0-of-1.jsonl").read()[0]
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
