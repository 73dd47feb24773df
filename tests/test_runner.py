import pytest
import torch

from bench.config import load_suite
from bench.run.runner import run_suite
from bench.store import ResultStore
from methods import METHODS
from methods.base import register_method
from methods.ddpm import respaced_sigmas
from tests.helpers import TINY_SUITE


@pytest.fixture
def broken_methods():
    """Temporarily registered methods that produce NaN or raise."""
    def nan_sampler(denoiser, x, sigmas, *, rng, cond=None, callback=None):
        denoiser(x, sigmas[0], cond)
        return x * float("nan")

    def raising_sampler(denoiser, x, sigmas, *, rng, cond=None, callback=None):
        raise RuntimeError("sampler exploded")

    for name, sampler in [("nan-test", nan_sampler), ("raise-test", raising_sampler)]:
        register_method(name=name, family="test", task="generate", model="eps", sampler=sampler,
                        schedule=respaced_sigmas, defaults={}, version="1",
                        expected_nfe=lambda s: 1, paper="test")
    yield
    METHODS.unregister("nan-test")
    METHODS.unregister("raise-test")


def rows_of(results, suite="tiny"):
    rows, problems = ResultStore(results, suite).read()
    assert problems == []
    return rows


def test_suite_writes_one_ok_row_per_cell(write_suite, tmp_path):
    outcome = run_suite(load_suite(str(write_suite())), tmp_path / "results")
    rows = rows_of(tmp_path / "results")
    assert outcome.failed == 0 and len(rows) == 4
    assert {r["status"] for r in rows} == {"ok"}
    assert [r["nfe"] for r in rows] == [2, 3, 2, 4]
    assert all(r["metrics"]["fid"]["value"] > 0 for r in rows)


def test_row_carries_protocol_and_provenance(write_suite, tmp_path):
    run_suite(load_suite(str(write_suite())), tmp_path / "results")
    row = rows_of(tmp_path / "results")[0]
    assert row["protocol"]["extractor"] == "lenet-digits8"
    assert row["protocol"]["n_samples"] == 24
    assert row["memory"]["kind"].startswith("cpu_peak_rss")
    assert len(row["time_per_image_s"]["rounds"]) == 2   # 3 batches, 1 warm-up excluded
    for key in ("git_sha", "torch", "device_name", "tf32_matmul", "checkpoint_sha256", "dataset_hash"):
        assert key in row["provenance"]


def test_resolved_config_is_written_beside_results(write_suite, tmp_path):
    run_suite(load_suite(str(write_suite())), tmp_path / "results")
    import json
    resolved = json.loads((tmp_path / "results" / "tiny" / "config.json").read_text())
    assert resolved["cells"][0]["hparams"] == {"eta": 0.0, "clip_denoised": True}
    assert resolved["models"]["eps"]["network"]["base_channels"] == 8


def test_rerun_skips_stored_cells(write_suite, tmp_path):
    config = load_suite(str(write_suite()))
    run_suite(config, tmp_path / "results")
    again = run_suite(config, tmp_path / "results")
    assert again.rows_written == 0 and again.cells_skipped == 4
    assert len(rows_of(tmp_path / "results")) == 4


def test_changing_a_hyperparameter_makes_a_new_cell(write_suite, tmp_path):
    run_suite(load_suite(str(write_suite())), tmp_path / "results")
    changed = TINY_SUITE.replace('method = "ddim"', 'method = "ddim"\nhparams = { eta = 0.5 }')
    outcome = run_suite(load_suite(str(write_suite(changed))), tmp_path / "results")
    assert outcome.rows_written == 2 and outcome.cells_skipped == 2


def test_non_finite_sampler_gives_nonfinite_row_and_suite_goes_on(write_suite, tmp_path, broken_methods):
    text = TINY_SUITE + '\n[[cells]]\nmethod = "nan-test"\nsteps = [1]\n[[cells]]\nmethod = "raise-test"\nsteps = [1]\n'
    outcome = run_suite(load_suite(str(write_suite(text))), tmp_path / "results")
    rows = {r["method"]: r for r in rows_of(tmp_path / "results")}
    assert rows["nan-test"]["status"] == "nonfinite" and rows["nan-test"]["samples_grid"] is None
    assert rows["raise-test"]["status"] == "error" and "sampler exploded" in rows["raise-test"]["message"]
    assert rows["ddpm"]["status"] == "ok" and outcome.failed == 2


def test_samples_do_not_depend_on_batch_size(write_suite, tmp_path):
    """The stored grid (first 16 samples) is identical when the suite's batch size changes."""
    import numpy as np
    from PIL import Image
    grids = []
    for batch in (8, 12):
        text = TINY_SUITE.replace("batch_size = 8", f"batch_size = {batch}")
        results = tmp_path / f"results-{batch}"
        run_suite(load_suite(str(write_suite(text))), results)
        row = rows_of(results)[2]  # ddpm, stochastic
        grids.append(np.asarray(Image.open(results / "tiny" / row["samples_grid"])))
    assert (grids[0] == grids[1]).all()


@pytest.mark.parametrize("kind, method, steps, nfe", [
    ("edm", "edm-heun", 3, 5), ("edm", "edm-stochastic", 3, 5), ("edm", "edm-euler-ancestral", 3, 3),
    ("flow", "flow-euler", 3, 3), ("flow", "flow-heun", 3, 5)])
def test_each_model_kind_trains_and_runs_through_the_harness(write_suite, tmp_path, kind, method, steps, nfe):
    text = TINY_SUITE + f"""
[models.{kind}]
recipe = "{kind}"
steps = 20
base_channels = 8
batch_size = 32

[[cells]]
method = "{method}"
steps = [{steps}]
"""
    run_suite(load_suite(str(write_suite(text))), tmp_path / "results")
    row = {r["method"]: r for r in rows_of(tmp_path / "results")}[method]
    assert row["status"] == "ok" and row["nfe"] == nfe and row["model"]["recipe"] == kind


COND_SUITE = TINY_SUITE + """
[models.eps-cond]
recipe = "eps-cond"
steps = 20
base_channels = 8
batch_size = 32

[[cells]]
method = "ddim-cfg"
steps = [3]
sweep = { cfg_scale = [1.0, 3.0] }
"""


@pytest.fixture(scope="module")
def guided_rows(tmp_path_factory):
    folder = tmp_path_factory.mktemp("guided")
    (folder / "suites").mkdir()
    path = folder / "suites" / "tiny.toml"
    path.write_text(COND_SUITE)
    run_suite(load_suite(str(path)), folder / "results")
    return rows_of(folder / "results")


def test_guided_cells_count_both_evaluations_and_report_class_accuracy(guided_rows):
    rows = [r for r in guided_rows if r["method"] == "ddim-cfg"]
    by_scale = {r["hparams"]["cfg_scale"]: r for r in rows}
    assert by_scale[1.0]["nfe"] == 3 and by_scale[3.0]["nfe"] == 6
    for row in rows:
        assert 0.0 <= row["metrics"]["class_acc"]["value"] <= 1.0
    assert "class_acc" not in guided_rows[0]["metrics"]   # unconditional ddim


def test_guided_cells_time_the_bare_forward_on_the_doubled_batch(guided_rows):
    guided = next(r for r in guided_rows if r["hparams"].get("cfg_scale") == 3.0)["overhead"]
    assert guided["rows_per_call"] == 16 and guided["denoiser_calls"] == 3


def test_a_users_npz_dataset_runs_end_to_end(write_suite, tmp_path):
    import numpy as np

    from bench.data.datasets import load_dataset
    digits = load_dataset("digits8")
    pixels = ((digits.images[:400, 0] + 1) * 127.5).round().to(torch.uint8).numpy()
    np.savez(tmp_path / "mydigits.npz", images=pixels, labels=digits.labels[:400].numpy())
    text = (TINY_SUITE.replace('dataset = "digits8"', f'dataset = "{tmp_path / "mydigits.npz"}"')
            .replace('recipe = "eps-digits8"', 'recipe = "eps"'))
    run_suite(load_suite(str(write_suite(text))), tmp_path / "results")
    rows = rows_of(tmp_path / "results")
    assert {r["status"] for r in rows} == {"ok"} and rows[0]["dataset"] == "user-mydigits"
    assert rows[0]["protocol"]["extractor"] == "lenet-user-mydigits"


def test_summary_of_a_row_with_a_null_fid_does_not_crash():
    from bench.rows import complete
    from bench.run.runner import summarise
    row = complete({"status": "ok", "nfe": 3, "metrics": {"fid": {"value": None, "flag": "nan"}},
                    "time_per_image_s": {"median": 0.01}})
    assert "fid=null (nan)" in summarise(row)


@pytest.fixture(scope="module")
def profiled_rows(tmp_path_factory):
    folder = tmp_path_factory.mktemp("profiled")
    (folder / "suites").mkdir()
    path = folder / "suites" / "tiny.toml"
    path.write_text(TINY_SUITE.replace("grid_size = 16", "grid_size = 16\nprofile = true"))
    run_suite(load_suite(str(path)), folder / "results")
    return rows_of(folder / "results")


def test_rows_carry_the_sampler_overhead_ratio(profiled_rows):
    for row in profiled_rows:
        overhead = row["overhead"]
        assert overhead["ratio"] > 0 and overhead["rows_per_call"] == 8
        assert overhead["denoiser_calls"] == row["nfe"] and overhead["ratio_in_situ"] >= 1.0
        assert overhead["ratio"] == pytest.approx(
            overhead["batch_seconds"] / (overhead["denoiser_calls"] * overhead["bare_forward_s"]))


def test_profile_option_adds_a_breakdown_per_cell(profiled_rows):
    assert [r["profile"]["denoiser_calls"] for r in profiled_rows] == [2, 3, 2, 4]
    assert all(r["profile"]["flops_per_image"] > 0 for r in profiled_rows)


@pytest.mark.gpu
def test_a_suite_runs_on_cuda_with_autotuning_and_a_profile(write_suite, tmp_path):
    text = TINY_SUITE.replace("grid_size = 16", 'grid_size = 16\ndevice = "cuda"\nprofile = true')
    run_suite(load_suite(str(write_suite(text))), tmp_path / "results")
    rows = rows_of(tmp_path / "results")
    assert {r["status"] for r in rows} == {"ok"}
    assert all(r["provenance"]["cudnn_benchmark"] for r in rows)
    assert rows[0]["memory"]["kind"] == "cuda_peak_allocated"
    assert [r["profile"]["denoiser_calls"] for r in rows] == [2, 3, 2, 4]


@pytest.mark.gpu
def test_a_compiled_denoiser_compiles_only_in_the_warm_up(write_suite, tmp_path):
    text = TINY_SUITE.replace("grid_size = 16", 'grid_size = 16\ndevice = "cuda"\ncompile = true')
    run_suite(load_suite(str(write_suite(text))), tmp_path / "results")
    rows = rows_of(tmp_path / "results")
    assert {r["status"] for r in rows} == {"ok"} and all(r["compiled"] for r in rows)
