"""Nothing lost, nothing let in: cache keys, untrusted checkpoints, a full disk."""
import dataclasses
import errno
import os

import pytest
import torch

from bench.cli import main
from bench.config import load_suite
from bench.quality.inception import load_weights
from bench.run.runner import run_suite
from bench.store import ResultStore
from methods import METHODS
from methods.errors import DiffbenchError
from tests.helpers import TINY_SUITE


def keys_of(results):
    return {r["cell_key"] for r in ResultStore(results, "tiny").read()[0]}


@pytest.mark.slow   # trains two models (~50 s); the checkpoint hash in the key is also tested by test_external
def test_a_different_checkpoint_never_shares_a_stored_result(write_suite, tmp_path):
    run_suite(load_suite(str(write_suite())), tmp_path / "results")
    before = keys_of(tmp_path / "results")
    retrained = TINY_SUITE.replace("steps = 20\nbase_channels = 8", "steps = 21\nbase_channels = 8")
    outcome = run_suite(load_suite(str(write_suite(retrained))), tmp_path / "results")
    assert outcome.rows_written == 4 and outcome.cells_skipped == 0
    assert len(keys_of(tmp_path / "results") - before) == 4


@pytest.fixture
def ddim_version_bumped():
    original = METHODS.get("ddim")
    METHODS.unregister("ddim")
    METHODS.register("ddim", dataclasses.replace(original, version=original.version + ".1"))
    yield
    METHODS.unregister("ddim")
    METHODS.register("ddim", original)


def test_a_new_method_version_invalidates_its_rows_only(write_suite, tmp_path, request):
    config_path = write_suite()
    run_suite(load_suite(str(config_path)), tmp_path / "results")
    request.getfixturevalue("ddim_version_bumped")
    outcome = run_suite(load_suite(str(config_path)), tmp_path / "results")
    assert outcome.rows_written == 2 and outcome.cells_skipped == 2   # the two DDIM cells re-run


class Payload:
    """Unpickling this would create a file: what a malicious checkpoint does instead of loading."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_malicious_pickle_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pth"
    with open(path, "wb") as handle:
        torch.save({"layer.weight": torch.zeros(1), "x": Payload(str(marker))}, handle,
                   pickle_protocol=2)
    with pytest.raises(DiffbenchError, match="not a readable state dict"):
        load_weights(path, "Inception weights")
    assert not marker.exists()


def test_forcing_torch_to_unpickle_anything_is_warned_about(tmp_path, monkeypatch):
    path = tmp_path / "weights.pth"
    torch.save({"layer.weight": torch.zeros(1)}, path)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.warns(UserWarning, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        load_weights(path, "Inception weights")


def test_a_full_disk_is_a_clear_error_and_stored_rows_stay_intact(write_suite, tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    run_suite(load_suite(str(write_suite())), results)           # 4 rows stored
    suite = write_suite(TINY_SUITE.replace("steps = [2, 4]", "steps = [2, 4, 5]"))
    rows_path = ResultStore(results, "tiny").rows_path
    stored = rows_path.read_bytes()

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr("bench.store.os.write", full)
    code = main(["run", str(suite), "--results-dir", str(results), "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "rows already stored are intact" in err
    assert rows_path.read_bytes() == stored and len(ResultStore(results, "tiny").read()[0]) == 4


def append_raw(store: ResultStore, row: dict) -> None:
    """A row written past the harness: its checksum is valid, its fields are whatever it has."""
    from bench.store import canonical_json, row_checksum
    store.ensure_writable()
    with open(store.rows_path, "a") as handle:
        handle.write(canonical_json({**row, "checksum": row_checksum(row)}) + "\n")


MISFITS = [lambda r: r.pop("cell_key"), lambda r: r.pop("status"),
           lambda r: r.update(status="maybe"), lambda r: r.update(metrics=[1, 2]),
           lambda r: r.update(metrics={"fid": {"value": "low"}}), lambda r: r.update(steps="ten"),
           lambda r: r.update(time_per_image_s={"median": "fast"}), lambda r: r.update(nfe=None),
           lambda r: r.update(label=7), lambda r: r.update(hparams="eta=0")]


@pytest.mark.parametrize("misfit", range(len(MISFITS)))
def test_a_checksummed_row_that_misfits_the_schema_is_skipped_and_named(tmp_path, misfit):
    from tests.report_rows import row
    bad = row("a", "ddim", 10, 5.0, 0.2)
    MISFITS[misfit](bad)
    store = ResultStore(tmp_path, "s")
    append_raw(store, bad)
    store.append(row("b", "ddpm", 10, 6.0, 0.2))
    rows, problems = store.read()
    assert [r["cell_key"] for r in rows] == ["b"]
    assert len(problems) == 1 and "does not fit the row schema" in problems[0] and ":1:" in problems[0]


def test_run_merge_and_report_survive_a_misfit_row(write_suite, tmp_path, capsys):
    from bench.store import shard_file
    from tests.report_rows import row
    results, suite = tmp_path / "results", write_suite()
    run_suite(load_suite(str(suite)), results)
    store = ResultStore(results, "tiny")
    append_raw(store, {k: v for k, v in row("zz", "ddim", 10, 5.0, 0.2).items() if k != "metrics"})
    assert main(["run", str(suite), "--results-dir", str(results), "--reports-dir",
                 str(tmp_path / "reports")]) == 0
    report = (tmp_path / "reports" / "tiny" / "leaderboard.md").read_text()
    assert "does not fit the row schema" in report and "field 'metrics' missing" in report
    append_raw(ResultStore(results, "tiny", shard_file(0, 2)), row("yy", "ddim", 10, 5.0, 0.2) | {"status": 3})
    capsys.readouterr()
    assert main(["merge", "tiny", "--results-dir", str(results)]) == 2
    assert "does not fit the row schema" in capsys.readouterr().err


def test_a_full_disk_while_saving_a_grid_is_the_harness_error_not_the_methods(
        write_suite, tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    real_replace = os.replace

    def full(source, target):
        if "samples" in str(target):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(source, target)
    monkeypatch.setattr("bench.paths.os.replace", full)
    code = main(["run", str(write_suite()), "--results-dir", str(results), "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "samples" in err
    assert ResultStore(results, "tiny").read()[0] == []
    assert not [p for p in results.rglob("*") if p.name.endswith(".tmp")]


def test_an_unwritable_cache_is_found_before_any_training(write_suite, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("DIFFBENCH_CACHE", str(blocker / "cache"))
    trained = []
    monkeypatch.setattr("bench.models.training._train", lambda *a: trained.append(1))
    code = main(["run", str(write_suite()), "--results-dir", str(tmp_path / "r"), "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and "model cache" in err and "DIFFBENCH_CACHE" in err and trained == []


def test_a_second_run_into_the_same_rows_file_is_refused(write_suite, tmp_path, capsys):
    results, suite = tmp_path / "results", write_suite()
    with ResultStore(results, "tiny").lock():
        code = main(["run", str(suite), "--results-dir", str(results), "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and "is being written by diffbench pid" in err
    assert ResultStore(results, "tiny").read()[0] == []
