"""Every bad input exits 2 with a one-line message naming the thing; nothing stored is damaged."""
import subprocess
import sys

import pytest

from bench.cli import main
from bench.config import load_suite
from bench.data.datasets import load_dataset
from bench.models.recipes import find_model, resolve_recipe
from tests.helpers import TINY_SUITE


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("diffbench: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_help_shows_an_example():
    out = subprocess.run([sys.executable, "-m", "bench", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "diffbench run quick" in out.stdout


@pytest.mark.parametrize("what", ["methods", "datasets", "metrics", "suites", "recipes"])
def test_ls_lists_things(capsys, what):
    code, out, _ = run_cli(capsys, "ls", what)
    assert code == 0 and out.strip()


def test_unknown_suite_exits_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "no-such-suite", "--results-dir", str(tmp_path))
    assert code == 2 and "unknown suite 'no-such-suite'" in one_line_error(err)


@pytest.mark.parametrize("edit, message", [
    (('method = "ddim"', 'method = "dddim"'), "unknown method 'dddim'"),
    (('dataset = "digits8"', 'dataset = "nope"'), "unknown dataset 'nope'"),
    (("[suite]", "[suite\n"), "malformed TOML"),
])
def test_bad_suite_exits_2(capsys, write_suite, tmp_path, edit, message):
    path = write_suite(TINY_SUITE.replace(*edit, 1))
    code, _, err = run_cli(capsys, "run", str(path), "--results-dir", str(tmp_path / "r"))
    assert code == 2 and message in one_line_error(err) and str(path) in err
    assert not (tmp_path / "r").exists()


def test_usage_error_exits_2():
    with pytest.raises(SystemExit) as info:
        main(["run"])
    assert info.value.code == 2


def test_dataset_folder_without_images_exits_2(capsys, write_suite, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    path = write_suite(TINY_SUITE.replace('dataset = "digits8"', f'dataset = "{empty}"')
                       .replace('recipe = "eps-digits8"', 'recipe = "eps"'))
    code, _, err = run_cli(capsys, "run", str(path), "--results-dir", str(tmp_path / "r"))
    assert code == 2 and "no PNG/JPEG images" in one_line_error(err)


def test_unwritable_results_dir_exits_2(capsys, write_suite, tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("keep me")
    code, _, err = run_cli(capsys, "run", str(write_suite()), "--results-dir", str(blocker))
    assert code == 2 and "not writable" in one_line_error(err)
    assert blocker.read_text() == "keep me"


def test_corrupted_checkpoint_exits_2_and_keeps_stored_rows(capsys, write_suite, tmp_path):
    path = write_suite()
    results = tmp_path / "results"
    assert run_cli(capsys, "run", str(path), "--results-dir", str(results),
                   "--reports-dir", str(tmp_path / "reports"))[0] == 0
    rows_file = results / "tiny" / "rows.jsonl"
    stored = rows_file.read_bytes()
    config = load_suite(str(path))
    recipe = resolve_recipe("eps-digits8", "digits8", "test").with_overrides(
        dict(config.model_spec("eps").overrides), "test").for_dataset(load_dataset("digits8"))
    checkpoint = find_model(recipe, load_dataset("digits8"))
    original = checkpoint.read_bytes()
    try:
        checkpoint.write_bytes(original[: len(original) // 2])
        code, _, err = run_cli(capsys, "run", str(path), "--results-dir", str(results))
        assert code == 2 and "checkpoint" in one_line_error(err) and "delete" in err
        assert rows_file.read_bytes() == stored
    finally:
        checkpoint.write_bytes(original)


@pytest.fixture
def failing_method():
    """A registered method whose sampler raises: its cells become `error` rows."""
    from methods.base import METHODS, register_method
    from methods.superres import no_schedule

    def sample_fails(denoiser, x, sigmas, *, rng, cond=None, callback=None):
        raise RuntimeError("this sampler always fails")
    register_method(name="fails-test", family="test", task="generate", model=None,
                    sampler=sample_fails, schedule=no_schedule, version="1", paper="none")
    yield "fails-test"
    METHODS.unregister("fails-test")


def test_failed_cell_exits_1(capsys, write_suite, tmp_path, failing_method):
    path = write_suite(TINY_SUITE.replace('method = "ddpm"', f'method = "{failing_method}"'))
    code, _, err = run_cli(capsys, "run", str(path), "--results-dir", str(tmp_path / "r"),
                           "--reports-dir", str(tmp_path / "reports"))
    assert code == 1 and "failed" in err


def test_report_of_a_suite_without_rows_exits_2_and_writes_nothing(capsys, tmp_path):
    code, _, err = run_cli(capsys, "report", "mnits", "--results-dir", str(tmp_path / "r"),
                           "--reports-dir", str(tmp_path / "rep"))
    assert code == 2 and "--results-dir results/published" in one_line_error(err)
    assert not (tmp_path / "rep").exists()


def test_train_with_an_unknown_recipe_exits_2(capsys):
    code, _, err = run_cli(capsys, "train", "no-such-recipe")
    assert code == 2 and "unknown model recipe 'no-such-recipe'" in one_line_error(err)


def test_train_a_class_conditional_recipe_on_unlabelled_data_exits_2(capsys, tmp_path):
    import numpy as np
    from PIL import Image
    for i in range(4):
        Image.fromarray(np.full((4, 4), 60 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    code, _, err = run_cli(capsys, "train", "eps-cond", "--dataset", str(tmp_path))
    assert code == 2 and "has no labels" in one_line_error(err)


def test_version_names_diffbench_and_what_its_numbers_depend_on(capsys):
    import bench
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and out.startswith(f"diffbench {bench.__version__} (torch ")
    assert "torch-fidelity" in out
