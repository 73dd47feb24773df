"""`diffbench run SUITE --executor submitit|local`: a suite as one job array on an existing
engine, submitit (Slurm's `sbatch --array` through `Executor.map_array`, or local processes).

The plan is the one `--shard` and `merge` already give: array task i runs shard i of n (every
n-th cell) into its own rows file, so tasks never write one file and a requeued task resumes
where it stopped (stored cells are skipped). Before the array, one job prepares the suite
(trains or loads its models, computes its reference statistics into the caches), so the
array's tasks only read the caches and never train one model twice at once. A task that Slurm
preempts or times out is requeued by submitit (the job is `Checkpointable`); a task that fails
otherwise is submitted again up to `retries` times. When every task has finished, the shard
files are merged into rows.jsonl.
"""
import dataclasses
import logging
import shutil
import time
from pathlib import Path

from bench.merge import merge_shards
from bench.run import progress
from bench.run.parts import PARTS_DIR
from bench.store import ResultStore, read_rows, shard_file
from methods.errors import DiffbenchError

log = logging.getLogger("diffbench")
POLL_SECONDS = 2.0


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
    executor: str                       # "submitit" (Slurm) or "local"
    max_parallel: int = 0               # array tasks (shards): 0 = one per cell
    partition: str = ""
    gpus_per_task: int = 0
    cpus_per_task: int = 0
    time_min: int = 240
    retries: int = 2


class SuiteJob:
    """What an array task runs: shard `number` of `count` of the suite (with `split` K, task
    number t is part t mod K of shard t // K); with no number, the suite's preparation, or with
    `merge`, the split cells' rows from their parts. Holds names and paths only, so it pickles
    anywhere."""

    def __init__(self, suite: str, plugins: tuple[str, ...], results_root: str, count: int,
                 inception_weights: str | None = None, split: int = 0):
        self.suite, self.plugins, self.results_root, self.count = suite, plugins, results_root, count
        self.inception_weights, self.split = inception_weights, split

    @property
    def tasks(self) -> int:
        return self.count * (self.split or 1)

    def __call__(self, number: int | None = None, merge: bool = False) -> int:
        from bench.config import load_suite
        from bench.run.runner import merge_split_cells, run_suite
        from bench.run.suite import prepare
        config = load_suite(self.suite, inception_weights=self.inception_weights, plugins=self.plugins)
        root = Path(self.results_root)
        if merge:
            return merge_split_cells(config, root).rows_written
        if number is None:
            prepare(config, root)
            return 0
        if self.split:
            return run_suite(config, root, shard=(number // self.split, self.count),
                             part=(number % self.split, self.split)).rows_written
        return run_suite(config, root, shard=(number, self.count)).rows_written

    def checkpoint(self, *args, **kwargs):
        """Preempted or out of time: submitit requeues the same task, which resumes (its stored
        cells are skipped)."""
        from submitit.helpers import DelayedSubmission
        return DelayedSubmission(self, *args, **kwargs)


def make_executor(options: ClusterOptions, folder: Path):
    try:
        import submitit
    except ImportError:
        raise DiffbenchError("--executor needs submitit: pip install 'diffbench[cluster]' "
                             "(or pip install submitit)") from None
    if options.executor == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=options.time_min)
        return executor
    if shutil.which("sbatch") is None:
        raise DiffbenchError("--executor submitit submits to Slurm, and sbatch is not on this "
                             "machine's PATH: run it on a Slurm login node, or use --executor local")
    executor = submitit.SlurmExecutor(folder=folder)
    executor.update_parameters(
        time=options.time_min, **({"partition": options.partition} if options.partition else {}),
        **({"gpus_per_task": options.gpus_per_task} if options.gpus_per_task else {}),
        **({"cpus_per_task": options.cpus_per_task} if options.cpus_per_task else {}),
        **({"array_parallelism": options.max_parallel} if options.max_parallel else {}))
    return executor


def stored_so_far(store: ResultStore, job: "SuiteJob") -> int:
    """Rows the array's shard files hold so far, or with split cells their stored parts (the
    progress bar's count)."""
    if job.split:
        return len(list((store.directory / PARTS_DIR).glob("*/part-*.safetensors")))
    return sum(len(read_rows(store.directory / shard_file(i, job.count))[0]) for i in range(job.count))


def wait(jobs: list, store: ResultStore, cells: int, options: ClusterOptions, executor,
         job: SuiteJob) -> None:
    """Waits for every task, with a progress bar over cells; submits again a task that failed
    (raised, or its process died; not one that ran and stored error rows) up to
    `options.retries` times."""
    tries = [0] * len(jobs)
    with progress.bar(cells * (job.split or 1), "cell parts" if job.split else "cells",
                      "part" if job.split else "cell") as bar:
        while True:
            for number, task in enumerate(jobs):
                if not failed(task):
                    continue
                if tries[number] >= options.retries:
                    raise DiffbenchError(f"array task {number} failed {tries[number] + 1} times; its "
                                         f"log: {task.paths.stderr}: fix the cause, then run again "
                                         "(stored cells are kept)")
                tries[number] += 1
                log.info("array task %d failed: submitted again (%d of %d)", number, tries[number],
                         options.retries)
                jobs[number] = executor.submit(job, number)
            bar.n = min(bar.total, stored_so_far(store, job))
            bar.refresh()
            if all(task.done() and not failed(task) for task in jobs):
                return
            time.sleep(POLL_SECONDS)


def failed(task, block: bool = False) -> bool:
    """Whether the task ended in failure (with `block`, waiting for it to end first)."""
    if not (block or task.done()):
        return False
    try:
        task.result()
    except Exception:   # the task raised or its process died: submitit reports both here
        return True
    return False


def run_on_cluster(suite: str, plugins: tuple[str, ...], results_root: Path, cells: int,
                   name: str, options: ClusterOptions, inception_weights: str | None = None,
                   split: int = 0) -> int:
    """Prepare once, run the suite as one array of shard tasks (of shard x part tasks for split
    cells), wait, merge; returns the rows merged."""
    store = ResultStore(results_root, name)
    store.ensure_writable()
    count = min(cells, options.max_parallel) if options.max_parallel else cells
    if split and options.max_parallel:
        count = max(1, options.max_parallel // split)
    executor = make_executor(options, store.directory / "submitit")
    job = SuiteJob(suite, tuple(plugins), str(results_root), count, inception_weights, split)
    preparing = executor.submit(job)
    log.info("preparing the suite (models, reference statistics) in job %s", preparing.job_id)
    if failed(preparing, block=True):
        raise DiffbenchError(f"preparing {name} failed; its log: {preparing.paths.stderr}")
    jobs = executor.map_array(job, range(job.tasks))
    log.info("submitted %d array task(s): %s", job.tasks, ", ".join(task.job_id for task in jobs))
    wait(jobs, store, cells, options, executor, job)
    if not split:
        return merge_shards(results_root, name).appended
    merging = executor.submit(job, None, True)
    if failed(merging, block=True):
        raise DiffbenchError(f"merging {name}'s split cells failed; its log: {merging.paths.stderr}")
    return merging.result()
