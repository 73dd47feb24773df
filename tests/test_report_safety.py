"""`diffbench report` never destroys a report: it renders aside and swaps in only when complete;
without rows, with an unusable baseline, a failing figure, an unwritable folder or a full disk it
exits 2 and the report already there keeps every byte."""
import errno
from pathlib import Path

import pytest

from bench.cli import main
from bench.report import plots, render_report
from methods.errors import DiffbenchError
from tests.report_rows import row, store_rows


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def rendered(tmp_path):
    """A suite with rows and its rendered report (with a user's own file in the report folder)."""
    results, reports = tmp_path / "results", tmp_path / "reports"
    store_rows(results, "s", row("a", "ddim", 10, 5.0, 0.2), row("b", "ddpm", 20, 7.0, 0.3), grids=True)
    out = render_report("s", results, reports)
    (out / "notes.txt").write_text("mine")
    return results, reports, out, snapshot(out)


def leftovers(reports: Path) -> list[str]:
    return sorted(p.name for p in reports.iterdir() if p.name.startswith("."))


def run_report(capsys, *args):
    code = main(["report", *map(str, args)])
    return code, capsys.readouterr().err


def test_rendering_again_keeps_a_users_own_files(rendered):
    results, reports, out, before = rendered
    render_report("s", results, reports)
    assert snapshot(out) == before and leftovers(reports) == []


def test_a_suite_with_no_rows_exits_2_and_leaves_the_published_report(rendered, tmp_path, capsys):
    _, reports, out, before = rendered
    code, err = run_report(capsys, "s", "--results-dir", tmp_path / "empty", "--reports-dir", reports)
    assert code == 2 and "no stored rows" in err and "--results-dir results/published" in err
    assert snapshot(out) == before and leftovers(reports) == []


def test_a_failing_figure_leaves_the_old_report(rendered, monkeypatch):
    results, reports, out, before = rendered
    store_rows(results, "s", row("c", "flow", 10, 3.0, 0.1))

    def broken(rows, path):
        raise ValueError("the plot broke")
    monkeypatch.setattr(plots, "fid_vs_nfe", broken)
    with pytest.raises(DiffbenchError, match="rendering the report failed .*the plot broke"):
        render_report("s", results, reports)
    assert snapshot(out) == before and leftovers(reports) == []


def test_a_full_disk_while_writing_leaves_the_old_report(rendered, monkeypatch):
    results, reports, out, before = rendered
    real_write_text = Path.write_text

    def full(self, *args, **kwargs):
        if self.name == "tables.tex":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_text(self, *args, **kwargs)
    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(DiffbenchError, match="No space left on device"):
        render_report("s", results, reports)
    assert snapshot(out) == before and leftovers(reports) == []


def test_an_unwritable_reports_folder_exits_2(rendered, tmp_path, capsys):
    results = rendered[0]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, err = run_report(capsys, "s", "--results-dir", results, "--reports-dir", blocker / "reports")
    assert code == 2 and "reports folder" in err and "not writable" in err


@pytest.mark.parametrize("baseline, message", [
    ("missing/rows.jsonl", "no such file or folder"),
    ("no-such-suite", "no results at"),
    ("empty.jsonl", "holds no intact diffbench row (no rows)"),
    ("garbage.jsonl", "holds no intact diffbench row (2 damaged"),
    ("/etc/passwd", "holds no intact diffbench row"),
    ("folder", "a folder without a rows.jsonl"),
])
def test_an_unusable_baseline_exits_2_before_anything_is_written(rendered, tmp_path, capsys,
                                                                  baseline, message):
    results, reports, out, before = rendered
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "garbage.jsonl").write_text("not json\n{\"a\": 1}\n")
    (tmp_path / "folder").mkdir()
    against = baseline if baseline.startswith("/") or baseline == "no-such-suite" else tmp_path / baseline
    if baseline == "missing/rows.jsonl":
        against = tmp_path / "missing" / "rows.jsonl"
    code, err = run_report(capsys, "s", "--results-dir", results, "--reports-dir", reports,
                           "--against", against)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert snapshot(out) == before and leftovers(reports) == []
