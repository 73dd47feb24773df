import json

import pytest

from bench.rows import finite_or_none
from bench.store import ResultStore, latest_per_cell, read_rows, to_dataframe
from methods.errors import DiffbenchError
from tests.report_rows import row as report_row


def row(key, status="ok", fid=1.0):
    return report_row(key, "ddim", 10, fid, 0.2, status=status)



def test_appended_rows_read_back_with_checksums(tmp_path):
    store = ResultStore(tmp_path, "s")
    store.ensure_writable()
    store.append(row("a"))
    store.append(row("b"))
    rows, problems = store.read()
    assert [r["cell_key"] for r in rows] == ["a", "b"] and problems == []


def test_half_written_last_line_is_skipped_and_sealed(tmp_path):
    store = ResultStore(tmp_path, "s")
    store.ensure_writable()
    store.append(row("a"))
    with open(store.rows_path, "ab") as handle:
        handle.write(b'{"cell_key": "half')          # a writer killed mid-line
    rows, problems = store.read()
    assert [r["cell_key"] for r in rows] == ["a"] and len(problems) == 1
    store.append(row("b"))
    rows, problems = store.read()
    assert [r["cell_key"] for r in rows] == ["a", "b"] and len(problems) == 1


def test_a_flipped_byte_is_detected_by_the_checksum(tmp_path):
    store = ResultStore(tmp_path, "s")
    store.ensure_writable()
    store.append(row("a", fid=12.5))
    store.append(row("b"))
    text = store.rows_path.read_text().replace("12.5", "13.5", 1)
    store.rows_path.write_text(text)
    rows, problems = read_rows(store.rows_path)
    assert [r["cell_key"] for r in rows] == ["b"]
    assert "checksum mismatch" in problems[0] or "damaged" in problems[0]


def test_completed_keys_include_ok_and_nonfinite_but_not_error(tmp_path):
    store = ResultStore(tmp_path, "s")
    store.ensure_writable()
    for key, status in [("a", "ok"), ("b", "nonfinite"), ("c", "error")]:
        store.append(row(key, status))
    assert store.completed_keys() == {"a", "b"}


def test_unwritable_results_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(DiffbenchError, match="not writable"):
        ResultStore(blocker, "s").ensure_writable()
    assert blocker.read_text() == "a file where a directory should be"


@pytest.mark.parametrize("value, expected", [(float("nan"), (None, "nan")), (float("inf"), (None, "inf")),
                                             (2.5, (2.5, None)), (None, (None, None))])
def test_non_finite_numbers_become_null_plus_flag(value, expected):
    assert finite_or_none(value) == expected


def test_nan_cannot_be_written(tmp_path):
    store = ResultStore(tmp_path, "s")
    store.ensure_writable()
    with pytest.raises(ValueError):
        store.append(row("a", fid=float("nan")))
    assert not store.rows_path.exists() or store.rows_path.read_text() == ""


def test_latest_row_per_cell_wins(tmp_path):
    rows = [row("a", fid=1.0), row("b"), row("a", fid=2.0)]
    assert [r["metrics"]["fid"]["value"] for r in latest_per_cell(rows)] == [2.0, 1.0]


def test_the_newest_row_by_creation_time_wins_over_file_order():
    older, newer = row("a", fid=1.0), row("a", fid=2.0)
    older["created_at"], newer["created_at"] = "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"
    assert [r["metrics"]["fid"]["value"] for r in latest_per_cell([newer, older])] == [2.0]


def test_dataframe_flattens_nested_fields():
    frame = to_dataframe([row("a", fid=3.0)])
    assert frame.loc[0, "metrics.fid.value"] == 3.0


def test_rows_are_single_json_lines(tmp_path):
    store = ResultStore(tmp_path, "s")
    store.ensure_writable()
    store.append(row("a"))
    lines = store.rows_path.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["cell_key"] == "a"


@pytest.mark.parametrize("field, value, problem", [
    ("metrics", {"fid": {"value": "12.3"}}, "'value' has the wrong type (str)"),
    ("metrics", {"fid": {"value": 1.0, "uncertainty": 0.2}}, "'uncertainty' is not an object"),
    ("time_per_image_s", {"median": 0.1, "iqr": True}, "'iqr' has the wrong type (bool)"),
    ("model", {"recipe": "eps"}, "'cache_key' missing"),
    ("hparams", ["eta", 0.0], "is not an object"),
    ("nfe", None, "an ok row without nfe"),
    ("source", "elsewhere", "source 'elsewhere' is not"),
])
def test_a_nested_misfit_is_named(field, value, problem):
    from bench.rows import row_problem
    stored = {**row("a"), field: value}
    assert problem in row_problem(stored)


def test_a_scored_row_fits_without_nfe_or_time():
    from bench.rows import row_problem
    scored = {**row("a"), "source": "score", "nfe": None, "time_per_image_s": None,
              "samples": {"path": "s/", "content_sha256": "ab", "count": 5}}
    assert row_problem(scored) is None


def test_a_row_read_back_has_every_optional_field(tmp_path):
    store = ResultStore(tmp_path, "s")
    store.ensure_writable()
    sparse = {k: v for k, v in row("a").items() if k not in ("provenance", "overhead", "memory")}
    store.append(sparse)
    (read,), _ = store.read()
    assert read["provenance"] == {} and read["overhead"] is None and read["memory"] is None
    assert read["metrics"]["fid"]["flag"] is None and read["protocol"]["reference"] == {"dataset": "x", "split": "train", "count": 5}
