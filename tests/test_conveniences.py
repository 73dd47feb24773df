"""What a user expects of the command line: lists as JSON, a hint for a mistyped name or flag, a
dry run that does nothing, and progress bars with an ETA."""
import json

import pytest

from bench.cli import main
from bench.run import progress
from methods import METHODS
from tests.helpers import TINY_SUITE


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("what", ["methods", "datasets", "metrics", "suites", "recipes"])
def test_ls_json_is_one_record_per_entry(capsys, what):
    code, out, _ = run_cli(capsys, "ls", what, "--json")
    entries = json.loads(out)
    assert code == 0 and entries and all(isinstance(e["name"], str) for e in entries)


def test_ls_methods_json_gives_hparams_defaults_ranges_and_the_nfe_rule(capsys):
    _, out, _ = run_cli(capsys, "ls", "methods", "--json")
    methods = {e["name"]: e for e in json.loads(out)}
    assert set(methods) == set(METHODS)
    heun = methods["edm-heun"]
    assert heun["hparams"]["rho"] == 7.0 and heun["limits"]["rho"] == [0.001, 1000.0]
    assert heun["nfe"]["10"] == 19 and heun["nfe"]["1"] == 1     # 2 evaluations a step, one on the last
    assert methods["ddim"]["nfe"]["10"] == 10
    assert methods["k-diffusion:dpm_adaptive"]["nfe"] == {"1": None}   # adaptive: counted when it runs


@pytest.mark.parametrize("argv, hint", [
    (["rnu", "quick"], "did you mean 'run'?"),
    (["ls", "metods"], "did you mean 'methods'?"),
    (["run", "quick", "--dryrun"], "did you mean '--dry-run'?"),
    (["run", "qiuck"], "did you mean 'quick'?"),
])
def test_a_mistyped_command_choice_flag_or_suite_gets_the_closest_name(capsys, argv, hint):
    try:
        code = main(argv)
    except SystemExit as exit:   # argparse's own usage errors
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and hint in err


@pytest.mark.parametrize("edit, hint", [
    (('method = "ddim"', 'method = "dddim"'), "did you mean 'ddim'?"),
    (("grid_size = 16", "grid_sise = 16"), "did you mean 'grid_size'?"),
    (("[suite]", "[suit]"), "did you mean 'suite'?"),
    (("steps = [2, 3]", "steps = [2, 3]\nhparams = { etta = 0.5 }"), "did you mean 'eta'?"),
])
def test_a_mistyped_method_or_key_in_a_suite_gets_the_closest_name(capsys, write_suite, tmp_path, edit, hint):
    path = write_suite(TINY_SUITE.replace(*edit, 1))
    code, _, err = run_cli(capsys, "run", str(path), "--results-dir", str(tmp_path))
    assert code == 2 and hint in err


def test_dry_run_prints_every_cell_with_its_nfe_and_an_estimate_and_runs_nothing(capsys, write_suite, tmp_path):
    path = write_suite(TINY_SUITE.replace("steps = 20", "steps = 13"))   # a model no test has trained
    code, out, _ = run_cli(capsys, "run", str(path), "--dry-run", "--results-dir", str(tmp_path / "results"))
    lines = out.splitlines()
    assert code == 0 and "4 cell(s), 24 samples each in batches of 8" in lines[0]
    assert "[1/4] ddim steps=2 NFE=2 task=generate model=eps ~" in lines[1]
    assert "[4/4] ddpm steps=4 NFE=4 task=generate model=eps ~" in lines[4]
    assert lines[5].startswith("estimated sampling time:")
    assert lines[6].startswith("to train first: eps (eps-digits8, 13 steps)")
    assert not (tmp_path / "results").exists()


def test_progress_bars_show_cells_and_batches_with_an_eta_when_asked(capsys, write_suite, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFBENCH_PROGRESS", "1")
    path = write_suite(TINY_SUITE)
    code, _, err = run_cli(capsys, "run", str(path), "--results-dir", str(tmp_path), "--no-report")
    assert code == 0
    assert "tiny: 100%|" in err and "| 4/4 [" in err and ("cell/s" in err or "s/cell" in err)
    assert "batches: " in err and "/3 [" in err      # 24 samples in batches of 8 (a closed bar's last
                                                     # state is drawn only if 0.1 s have passed)
    assert "<" in err                                # tqdm's elapsed<remaining


@pytest.mark.parametrize("setting, tty, shown", [(None, True, True), (None, False, False),
                                                 ("1", False, True), ("0", True, False)])
def test_bars_are_drawn_on_a_terminal_unless_turned_off(monkeypatch, setting, tty, shown):
    if setting is None:
        monkeypatch.delenv("DIFFBENCH_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("DIFFBENCH_PROGRESS", setting)
    monkeypatch.setattr("sys.stderr.isatty", lambda: tty)
    assert progress.shown() is shown
