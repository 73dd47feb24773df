"""Nothing lost, nothing let in: cache keys, untrusted checkpoints, a full disk."""
import dataclasses
import errno
import os

import pytest
import torch

from bench.cli import main
from bench.config import load_suite
from bench.errors import DiffbenchError
from bench.inception import load_weights
from bench.runner import run_suite
from bench.store import ResultStore
from methods import METHODS
from tests.conftest import TINY_SUITE


def keys_of(results):
    return {r["cell_key"] for r in ResultStore(results, "tiny").read()[0]}


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
