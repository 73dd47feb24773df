"""The protocol fingerprint names what the reference is computed from, never its computed
statistics (whose last bits differ between CPU kinds); rows stored under the earlier rule are
re-keyed by scripts/refingerprint.py so that the runner recognises them as its own."""
import hashlib
import json
import shutil
import subprocess
import sys

import pytest

import bench.run.cell
import bench.run.suite
from bench.config import load_suite
from bench.paths import REPO_ROOT
from bench.quality.metrics import protocol_fingerprint
from bench.quality.stored_features import load_cell_features, load_reference
from bench.run.runner import run_suite
from tests.helpers import TINY_SUITE, run_suite_text

PROTOCOL = {"extractor": "lenet-digits8", "reference": {"dataset": "digits8", "count": 100,
                                                        "statistics_hash": "aaaa"}}


def earlier_fingerprint(protocol: dict) -> str:
    """The rule before 2026-11-30: the whole protocol, the statistics hash included."""
    return hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:16]


def test_the_fingerprint_ignores_the_reference_statistics_hash():
    other_machine = {**PROTOCOL, "reference": {**PROTOCOL["reference"], "statistics_hash": "bbbb"}}
    assert protocol_fingerprint(other_machine) == protocol_fingerprint(PROTOCOL)


@pytest.mark.parametrize("field, value", [("count", 101), ("dataset", "mnist5k")])
def test_the_fingerprint_names_the_reference(field, value):
    changed = {**PROTOCOL, "reference": {**PROTOCOL["reference"], field: value}}
    assert protocol_fingerprint(changed) != protocol_fingerprint(PROTOCOL)


def refingerprint(*args):
    return subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "refingerprint.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)


@pytest.fixture(scope="module")
def earlier_rows(tmp_path_factory):
    """A tiny suite run under the earlier fingerprint rule, then re-keyed."""
    directory = tmp_path_factory.mktemp("refingerprint")
    with pytest.MonkeyPatch.context() as patch:
        for module in (bench.run.cell, bench.run.suite):   # the cell key's and the stored reference's
            patch.setattr(module, "protocol_fingerprint", earlier_fingerprint)
        results = run_suite_text(directory, TINY_SUITE)
    before = (results / "tiny" / "rows.jsonl").read_text()
    done = refingerprint(results, "tiny")
    assert done.returncode == 0, done.stderr
    return directory, results, before


def rows_in(results):
    return [json.loads(line) for line in (results / "tiny" / "rows.jsonl").read_text().splitlines()]


def test_re_keyed_rows_carry_the_current_fingerprint(earlier_rows):
    _, results, before = earlier_rows
    rows = rows_in(results)
    assert [r["cell_key"] for r in rows] != [json.loads(line)["cell_key"] for line in before.splitlines()]
    assert all(r["protocol_fingerprint"] == protocol_fingerprint(r["protocol"]) for r in rows)


def test_the_runner_recognises_re_keyed_rows_as_its_own(earlier_rows):
    directory, results, before = earlier_rows
    run_suite(load_suite(str(directory / "suites" / "tiny.toml")), results)
    assert len(rows_in(results)) == len(before.splitlines())     # every cell skipped as stored


def test_re_keyed_rows_find_their_features_reference_and_grids(earlier_rows):
    _, results, _ = earlier_rows
    for row in rows_in(results):
        assert load_cell_features(results / "tiny", row["paired"]["features"]).shape[0] == 24
        assert load_reference(results / "tiny", row["paired"]["reference"]) is not None
        assert (results / "tiny" / row["samples_grid"]).is_file()
        assert row["cell_key"] in row["samples_grid"]


def test_a_second_pass_re_keys_nothing(earlier_rows):
    _, results, _ = earlier_rows
    done = refingerprint(results, "tiny")
    assert done.returncode == 0 and "0 row(s) re-keyed" in done.stdout


def test_a_damaged_rows_file_is_refused_and_left_as_it_was(earlier_rows, tmp_path):
    _, results, _ = earlier_rows
    shutil.copytree(results / "tiny", tmp_path / "tiny")
    rows_file = tmp_path / "tiny" / "rows.jsonl"
    damaged = rows_file.read_text()[:-40] + "\n"      # the last row cut short
    rows_file.write_text(damaged)
    done = refingerprint(tmp_path, "tiny")
    assert done.returncode == 2 and "nothing was changed" in done.stderr
    assert rows_file.read_text() == damaged and not (tmp_path / "tiny.refingerprint").exists()
