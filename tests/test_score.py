"""`diffbench score` and reference statistics from a file: samples made elsewhere are scored with
a run's protocol; a statistics file stands in for a dataset split and is named in the protocol."""
import hashlib
import pickle

import numpy as np
import pytest

from bench.config import load_suite
from bench.data.datasets import load_dataset
from bench.data.quantize import to_uint8
from bench.quality.metrics import load_extractor, reference_statistics
from bench.run.runner import run_suite
from bench.store import ResultStore
from tests.helpers import TINY_SUITE
from tests.test_cli import one_line_error, run_cli


@pytest.fixture
def samples_npz(tmp_path):
    """The digits8 test split as someone else's samples: an .npz of uint8 N x H x W pixels."""
    test, _ = load_dataset("digits8").split("test")
    path = tmp_path / "samples.npz"
    np.savez(path, images=to_uint8(test).numpy()[:, 0])
    return path


@pytest.fixture
def lenet_stats(tmp_path):
    """digits8's train-split statistics under its LeNet, saved as pytorch-fid does (mu, sigma)."""
    stats, _ = reference_statistics(load_extractor("lenet", "digits8"), "digits8", "train")
    path = tmp_path / "stats" / "digits8-train.npz"
    path.parent.mkdir()
    np.savez(path, mu=stats["mu"], sigma=stats["sigma"])
    return path


def test_score_prints_each_metric_with_its_uncertainty_and_the_protocol(capsys, samples_npz):
    code, out, _ = run_cli(capsys, "score", str(samples_npz), "--ref", "digits8", "--metrics", "fid,kid")
    assert code == 0
    assert "fid=" in out and "±" in out and "kid=" in out and "protocol " in out and "n=359" in out


def test_scoring_the_reference_split_itself_gives_a_smaller_fid_than_another_split(capsys, samples_npz):
    """A sanity anchor: test images against the test split beat them against the train split."""
    fid = {}
    for split in ("train", "test"):
        code, out, _ = run_cli(capsys, "score", str(samples_npz), "--ref", "digits8", "--ref-split", split)
        assert code == 0
        fid[split] = float(out.split("fid=")[1].split()[0])
    assert fid["test"] < fid["train"]


@pytest.mark.parametrize("extra, message", [
    (["--metrics", "class_acc"], "cannot score samples made elsewhere"),
    (["--metrics", "psnr"], "cannot score samples made elsewhere"),
])
def test_metrics_that_need_targets_are_exit_2(capsys, samples_npz, extra, message):
    code, _, err = run_cli(capsys, "score", str(samples_npz), "--ref", "digits8", *extra)
    assert code == 2 and message in one_line_error(err)


def test_samples_of_another_size_are_exit_2(capsys, tmp_path):
    path = tmp_path / "big.npz"
    np.savez(path, images=np.zeros((4, 16, 16), dtype=np.uint8))
    code, _, err = run_cli(capsys, "score", str(path), "--ref", "digits8")
    assert code == 2 and "1x16x16" in one_line_error(err)


def test_a_statistics_file_with_lenet_is_exit_2(capsys, samples_npz, lenet_stats):
    code, _, err = run_cli(capsys, "score", str(samples_npz), "--ref", str(lenet_stats))
    assert code == 2 and "statistics file" in one_line_error(err)


def write_suite_with_stats(write_suite, stats_name: str, extra: str = ""):
    return write_suite(TINY_SUITE.replace("[suite]", f'[suite]\nreference_stats = "{stats_name}"{extra}', 1))


def test_a_suite_with_reference_stats_scores_as_the_dataset_split_does(write_suite, tmp_path, lenet_stats):
    """The same cell against digits8's train statistics, once computed and once from the file:
    the same FID; the file's name and hash are in the protocol, so the fingerprints differ."""
    plain = write_suite(TINY_SUITE)
    run_suite(load_suite(str(plain)), tmp_path / "plain")
    from_split = ResultStore(tmp_path / "plain", "tiny").read()[0][0]
    (tmp_path / "suites" / "stats").mkdir(exist_ok=True)
    (tmp_path / "suites" / "stats" / lenet_stats.name).write_bytes(lenet_stats.read_bytes())
    suite = write_suite_with_stats(write_suite, f"stats/{lenet_stats.name}")
    run_suite(load_suite(str(suite)), tmp_path / "with-stats")
    from_file = ResultStore(tmp_path / "with-stats", "tiny").read()[0][0]
    assert from_file["label"] == from_split["label"]
    assert from_file["metrics"]["fid"]["value"] == pytest.approx(from_split["metrics"]["fid"]["value"], rel=1e-9)
    reference = from_file["protocol"]["reference"]
    assert reference["statistics_file"] == lenet_stats.name
    assert reference["statistics_file_sha256"] == hashlib.sha256(lenet_stats.read_bytes()).hexdigest()
    assert from_file["protocol_fingerprint"] != from_split["protocol_fingerprint"]


def bad_stats(path, kind):
    if kind == "no-sigma":
        np.savez(path, mu=np.zeros(3))
    elif kind == "shapes":
        np.savez(path, mu=np.zeros(3), sigma=np.eye(4))
    elif kind == "dimension":
        np.savez(path, mu=np.zeros(3), sigma=np.eye(3))
    elif kind == "nan":
        sigma = np.eye(128)
        sigma[0, 0] = np.nan
        np.savez(path, mu=np.zeros(128), sigma=sigma)
    elif kind == "pickled":
        np.savez(path, mu=np.array([{"x": 1}], dtype=object), sigma=np.eye(1))
    elif kind == "garbage":
        path.write_bytes(pickle.dumps({"mu": 1}))


@pytest.mark.parametrize("kind, message", [
    ("no-sigma", "no 'mu' and 'sigma'"), ("shapes", "mu must be D and sigma D x D"),
    ("dimension", "3-dimensional statistics"), ("nan", "NaN or inf"),
    ("pickled", "not a readable .npz"), ("garbage", "not a readable .npz"),
    ("missing", "does not exist")])
def test_bad_reference_stats_are_exit_2_before_any_work(capsys, write_suite, tmp_path, kind, message):
    path = tmp_path / "suites" / "stats.npz"
    path.parent.mkdir(exist_ok=True)
    if kind != "missing":
        bad_stats(path, kind)
    suite = write_suite_with_stats(write_suite, "stats.npz")
    code, _, err = run_cli(capsys, "run", str(suite), "--results-dir", str(tmp_path / "results"))
    assert code == 2 and message in one_line_error(err)
    assert not (tmp_path / "results" / "tiny" / "rows.jsonl").exists()


def test_reference_stats_with_a_metric_that_needs_features_is_exit_2(capsys, write_suite, tmp_path, lenet_stats):
    suite = write_suite_with_stats(write_suite, str(lenet_stats), '\nmetrics = ["fid", "kid"]')
    code, _, err = run_cli(capsys, "run", str(suite), "--results-dir", str(tmp_path / "results"))
    assert code == 2 and "need the reference's features" in one_line_error(err)


@pytest.fixture
def tiny_run(write_suite, tmp_path):
    """The tiny suite run into tmp_path/results (24 samples a cell, LeNet FID on digits8)."""
    run_suite(load_suite(str(write_suite())), tmp_path / "results")
    return tmp_path / "results"


@pytest.fixture
def samples_24(tmp_path):
    """24 digits8 test images as a folder of PNGs: the tiny suite's sample count."""
    from PIL import Image
    test, _ = load_dataset("digits8").split("test")
    folder = tmp_path / "their-samples"
    folder.mkdir()
    for i, image in enumerate(to_uint8(test[:24])):
        Image.fromarray(image[0].numpy()).save(folder / f"{i:03d}.png")
    return folder


def append(capsys, samples, results, *extra):
    return run_cli(capsys, "score", str(samples), "--ref", "digits8", "--append", "tiny",
                   "--results-dir", str(results), *extra)


def test_append_stores_a_scored_row_ranked_with_the_runs_of_its_protocol(capsys, tiny_run, samples_24):
    code, out, _ = append(capsys, samples_24, tiny_run, "--label", "their sampler")
    rows, problems = ResultStore(tiny_run, "tiny").read()
    scored = [r for r in rows if r["source"] == "score"]
    assert code == 0 and not problems and len(scored) == 1
    assert scored[0]["label"] == "their sampler" and scored[0]["status"] == "ok"
    assert scored[0]["nfe"] is None and scored[0]["time_per_image_s"] is None
    assert scored[0]["protocol_fingerprint"] == rows[0]["protocol_fingerprint"]
    assert "ranked with 4 stored row(s)" in out
    printed = float(out.split("fid=")[1].split()[0])
    assert scored[0]["metrics"]["fid"]["value"] == pytest.approx(printed, rel=1e-3)


def test_scoring_the_same_samples_again_is_the_same_cell(capsys, tiny_run, samples_24):
    append(capsys, samples_24, tiny_run, "--label", "first")
    append(capsys, samples_24, tiny_run, "--label", "renamed")
    from bench.store import latest_per_cell
    rows, _ = ResultStore(tiny_run, "tiny").read()
    shown = [r["label"] for r in latest_per_cell(rows) if r["source"] == "score"]
    assert shown == ["renamed"]


def test_a_scored_row_with_another_protocol_is_said_to_rank_alone(capsys, tiny_run, samples_npz):
    code, out, _ = append(capsys, samples_npz, tiny_run)   # 359 samples, not the suite's 24
    assert code == 0 and "ranked on its own" in out


@pytest.mark.parametrize("label", ["", "a\u202eb", "x" * 81, "line\nbreak"])
def test_a_bad_label_is_exit_2_before_anything_is_stored(capsys, tiny_run, samples_24, label):
    before = (tiny_run / "tiny" / "rows.jsonl").read_bytes()
    code, _, err = append(capsys, samples_24, tiny_run, "--label", label)
    assert code == 2 and "--label" in one_line_error(err)
    assert (tiny_run / "tiny" / "rows.jsonl").read_bytes() == before


def test_an_invalid_suite_name_is_exit_2(capsys, tmp_path, samples_24):
    code, _, err = run_cli(capsys, "score", str(samples_24), "--ref", "digits8", "--append", "../x",
                           "--results-dir", str(tmp_path))
    assert code == 2 and "suite name" in one_line_error(err)


def test_the_report_shows_a_scored_row_with_na_cost_and_says_why(capsys, tiny_run, samples_24, tmp_path):
    append(capsys, samples_24, tiny_run, "--label", "their sampler")
    code, _, _ = run_cli(capsys, "report", "tiny", "--results-dir", str(tiny_run),
                         "--reports-dir", str(tmp_path / "reports"))
    board = (tmp_path / "reports" / "tiny" / "leaderboard.md").read_text()
    line = next(l for l in board.splitlines() if l.startswith("| their sampler"))
    assert code == 0 and "samples made outside diffbench" in board
    assert "their sampler: samples made elsewhere" in board
    assert line.count("n/a") >= 2      # NFE and time / image
