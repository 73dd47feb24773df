"""`diffbench audit`: stored cells re-run and checked against their rows (samples, FID, NFE,
time), on a tiny digits8 suite and on the published quick and mnist suites."""
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.audit import AuditOptions, audit, fid_check, time_check
from bench.cli import main
from bench.paths import REPO_ROOT
from bench.report.gate import FAIL, PASS, UNJUDGED
from bench.store import ResultStore, read_rows
from tests.helpers import TINY_SUITE, run_suite_text

PUBLISHED = REPO_ROOT / "results" / "published"
GENEROUS_TIME = 100.0    # these tests audit reproduction; the time band has its own tests


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    results = run_suite_text(root, TINY_SUITE)
    return root / "suites" / "tiny.toml", results


def copy_results(tiny, tmp_path) -> Path:
    suite, results = tiny
    shutil.copytree(results, tmp_path / "results")
    return tmp_path / "results"


def test_every_cell_of_a_fresh_run_reproduces_exactly_on_the_same_machine(tiny):
    suite, results = tiny
    verdicts = audit(str(suite), results, AuditOptions(cells=4, time_band=GENEROUS_TIME))
    assert len(verdicts) == 4 and not any(v.failed for v in verdicts)
    assert all(v.machine == "same kind" and v.fid.detail.endswith("exactly") for v in verdicts)
    assert all("features of all 24 samples identical" in v.samples.detail for v in verdicts)


def test_the_audit_leaves_stored_results_as_they_were(tiny):
    suite, results = tiny
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    audit(str(suite), results, AuditOptions(cells=1, time_band=GENEROUS_TIME))
    assert {p: p.read_bytes() for p in results.rglob("*") if p.is_file()} == before


def test_the_drawn_cells_follow_the_seed(tiny):
    suite, results = tiny
    def drawn(seed):
        return [v.cell for v in audit(str(suite), results, AuditOptions(cells=2, seed=seed,
                                                                        time_band=GENEROUS_TIME))]
    assert drawn(3) == drawn(3)
    assert len({tuple(drawn(seed)) for seed in range(4)}) > 1


def tamper(results: Path, change) -> None:
    """Rewrite results/tiny/rows.jsonl with `change(row)` applied to every row."""
    path = results / "tiny" / "rows.jsonl"
    rows = read_rows(path, as_stored=True)[0]
    path.unlink()
    for row in rows:
        ResultStore(results, "tiny").append({k: v for k, v in change(row).items() if k != "checksum"})


def test_a_stored_fid_the_rerun_does_not_give_is_a_mismatch(tiny, tmp_path, capsys):
    results = copy_results(tiny, tmp_path)
    def shifted(row):
        return {**row, "metrics": {**row["metrics"], "fid": {**row["metrics"]["fid"],
                                                              "value": row["metrics"]["fid"]["value"] + 1e-9}}}
    tamper(results, shifted)
    assert main(["audit", str(tiny[0]), "--results-dir", str(results), "--cells", "1",
                 "--time-band", str(GENEROUS_TIME)]) == 1
    assert "the same machine kind must give the same FID" in capsys.readouterr().out


def test_a_changed_stored_sample_is_a_mismatch(tiny, tmp_path):
    results = copy_results(tiny, tmp_path)
    for grid in (results / "tiny" / "samples").glob("*.png"):
        pixels = np.array(Image.open(grid))
        pixels[0, 0] = 255 - pixels[0, 0]
        Image.fromarray(pixels).save(grid)
    verdicts = audit(str(tiny[0]), results, AuditOptions(cells=1, time_band=GENEROUS_TIME))
    assert verdicts[0].samples.outcome == FAIL and "1 of" in verdicts[0].samples.detail


def stored_like(seconds, fid=10.0, **provenance):
    return {"time_per_image_s": {"median": seconds}, "metrics": {"fid": {"value": fid}},
            "provenance": {"device": "cpu", **provenance}}


@pytest.mark.parametrize("ratio, outcome", [(1.0, PASS), (1.4, PASS), (1 / 1.4, PASS),
                                            (1.6, FAIL), (1 / 1.6, FAIL)])
def test_time_must_stay_within_its_band_on_the_same_machine_kind(ratio, outcome):
    assert time_check(stored_like(0.01), stored_like(0.01 * ratio), True, 0.5).outcome == outcome


def test_time_is_not_compared_across_machine_kinds():
    assert time_check(stored_like(0.01), stored_like(0.05), False, 0.5).outcome == UNJUDGED


@pytest.mark.parametrize("fid, same_kind, outcome", [(10.0, True, PASS), (10.001, True, FAIL),
                                                     (10.05, False, PASS), (10.2, False, FAIL)])
def test_fid_is_exact_on_the_same_kind_and_within_tolerance_elsewhere(fid, same_kind, outcome):
    assert fid_check(stored_like(0.01), stored_like(0.01, fid), same_kind, 0.01).outcome == outcome


@pytest.mark.parametrize("argv, message", [
    (["--cells", "0"], "--cells"), (["--fid-tolerance", "2"], "--fid-tolerance"),
    (["--output-tolerance", "-1"], "--output-tolerance")])
def test_bad_options_exit_2(tiny, capsys, argv, message):
    suite, results = tiny
    assert main(["audit", str(suite), "--results-dir", str(results), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_suite_without_stored_rows_exits_2(tiny, tmp_path, capsys):
    assert main(["audit", str(tiny[0]), "--results-dir", str(tmp_path)]) == 2
    assert "run the suite before auditing it" in capsys.readouterr().err


def published_audit(suite: str, cells: int) -> list:
    """The published rows were measured on an AVX512 CPU: on another kind the audit's own
    defaults apply (pixels within one level, FID within 1 %)."""
    return audit(suite, PUBLISHED, AuditOptions(cells=cells, seed=0))


@pytest.mark.slow   # re-runs published quick cells (~40 s); a fresh run audited: the tests above
def test_an_audit_of_the_published_quick_suite_passes():
    verdicts = published_audit("quick", 2)
    assert len(verdicts) == 2 and not any(v.failed for v in verdicts), [v.checks() for v in verdicts]


@pytest.mark.slow   # a random mnist cell samples 400 images at up to NFE 100 (minutes on 2 cores)
def test_an_audit_of_the_published_mnist_suite_passes():
    verdicts = published_audit("mnist", 2)
    assert len(verdicts) == 2 and not any(v.failed for v in verdicts), [v.checks() for v in verdicts]
