"""Job-array runs: `run --shard i/N` runs disjoint cells into its own file, `merge` combines the
files and refuses what would corrupt the results."""
import json

import pytest

from bench.cli import main
from bench.config import load_suite
from bench.merge import merge_shards
from bench.run.runner import run_suite, shard_cells
from bench.store import ResultStore, shard_file
from methods.errors import DiffbenchError
from tests.report_rows import row


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_shards_are_disjoint_and_cover_the_suite(count):
    cells = list(range(7))
    taken = [number for index in range(count) for number, _ in shard_cells(cells, (index, count))]
    assert sorted(taken) == list(range(1, 8))


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """The tiny suite run whole, and as two shards merged."""
    from tests.helpers import TINY_SUITE
    root = tmp_path_factory.mktemp("shards")
    (root / "tiny.toml").write_text(TINY_SUITE)
    config = load_suite(str(root / "tiny.toml"))
    run_suite(config, root / "whole")
    for index in range(2):
        run_suite(config, root / "sharded", shard=(index, 2))
    return root, config


def test_each_shard_writes_only_its_own_file(sharded):
    root, config = sharded
    store = ResultStore(root / "sharded", "tiny")
    assert not store.rows_path.exists()
    counts = [len(ResultStore(root / "sharded", "tiny", shard_file(i, 2)).read()[0]) for i in range(2)]
    assert counts == [2, 2] and sum(counts) == len(config.cells)


def test_merged_shards_hold_the_rows_of_a_whole_run(sharded):
    root, _ = sharded
    outcome = merge_shards(root / "sharded", "tiny")
    assert (outcome.shards, outcome.appended) == (2, 4)
    merged = {r["cell_key"]: r for r in ResultStore(root / "sharded", "tiny").read()[0]}
    whole = {r["cell_key"]: r for r in ResultStore(root / "whole", "tiny").read()[0]}
    assert merged.keys() == whole.keys()
    for key, r in merged.items():
        assert r["metrics"]["fid"]["value"] == pytest.approx(whole[key]["metrics"]["fid"]["value"], rel=1e-9)
    assert merge_shards(root / "sharded", "tiny").appended == 0   # merging twice adds nothing


def shard_store(tmp_path, index, *rows):
    store = ResultStore(tmp_path, "s", shard_file(index, 2))
    store.ensure_writable()
    for r in rows:
        store.append(r)
    return store


def test_two_completed_rows_of_one_cell_are_both_kept_and_counted(tmp_path):
    shard_store(tmp_path, 0, row("a", "ddim", 10, 5.0, 0.2))
    shard_store(tmp_path, 1, row("a", "ddim", 10, 6.0, 0.2))
    outcome = merge_shards(tmp_path, "s")
    assert outcome.appended == 2 and outcome.repeated_cells == 1
    assert [r["metrics"]["fid"]["value"] for r in ResultStore(tmp_path, "s").read()[0]] == [5.0, 6.0]


def test_duplicate_cells_already_in_rows_jsonl_do_not_stop_a_merge(tmp_path):
    """What two concurrent runs into one folder leave: a cell computed twice in rows.jsonl."""
    main_store = ResultStore(tmp_path, "s")
    main_store.ensure_writable()
    main_store.append(row("a", "ddim", 10, 5.0, 0.2))
    main_store.append(row("a", "ddim", 10, 5.5, 0.2))
    shard_store(tmp_path, 0, row("b", "ddpm", 10, 7.0, 0.2))
    outcome = merge_shards(tmp_path, "s")
    assert outcome.appended == 1 and outcome.repeated_cells == 1
    assert merge_shards(tmp_path, "s").appended == 0


def test_a_damaged_shard_line_stops_the_merge_and_names_it(tmp_path):
    shard_store(tmp_path, 0, row("a", "ddim", 10, 5.0, 0.2))
    damaged = shard_store(tmp_path, 1, row("b", "ddpm", 10, 6.0, 0.2)).rows_path
    damaged.write_bytes(damaged.read_bytes().replace(b'"ddpm"', b'"ddpn"'))
    main_store = ResultStore(tmp_path, "s")
    main_store.append(row("c", "flow", 10, 1.0, 0.2))
    before = main_store.rows_path.read_bytes()
    with pytest.raises(DiffbenchError, match=r"rows.shard-1-of-2.jsonl:1: damaged row"):
        merge_shards(tmp_path, "s")
    assert main_store.rows_path.read_bytes() == before


def test_merge_via_the_cli(tmp_path, capsys):
    shard_store(tmp_path, 0, row("a", "ddim", 10, 5.0, 0.2))
    assert main(["merge", "s", "--results-dir", str(tmp_path)]) == 0
    assert "1 row(s) appended" in capsys.readouterr().out
    assert [json.loads(line)["cell_key"] for line in ResultStore(tmp_path, "s").rows_path.open()] == ["a"]


def test_merge_without_shards_exits_2(tmp_path, capsys):
    assert main(["merge", "s", "--results-dir", str(tmp_path)]) == 2
    assert "no shard files" in capsys.readouterr().err


@pytest.mark.parametrize("shard", ["2/2", "x", "1/0", "-1/2"])
def test_a_bad_shard_is_a_usage_error(shard):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "quick", "--shard", shard])
    assert exit_.value.code == 2
