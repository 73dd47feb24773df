import pytest

from bench.cli import main
from bench.report.comparison import compare_rows
from tests.report_rows import row, store_rows


def verdicts(current, baseline):
    deltas, _, _ = compare_rows([current], [baseline])
    return {d.quantity: d.verdict for d in deltas}


@pytest.mark.parametrize("current_fid, verdict", [
    (10.5, "no change"),     # 0.5 < 2 x hypot(0.3, 0.3) = 0.85
    (11.0, "worse"),
    (9.0, "better"),
])
def test_a_fid_change_is_called_only_outside_the_combined_interval(current_fid, verdict):
    baseline = row("a", "ddim", 10, 10.0, 0.2, fid_error=0.3)
    current = row("b", "ddim", 10, current_fid, 0.2, fid_error=0.3)
    assert verdicts(current, baseline)["FID"] == verdict


def test_a_metric_without_uncertainty_gets_no_verdict():
    baseline, current = row("a", "sr3", 10, 10.0, 0.2, psnr=30.0), row("b", "sr3", 10, 10.0, 0.2, psnr=35.0)
    assert verdicts(current, baseline)["PSNR"] == "no interval"


def test_rows_under_different_protocols_are_not_compared():
    baseline = row("a", "ddim", 10, 10.0, 0.2, fid_error=0.3)
    current = row("b", "ddim", 10, 20.0, 0.2, "p2", fid_error=0.3)
    assert verdicts(current, baseline)["FID"].startswith("not comparable")


@pytest.mark.parametrize("seconds, verdict", [(0.204, "no change"), (0.25, "slower"), (0.15, "faster")])
def test_time_changes_need_five_percent(seconds, verdict):
    baseline, current = row("a", "ddim", 10, 10.0, 0.2), row("b", "ddim", 10, 10.0, seconds)
    assert verdicts(current, baseline)["time / image (ms)"] == verdict


def test_cells_held_by_one_side_only_are_named():
    _, only_current, only_baseline = compare_rows([row("a", "ddim", 10, 1.0, 0.2)],
                                                  [row("b", "ddpm", 10, 1.0, 0.2)])
    assert only_current == ["ddim (eta=0.0), 10 steps"] and only_baseline == ["ddpm (eta=0.0), 10 steps"]


def test_report_against_a_results_directory_writes_the_comparison(tmp_path):
    store_rows(tmp_path / "results", "s", row("a", "ddim", 10, 11.0, 0.2, fid_error=0.3))
    baseline = store_rows(tmp_path / "old", "s", row("a", "ddim", 10, 10.0, 0.2, fid_error=0.3))
    code = main(["report", "s", "--results-dir", str(tmp_path / "results"), "--reports-dir",
                 str(tmp_path / "reports"), "--against", str(baseline.directory)])
    assert code == 0
    text = (tmp_path / "reports" / "s" / "leaderboard.md").read_text()
    assert "| FID | 10 | 11 | 1 | ± 0.8485 | worse |" in text
    assert "worse" in (tmp_path / "reports" / "s" / "index.html").read_text()


def test_report_against_nothing_is_a_one_line_error(tmp_path, capsys):
    code = main(["report", "s", "--results-dir", str(tmp_path), "--reports-dir", str(tmp_path / "r"),
                 "--against", "no-such-suite"])
    assert code == 2 and "--against 'no-such-suite'" in capsys.readouterr().err
