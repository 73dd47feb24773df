import pytest

from bench.report import leaderboard_table, render_report
from bench.store import ResultStore

PROTOCOL = {"extractor": "lenet-x", "extractor_weights_sha256": "ab" * 32, "feature_layer": "fc1",
            "n_samples": 10, "reference": {"dataset": "x", "split": "train", "count": 5}}
PROVENANCE = {"git_sha": "f" * 40, "git_dirty": False, "device_name": "cpu", "device": "cpu",
              "num_threads": 2, "torch": "2", "torch_fidelity": "0.4"}


def row(key, method, nfe, fid, seconds, fingerprint="p1", status="ok"):
    return {"cell_key": key, "method": method, "label": method, "hparams": {"eta": 0.0},
            "steps": nfe, "nfe": nfe, "status": status, "message": None if status == "ok" else "boom",
            "metrics": {"fid": {"value": fid}}, "time_per_image_s": {"median": seconds},
            "throughput_images_per_s": 1 / seconds, "memory": {"kind": "cpu_peak_rss", "peak_bytes": 2**20},
            "protocol": PROTOCOL, "protocol_fingerprint": fingerprint, "provenance": PROVENANCE,
            "samples_grid": None}


def test_best_value_is_bold_and_headers_carry_direction():
    lines = leaderboard_table([row("a", "ddim", 10, 5.0, 0.2), row("b", "ddpm", 10, 7.0, 0.1)])
    assert "FID ↓" in lines[0] and "images / s ↑" in lines[0]
    ddim, ddpm = lines[2], lines[3]
    assert "**5.000**" in ddim and "**7.000**" not in ddpm
    assert "**100.00**" in ddpm     # the faster method has the best time per image


def test_failed_rows_are_listed_but_not_ranked():
    lines = leaderboard_table([row("a", "ddim", 10, 5.0, 0.2), row("b", "bad", 10, 1.0, 0.1, status="error")])
    bad, ddim = lines[2], lines[3]       # rows are ordered by method name
    assert "**5.000**" in ddim and "error: boom" in bad and "1.000" not in bad


@pytest.fixture
def stored(tmp_path):
    store = ResultStore(tmp_path / "results", "s")
    store.ensure_writable()

    def add(*rows):
        for r in rows:
            store.append(r)
    return add, tmp_path


def test_different_fingerprints_get_separate_tables(stored):
    add, tmp_path = stored
    add(row("a", "ddim", 10, 5.0, 0.2, "p1"), row("b", "ddpm", 10, 7.0, 0.1, "p2"))
    text = (render_report("s", tmp_path / "results", tmp_path / "reports") / "leaderboard.md").read_text()
    assert text.count("| method |") == 2 and "**7.000**" in text and "**5.000**" in text


def test_report_writes_the_fid_vs_nfe_plot(stored):
    add, tmp_path = stored
    add(row("a", "ddim", 10, 5.0, 0.2), row("b", "ddim", 20, 4.0, 0.4))
    out = render_report("s", tmp_path / "results", tmp_path / "reports")
    assert (out / "fid_vs_nfe.png").stat().st_size > 1000


def test_report_rerenders_identically(stored):
    add, tmp_path = stored
    add(row("a", "ddim", 10, 5.0, 0.2), row("b", "ddpm", 20, 4.0, 0.4))
    first = (render_report("s", tmp_path / "results", tmp_path / "reports") / "leaderboard.md").read_text()
    second = (render_report("s", tmp_path / "results", tmp_path / "reports") / "leaderboard.md").read_text()
    assert first == second


def test_newest_row_of_a_cell_is_reported(stored):
    add, tmp_path = stored
    add(row("a", "ddim", 10, 9.0, 0.2), row("a", "ddim", 10, 3.0, 0.2))
    text = (render_report("s", tmp_path / "results", tmp_path / "reports") / "leaderboard.md").read_text()
    assert "3.000" in text and "9.000" not in text


def test_a_metric_present_in_some_rows_gets_its_own_column():
    with_acc = row("a", "ddim-cfg", 10, 5.0, 0.2)
    with_acc["metrics"]["class_acc"] = {"value": 0.9, "higher_is_better": True}
    lines = leaderboard_table([with_acc, row("b", "ddim", 10, 6.0, 0.2)])
    assert "class acc ↑" in lines[0]
    assert "**0.900**" in lines[3] and "n/a" in lines[2]   # rows ordered by method name


def test_metric_uncertainty_is_shown_beside_its_value():
    spread = row("a", "ddim", 10, 5.0, 0.2)
    spread["metrics"]["fid"]["uncertainty"] = {"kind": "seed_blocks", "value": 0.25}
    assert "**5.000** ± 0.250" in leaderboard_table([spread])[2]


def test_identical_images_give_a_null_psnr_flagged_inf_that_renders():
    import torch
    from bench.fidelity import psnr_per_image
    from bench.runner import metric
    from bench.statistics import mean_with_error
    pixels = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    with pytest.warns(RuntimeWarning):   # scikit-image divides by a zero MSE
        stored = metric("psnr", *mean_with_error(psnr_per_image(pixels, pixels, crop=2)))
    assert stored["value"] is None and stored["flag"] == "inf"
    identical = row("a", "bicubic", 0, 5.0, 0.2)
    identical["metrics"]["psnr"] = stored
    assert "| inf |" in leaderboard_table([identical, row("b", "sr3", 10, 6.0, 0.2)])[2]
