"""Training curves: EMA snapshots kept along training (resumable, under the model's cache key),
train-curve cells generating from them, their refusals, and the report's curve and time-to-FID."""
import json

import pytest
import torch

from bench.config import load_suite
from bench.models.checkpoints import load_checkpoint
from bench.models.training import TrainBudget, snapshot_path, train
from bench.report import render_report
from bench.report.curves import CurvePoint, first_reaching, interval, time_to_fid
from bench.store import ResultStore
from methods.errors import DiffbenchError
from tests.helpers import run_suite_text
from tests.test_training import make_problem

BUDGET = TrainBudget(steps=40, batch_size=8, lr=1e-2, warmup_steps=5, checkpoint_every=10,
                     precision="fp32")
SNAPSHOTS = (10, 25, 40)


def snapshot(directory, step):
    return load_checkpoint(snapshot_path(directory, step), "snapshot")


def assert_same_weights(a, b):
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_the_last_snapshot_is_the_final_model(tmp_path):
    model, loss_fn = make_problem()
    train(model, loss_fn, 64, BUDGET, tmp_path, "t", {}, snapshots=SNAPSHOTS)
    final, _ = load_checkpoint(tmp_path / "model.safetensors", "final")
    assert_same_weights(snapshot(tmp_path, 40)[0], final)


def test_snapshots_record_steps_images_and_growing_training_seconds(tmp_path):
    model, loss_fn = make_problem()
    train(model, loss_fn, 64, BUDGET, tmp_path, "t", {}, snapshots=SNAPSHOTS)
    metas = [snapshot(tmp_path, step)[1] for step in SNAPSHOTS]
    assert [m["step"] for m in metas] == list(SNAPSHOTS)
    assert [m["images_seen"] for m in metas] == [s * BUDGET.batch_size for s in SNAPSHOTS]
    seconds = [m["train_seconds"] for m in metas]
    assert 0 < seconds[0] < seconds[1] < seconds[2]


def test_a_snapshot_holds_the_ema_weights_of_its_step_not_the_final_ones(tmp_path):
    model, loss_fn = make_problem()
    train(model, loss_fn, 64, BUDGET, tmp_path, "t", {}, snapshots=SNAPSHOTS)
    early, late = snapshot(tmp_path, 10)[0], snapshot(tmp_path, 40)[0]
    assert not torch.equal(early["weight"], late["weight"])


def test_interrupted_training_resumes_to_identical_snapshots(tmp_path):
    model, loss_fn = make_problem()
    train(model, loss_fn, 64, BUDGET, tmp_path / "straight", "t", {}, snapshots=SNAPSHOTS)
    calls = []

    def dies_at_step_33(net, index, generator):
        calls.append(1)
        if len(calls) > 33:
            raise KeyboardInterrupt   # after the step-30 state and the step-25 snapshot
        return loss_fn(net, index, generator)

    model, _ = make_problem()
    with pytest.raises(KeyboardInterrupt):
        train(model, dies_at_step_33, 64, BUDGET, tmp_path / "resumed", "t", {}, snapshots=SNAPSHOTS)
    model, loss_fn = make_problem()
    train(model, loss_fn, 64, BUDGET, tmp_path / "resumed", "t", {}, snapshots=SNAPSHOTS)
    for step in SNAPSHOTS:
        assert_same_weights(snapshot(tmp_path / "resumed", step)[0], snapshot(tmp_path / "straight", step)[0])


def test_a_finished_model_asked_for_a_new_snapshot_trains_again_to_the_same_weights(tmp_path):
    model, loss_fn = make_problem()
    train(model, loss_fn, 64, BUDGET, tmp_path / "once", "t", {}, snapshots=SNAPSHOTS)
    model, loss_fn = make_problem()
    train(model, loss_fn, 64, BUDGET, tmp_path / "twice", "t", {})      # no snapshots kept
    model, loss_fn = make_problem()
    train(model, loss_fn, 64, BUDGET, tmp_path / "twice", "t", {}, snapshots=SNAPSHOTS)
    for step in SNAPSHOTS:
        assert_same_weights(snapshot(tmp_path / "twice", step)[0], snapshot(tmp_path / "once", step)[0])


CURVE_SUITE = """
[suite]
dataset = "digits8"
n_samples = 24
batch_size = 8
grid_size = 8
metrics = ["fid"]

[models.edm]
recipe = "edm"
steps = 20
base_channels = 8
channel_mult = [1, 2]

[models.eps]
recipe = "eps-digits8"
steps = 20
base_channels = 8

[[cells]]
method = "edm-heun"
steps = [3]
train_step = [5, 20]

[[cells]]
method = "ddim"
steps = [4]
train_step = [5, 20]

[[cells]]
method = "edm-heun"
steps = [3]
"""


@pytest.fixture(scope="module")
def curve_results(tmp_path_factory):
    return run_suite_text(tmp_path_factory.mktemp("curve"), CURVE_SUITE)


@pytest.fixture(scope="module")
def curve_rows(curve_results):
    rows, problems = ResultStore(curve_results, "tiny").read()
    assert not problems
    return rows


def test_train_curve_cells_generate_from_each_snapshot(curve_rows):
    curve = [r for r in curve_rows if r["task"] == "train-curve"]
    assert len(curve) == 4 and all(r["status"] == "ok" for r in curve)
    assert sorted((r["method"], r["training"]["step"]) for r in curve) == [
        ("ddim", 5), ("ddim", 20), ("edm-heun", 5), ("edm-heun", 20)]
    assert len({r["model"]["checkpoint_sha256"] for r in curve}) == 4


def test_the_final_snapshots_row_uses_the_final_model(curve_rows):
    final = next(r for r in curve_rows if r["task"] == "generate")
    last = next(r for r in curve_rows if r["task"] == "train-curve" and r["method"] == "edm-heun"
                and r["training"]["step"] == 20)
    assert last["model"]["checkpoint_sha256"] == final["model"]["checkpoint_sha256"]
    assert last["metrics"]["fid"]["value"] == pytest.approx(final["metrics"]["fid"]["value"], abs=1e-9)


def test_a_train_curve_row_carries_its_snapshots_training(curve_rows):
    row = next(r for r in curve_rows if r["method"] == "ddim" and r["training"]["step"] == 5)
    training = row["training"]
    assert training["budget_steps"] == 20 and training["images_seen"] == 5 * training["batch_size"]
    assert training["seconds"] > 0 and row["label"] == "ddim(step=5)"


def test_running_the_suite_again_trains_nothing_and_stores_nothing(curve_results, tmp_path, monkeypatch):
    import bench.models.recipes
    from bench.run.runner import run_suite

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")
    monkeypatch.setattr(bench.models.recipes, "_train_recipe", no_training)
    config = load_suite(str(curve_results.parent / "suites" / "tiny.toml"))
    assert run_suite(config, curve_results).rows_written == 0


def test_the_report_plots_the_curve_and_gives_time_to_fid(curve_results, tmp_path):
    out = render_report("tiny", curve_results, tmp_path)
    text = (out / "leaderboard.md").read_text()
    assert "FID \\[95 % interval\\] at each training snapshot" in text
    assert "Time to FID" in text and "edm: edm-heun 3 steps, NFE 5" in text
    assert "step 5)" in text and "step 20)" in text     # the table's model column names the snapshot
    assert (out / "fid_vs_training.png").is_file()
    assert "Training convergence" in (out / "index.html").read_text()


def point(step, fid, half):
    return CurvePoint(step, step * 2.0, step * 8, fid, fid - half, fid + half)


def test_time_to_fid_is_the_first_snapshot_whose_interval_reaches_the_target():
    points = [point(100, 50.0, 5.0), point(200, 30.0, 5.0), point(300, 20.0, 2.0)]
    assert first_reaching(points, 26.0).step == 200     # 30 - 5 <= 26
    assert first_reaching(points, 24.0).step == 300
    assert first_reaching(points, 10.0) is None


def test_time_to_fid_targets_every_series_final_fid():
    series = {"slow": [point(100, 80.0, 1.0), point(200, 40.0, 1.0)],
              "fast": [point(100, 45.0, 1.0), point(200, 20.0, 1.0)]}
    targets, reached = time_to_fid(series)
    assert targets == [("slow", 40.0), ("fast", 20.0)]
    assert reached["fast"]["slow"].step == 200 and reached["slow"]["fast"] is None


def test_the_interval_uses_the_t_quantile_of_the_seed_blocks():
    from scipy import stats
    row = {"metrics": {"fid": {"value": 10.0, "uncertainty": {"value": 1.0, "blocks": 4}}}}
    low, high = interval(row)
    assert high - 10.0 == pytest.approx(stats.t.ppf(0.975, 3)) and low == pytest.approx(20.0 - high)


@pytest.mark.parametrize("cell, message", [
    ('method = "edm-heun"\nsteps = [3]\ntrain_step = [21]', "past the 20 training steps"),
    ('method = "edm-heun"\nsteps = [3]\ntrain_step = [0]', "positive integers"),
    ('method = "edm-heun"\nsteps = [3]\ntrain_step = 5', "non-empty list"),
    ('method = "one-step"\ndenoise_t = [250]\ntrain_step = [5]', "takes no train_step"),
    ('method = "edm-heun"\nsteps = [3]\ndenoise_t = [250]\ntrain_step = [5]', "takes no train_step"),
])
def test_a_bad_train_step_is_refused_before_any_work(write_suite, cell, message):
    text = f"""
[suite]
dataset = "digits8"
n_samples = 16
batch_size = 8

[models.edm]
recipe = "edm"
steps = 20

[[cells]]
{cell}
"""
    with pytest.raises(DiffbenchError, match=message):
        load_suite(str(write_suite(text)))


def test_a_method_without_a_network_takes_no_train_step(write_suite):
    text = """
[suite]
dataset = "digits8"
n_samples = 16
batch_size = 8
superres_scale = 2

[[cells]]
method = "bicubic"
train_step = [5]
"""
    with pytest.raises(DiffbenchError, match="takes no train_step"):
        load_suite(str(write_suite(text)))


def test_the_convergence_suite_names_its_snapshots_within_the_mnist_budget():
    config = load_suite("convergence")
    steps = {c.train_step for c in config.cells}
    assert 0 not in steps and max(steps) == 900
    assert {c.model_kind for c in config.cells} == {"eps", "eps-cosine", "edm", "flow"}
    assert json.dumps(sorted(steps)) == "[100, 200, 300, 450, 600, 900]"
