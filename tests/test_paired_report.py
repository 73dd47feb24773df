"""A run stores every cell's features and its reference beside the rows; the report turns them
into statistical ranks (rows tied with the best share rank 1), a pairwise matrix and the width
pairing saves; damaged features leave the report ranking by value, with a note."""
import numpy as np
import pytest

from bench.quality.stored_features import load_cell_features
from bench.report import render_report
from bench.store import ResultStore
from tests.helpers import TINY_SUITE, run_suite_text


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return run_suite_text(tmp_path_factory.mktemp("paired"), TINY_SUITE)


def stored_rows(results):
    rows, problems = ResultStore(results, "tiny").read()
    assert not problems
    return rows


def test_every_cell_stores_its_features_in_seed_order(results):
    for row in stored_rows(results):
        features = load_cell_features(results / "tiny", row["paired"]["features"])
        assert features.shape == (24, row["paired"]["features"]["dim"])
        assert np.isfinite(features).all()
    assert (results / "tiny" / stored_rows(results)[0]["paired"]["reference"]["path"]).is_file()


def test_the_stored_features_give_the_rows_fid(results):
    from bench.quality.paired import fid
    from bench.quality.stored_features import load_reference
    row = stored_rows(results)[0]
    features = load_cell_features(results / "tiny", row["paired"]["features"])
    reference = load_reference(results / "tiny", row["paired"]["reference"])
    assert fid(features, reference) == pytest.approx(row["metrics"]["fid"]["value"], rel=1e-2)


def test_the_report_ranks_fid_statistically_and_says_what_pairing_buys(results, tmp_path):
    out = render_report("tiny", results, tmp_path / "reports")
    board = (out / "leaderboard.md").read_text()
    assert "rank (FID, paired)" in board and "rows statistically tied with the best share rank 1" in board
    assert "times as wide as the paired one" in board
    assert "Pairwise FID comparisons" in (out / "index.html").read_text()


def test_altered_features_leave_ranks_by_value_with_a_note(results, tmp_path):
    import shutil
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    path = copy / "tiny" / stored_rows(copy)[0]["paired"]["features"]["path"]
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    out = render_report("tiny", copy, tmp_path / "reports")
    board = (out / "leaderboard.md").read_text()
    assert "Paired statistics left out" in board and "rank (FID)" in board


@pytest.mark.slow   # a second run of the suite (~45 s)
def test_against_a_run_with_stored_features_compares_fid_paired(results, tmp_path):
    import shutil
    baseline = tmp_path / "baseline"
    shutil.copytree(results / "tiny", baseline)
    out = render_report("tiny", results, tmp_path / "reports", against=baseline)
    lines = [l for l in (out / "leaderboard.md").read_text().splitlines() if "| FID (paired) |" in l]
    assert len(lines) == 4 and all(l.endswith("| no change |") for l in lines)
