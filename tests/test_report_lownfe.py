"""The low-NFE report pieces: paired ranks in each NFE column, the tie group at each NFE, the
paired bands of the headline figure, the time pivot and the warm-up notes."""
import pytest

from bench.quality.paired import Difference
from bench.report.board import Group, line_name, pivot, time_pivot
from bench.report.captions import tie_lines, warmup_notes
from bench.report.pairs import Pairs, nfe_columns
from bench.report.plots import paired_bands
from tests.report_rows import row

# Three solvers at NFE 3, 4 and 5 (one model): "a" is best everywhere, "b" is tied with it at
# NFE 3 only, "c" is worse everywhere; "d" is measured at NFE 5 only.
FIDS = {"a": (30.0, 20.0, 10.0), "b": (31.0, 25.0, 15.0), "c": (40.0, 30.0, 20.0)}


def grid_rows():
    rows = [row(f"{name}{nfe}", name, nfe, fid, 0.01 * nfe, model="edm")
            for name, fids in FIDS.items() for nfe, fid in zip((3, 4, 5), fids)]
    return rows + [row("d5", "d", 5, 12.5, 0.05, model="edm")]


def fake_pairs(rows) -> Pairs:
    """Intervals of FID_a - FID_b: +-2 around the difference, and gaps under 2 are ties."""
    differences = {}
    for a in rows:
        for b in rows:
            if a is not b:
                value = a["metrics"]["fid"]["value"] - b["metrics"]["fid"]["value"]
                differences[(a["cell_key"], b["cell_key"])] = Difference(
                    value, value - 2, value + 2, 0.5, 0.5 if abs(value) < 2 else 0.01, "permutation")
    return Pairs(rows, differences)


@pytest.fixture
def rows():
    return grid_rows()


def test_each_nfe_column_ranks_its_rows_and_names_the_tied_group(rows):
    columns = nfe_columns(fake_pairs(rows))
    assert [c.nfe for c in columns] == [3, 4, 5]
    tied = {c.nfe: sorted(r["method"] for r in c.tied) for c in columns}
    assert tied == {3: ["a", "b"], 4: ["a"], 5: ["a"]}
    assert all(c.best["method"] == "a" for c in columns)


def test_the_tie_lines_say_best_and_tied(rows):
    lines = tie_lines(nfe_columns(fake_pairs(rows)))
    assert lines[0] == "NFE 3: best a; tied with it: b (3 rows)."
    assert lines[1] == "NFE 4: best a; no row tied with it (3 rows)."


def test_the_pivot_cells_carry_their_column_ranks(rows):
    names, nfes, grid = pivot(Group("generate", "p1", rows), "fid", fake_pairs(rows))
    ranks = {name[0]: [cell and cell.rank for cell in cells] for name, cells in zip(names, grid)}
    assert nfes == [3, 4, 5]
    assert ranks == {"a": [1, 1, 1], "b": [1, 2, 3], "c": [3, 3, 4], "d": [None, None, 2]}


def test_a_band_is_the_paired_interval_against_the_best(rows):
    bands = paired_bands(nfe_columns(fake_pairs(rows)))
    assert set(bands) == {"a", "b", "c"}             # "d" has one NFE: no line of its own
    assert bands["a"][0] == (3, 30.0, 30.0, 30.0, True)
    assert bands["b"][0] == (3, 31.0, 29.0, 33.0, True)
    assert bands["c"][2] == (5, 20.0, 18.0, 22.0, False)


def test_the_time_pivot_shows_milliseconds_and_the_overhead_in_situ(rows):
    rows[0]["overhead"] = {"ratio_in_situ": 1.0123}
    names, nfes, grid = time_pivot(Group("generate", "p1", rows))
    assert grid[0][0].text == "30 (×1.012)" and grid[0][1].text == "40"


def test_a_line_is_named_by_the_cells_label():
    named = row("k", "ipndm", 5, 10.0, 0.01, hparams={"order": 4, "schedule": "karras"})
    assert line_name(named) == "ipndm"
    assert line_name({**named, "label": "ipndm(afs=True)"}) == "ipndm(afs=True)"


def test_a_warmup_is_reported_apart_from_nfe():
    warmed = row("g", "ipndm", 5, 10.0, 0.01)
    warmed["warmup"] = {"method": "gits", "samples": 256, "evaluations_per_sample": 101,
                        "seconds": 12.5, "shared": True, "sigmas": [80.0, 1.5, 0.002]}
    (note,) = warmup_notes([warmed])
    assert "256 samples x 101 teacher evaluations (25,856 in all, not in any NFE)" in note
    assert "12.5 s" in note and "shared" in note and "NFE 5: 80, 1.5, 0.002" in note


def test_one_warmup_serving_several_cells_is_one_note():
    cells = [row(f"g{nfe}", "ipndm", nfe, 10.0, 0.01) for nfe in (4, 3)]
    for cell, sigmas, shared in zip(cells, ([80.0, 2.0, 0.5, 0.002], [80.0, 1.0, 0.002]), (True, False)):
        cell["warmup"] = {"method": "gits", "samples": 256, "evaluations_per_sample": 101,
                          "seconds": 12.5, "shared": shared, "sigmas": sigmas}
    (note,) = warmup_notes(cells)
    assert "one search shared by the suite's 2 cells" in note
    assert note.endswith("Levels at NFE 3: 80, 1, 0.002; NFE 4: 80, 2, 0.5, 0.002.")
