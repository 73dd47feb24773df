"""A cell split by seed range (`--split-samples K`): its parts are sampled on their own, and the
merge scores their union once, so the row equals the unsplit one."""
import pytest

from bench.cli import main
from bench.store import ResultStore
from tests.helpers import TINY_SUITE

SPLIT_SUITE = TINY_SUITE.replace("n_samples = 24", "n_samples = 48")   # 6 batches of 8


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The suite unsplit, split into 3 parts in one command, and split part by part + merge."""
    root = tmp_path_factory.mktemp("split")
    suite = root / "tiny.toml"
    suite.write_text(SPLIT_SUITE)
    base = ["run", str(suite), "--no-report"]
    assert main(base + ["--results-dir", str(root / "whole")]) == 0
    assert main(base + ["--results-dir", str(root / "split"), "--split-samples", "3"]) == 0
    for part in range(3):
        assert main(base + ["--results-dir", str(root / "parts"), "--split-samples", "3", "--part", str(part)]) == 0
    assert main(["merge", str(suite), "--results-dir", str(root / "parts")]) == 0
    return root, {side: {r["cell_key"]: r for r in ResultStore(root / side, "tiny").read()[0]}
                  for side in ("whole", "split", "parts")}


@pytest.mark.parametrize("side", ["split", "parts"])
def test_a_split_cell_has_the_unsplit_cells_key_nfe_and_fid(runs, side):
    _, rows = runs
    whole, split = rows["whole"], rows[side]
    assert sorted(split) == sorted(whole) and len(whole) == 4
    for key, row in split.items():
        assert row["status"] == "ok" and row["nfe"] == whole[key]["nfe"]
        assert row["metrics"]["fid"]["value"] == pytest.approx(whole[key]["metrics"]["fid"]["value"], abs=1e-9)
        assert row["metrics"]["fid"]["uncertainty"] == whole[key]["metrics"]["fid"]["uncertainty"]


@pytest.mark.parametrize("side", ["split", "parts"])
def test_a_split_cells_samples_and_features_are_bit_identical(runs, side):
    root, rows = runs
    for key, row in rows[side].items():
        whole = rows["whole"][key]
        assert row["paired"]["features"]["sha256"] == whole["paired"]["features"]["sha256"]
        grid = (root / side / "tiny" / row["samples_grid"]).read_bytes()
        assert grid == (root / "whole" / "tiny" / whole["samples_grid"]).read_bytes()


def test_each_part_times_its_own_batches_after_its_warm_up(runs):
    """6 batches in 3 parts: each part's first batch warms up, so 3 timed batches, not 5."""
    _, rows = runs
    for key, row in rows["split"].items():
        assert len(row["time_per_image_s"]["rounds"]) == 3
        assert len(rows["whole"][key]["time_per_image_s"]["rounds"]) == 5


def test_a_merge_before_every_part_is_stored_writes_nothing(tmp_path, capsys):
    suite = tmp_path / "tiny.toml"
    suite.write_text(SPLIT_SUITE)
    assert main(["run", str(suite), "--no-report", "--results-dir", str(tmp_path), "--split-samples", "3",
                 "--part", "1"]) == 0
    assert main(["merge", str(suite), "--results-dir", str(tmp_path)]) == 0
    assert "0 row(s) merged from their parts, 4 cell(s) still missing a part" in capsys.readouterr().out
    assert ResultStore(tmp_path, "tiny").read()[0] == []


@pytest.mark.parametrize("argv, message", [
    (["--split-samples", "1"], "at least 2"), (["--split-samples", "4"], "at most 3 parts"),
    (["--split-samples", "3", "--part", "3"], "numbered 0..2"), (["--part", "0"], "needs --split-samples")])
def test_bad_split_options_exit_2(tmp_path, capsys, argv, message):
    suite = tmp_path / "tiny.toml"
    suite.write_text(SPLIT_SUITE)
    assert main(["run", str(suite), "--results-dir", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err
