"""Cascades: a generation method on a low-resolution model, then a super-resolution method, as
one generation cell (FID at full size, NFE and time per stage), end to end on digits8."""
import pytest
import torch

from bench.config import load_suite
from bench.data.degradation import lowres_of
from bench.data.quantize import from_uint8, to_uint8
from bench.models.recipes import suite_recipes
from bench.report import render_report
from bench.run.cascade import handoff
from bench.run.cell import stored_cell_key
from bench.store import ResultStore
from methods.errors import DiffbenchError
from tests.helpers import run_suite_text

MODELS = """
[suite]
dataset = "digits8"
n_samples = 24
batch_size = 8
grid_size = 8
superres_scale = 2
metrics = ["fid"]

[models.edm-low]
recipe = "edm"
lowres = true
steps = 20
base_channels = 8
channel_mult = [1]

[models.edm]
recipe = "edm"
steps = 20
base_channels = 8
channel_mult = [1]

[models.sr-edm]
recipe = "sr-edm"
steps = 20
base_channels = 8
channel_mult = [1]

[models.sr3]
recipe = "sr3"
steps = 20
base_channels = 8
channel_mult = [1]
"""

CASCADE_SUITE = MODELS + """
[[cells]]
method = "edm-heun"
model = "edm-low"
steps = [3]
superres = { method = "sr3", steps = [4] }

[[cells]]
method = "edm-heun"
model = "edm-low"
steps = [3]
superres = { method = "headstart", steps = [2] }

[[cells]]
method = "edm-heun"
model = "edm-low"
steps = [3]
superres = { method = "bicubic" }

[[cells]]
method = "edm-heun"
steps = [3]
"""


@pytest.fixture(scope="module")
def cascade_results(tmp_path_factory):
    return run_suite_text(tmp_path_factory.mktemp("cascade"), CASCADE_SUITE)


@pytest.fixture(scope="module")
def cascade_rows(cascade_results):
    rows, problems = ResultStore(cascade_results, "tiny").read()
    assert not problems and all(r["status"] == "ok" for r in rows), [r["message"] for r in rows]
    return {r["cascade"]["superres"]["method"] if r.get("cascade") else "direct": r for r in rows}


@pytest.mark.parametrize("second, nfe", [("sr3", 5 + 4), ("headstart", 5 + 3), ("bicubic", 5 + 0)])
def test_a_cascades_nfe_is_its_stages_sum(cascade_rows, second, nfe):
    row = cascade_rows[second]
    assert row["nfe"] == nfe and row["task"] == "generate"
    assert [s["nfe"] for s in row["cascade"]["stages"]] == [5, nfe - 5]


def test_each_stage_is_timed_and_named(cascade_rows):
    first, second = cascade_rows["sr3"]["cascade"]["stages"]
    assert first["method"] == "edm-heun" and second["method"] == "sr3"
    assert first["time_per_image_s"] > 0 and second["time_per_image_s"] > 0
    assert second["model"]["recipe"] == "sr3" and cascade_rows["bicubic"]["cascade"]["stages"][1]["model"] is None


def test_a_cascade_is_ranked_with_direct_generation(cascade_rows):
    protocols = {r["protocol_fingerprint"] for r in cascade_rows.values()}
    assert len(protocols) == 1


def test_a_cascade_row_rebuilds_its_own_key(cascade_rows):
    for row in cascade_rows.values():
        assert stored_cell_key(row, row["protocol_fingerprint"]) == row["cell_key"]


def test_the_label_names_both_stages(cascade_rows):
    assert cascade_rows["sr3"]["label"] == "edm-heun(model=edm-low) 3 steps -> sr3 4 steps"


def test_the_report_gives_the_cost_per_stage(cascade_results, tmp_path):
    text = (render_report("tiny", cascade_results, tmp_path) / "leaderboard.md").read_text()
    assert "Cascades: cost per stage" in text and "stage 2 NFE" in text


def test_the_handoff_is_the_samples_quantised_like_a_stored_image():
    x = torch.rand(2, 1, 4, 4) * 2.4 - 1.2
    assert torch.equal(handoff(x), from_uint8(to_uint8(x)))


def test_a_lowres_model_trains_at_the_low_resolution_under_its_own_key(write_suite):
    config = load_suite(str(write_suite(CASCADE_SUITE)))
    from bench.data.datasets import load_dataset
    dataset = load_dataset("digits8")
    recipes = suite_recipes(config)
    low, full = (recipes[k].for_dataset(dataset) for k in ("edm-low", "edm"))
    assert (low.network.image_size, full.network.image_size) == (4, 8)
    keys = {r.with_precision("fp32").cache_key(dataset.content_hash) for r in (low, full)}
    assert len(keys) == 2 and low.lowres_scale == 2


def test_a_lowres_models_training_images_are_the_sr_inputs():
    from bench.data.datasets import load_dataset
    from bench.models.recipes import RECIPES, recipe_loss
    from methods import OBJECTIVES
    from methods.base import Objective
    seen = []

    def spy_loss(net, x0, generator, labels=None, lowres=None):
        seen.append(x0)
        return torch.zeros(())
    OBJECTIVES.register("spy-lowres", Objective("spy-lowres", spy_loss, lambda net: net))
    try:
        import dataclasses
        dataset = load_dataset("digits8")
        recipe = dataclasses.replace(RECIPES.get("edm"), objective="spy-lowres", dataset="digits8",
                                     lowres_scale=2)
        loss_fn, count = recipe_loss(recipe, dataset, OBJECTIVES.get("spy-lowres"))
        loss_fn(None, torch.arange(5), torch.Generator())
    finally:
        OBJECTIVES.unregister("spy-lowres")
    images = dataset.split("train")[0]
    assert torch.equal(seen[0], lowres_of(images, 2)[:5])


@pytest.mark.parametrize("cell, message", [
    ('method = "edm-heun"\nmodel = "edm-low"\nsteps = [3]', "use it as a cascade's first stage"),
    ('method = "edm-heun"\nsteps = [3]\nsuperres = { method = "sr3", steps = [4] }', "set lowres = true"),
    ('method = "edm-heun"\nmodel = "edm-low"\nsteps = [3]\nsuperres = { method = "ddim", steps = [4] }',
     "must be a super-resolution method"),
    ('method = "edm-heun"\nmodel = "edm-low"\nsteps = [3]\nsuperres = { method = "sr3", step = [4] }',
     "unknown key 'step'"),
    ('method = "edm-heun"\nmodel = "edm-low"\nsteps = [3]\nsuperres = { method = "sr3", steps = [0] }',
     "positive ints"),
    ('method = "edm-heun"\nmodel = "edm-low"\nsteps = [3]\nsuperres = { method = "sr3", model = "edm", steps = [4] }',
     "pick a superres recipe"),
    ('method = "bicubic"\nsuperres = { method = "sr3", steps = [4] }', "cannot start a cascade"),
])
def test_a_bad_cascade_is_refused_before_any_work(write_suite, cell, message):
    with pytest.raises(DiffbenchError, match=message):
        load_suite(str(write_suite(MODELS + "\n[[cells]]\n" + cell + "\n")))


def test_lowres_is_for_generation_recipes_only(write_suite):
    text = MODELS.replace('[models.sr3]\nrecipe = "sr3"', '[models.sr3]\nrecipe = "sr3"\nlowres = true')
    with pytest.raises(DiffbenchError, match="super-resolution recipe"):
        load_suite(str(write_suite(text + '\n[[cells]]\nmethod = "sr3"\nsteps = [4]\n')))
