"""`diffbench score` and reference statistics from a file: samples made elsewhere are scored with
a run's protocol; a statistics file stands in for a dataset split and is named in the protocol."""
import hashlib
import pickle

import numpy as np
import pytest

from bench.config import load_suite
from bench.datasets import load_dataset
from bench.metrics import load_extractor, reference_statistics
from bench.quantize import to_uint8
from bench.runner import run_suite
from bench.store import ResultStore
from tests.conftest import TINY_SUITE
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
