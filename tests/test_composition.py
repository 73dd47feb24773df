"""Visual anagrams and hybrid images against a class-conditional denoiser whose answer is known:
class c's data is N(TEMPLATES[c], S^2 I), so D(x, sigma | c) = T_c + S^2 / (S^2 + sigma^2) (x - T_c)
(the null label: the mean template). Class 0 is a smooth ramp, class 2 a checkerboard (all high
frequency), class 1 flat."""
import pytest
import torch

from bench.run.cost import CountingDenoiser
from methods import METHODS, PerSampleRNG
from methods.composition import VIEWS, lowpass
from methods.ddpm import linear_alphas_cumprod

SHAPE = (1, 8, 8)
S = 0.5
RAMP = torch.linspace(-1, 1, 64).reshape(SHAPE)
CHECKER = 0.8 * (-1.0) ** (torch.arange(8).view(8, 1) + torch.arange(8).view(1, 8)).reshape(SHAPE)
TEMPLATES = torch.stack([RAMP, torch.zeros(SHAPE), CHECKER])


class ClassGaussianDenoiser(torch.nn.Module):
    """With DDPM's training sigmas, so that the discrete samplers can respace them."""
    sigmas = ((1 - linear_alphas_cumprod()) / linear_alphas_cumprod()).sqrt().float()
    sigma_min, sigma_max, sigma_data = float(sigmas[0]), float(sigmas[-1]), S
    num_classes = 3

    def forward(self, x, sigma, cond=None):
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
        templates = torch.cat([TEMPLATES, TEMPLATES.mean(0, keepdim=True)])[cond["labels"]]
        return templates + S ** 2 / (S ** 2 + sigma ** 2) * (x - templates)


def sample(name, labels, noise=None, count=4, steps=6, **overrides):
    method = METHODS.get(name)
    rng = PerSampleRNG(0, range(count))
    noise = rng.randn(SHAPE) if noise is None else noise
    cond = {"labels": torch.full((count,), labels), "null_label": 3}
    return method.sample(ClassGaussianDenoiser(), noise, steps, rng=rng, cond=cond,
                         **method.resolve_hparams(overrides))


@pytest.mark.parametrize("kind, base", [("anagram", "edm-heun"), ("anagram", "ddim"),
                                        ("hybrid", "edm-heun"), ("hybrid", "ddim")])
@pytest.mark.parametrize("cfg_scale", [1.0, 2.5])
def test_one_class_and_a_neutral_composition_is_the_plain_conditional_sampler_exactly(kind, base, cfg_scale):
    """Anagram with the identity view and hybrid without a low-pass, both classes the same:
    the composed estimate is the class's own, bit for bit."""
    neutral = {"view": "identity"} if kind == "anagram" else {"lowpass_sigma": 0.0}
    composed = sample(f"{kind}-{base}", 0, class_a=2, class_b=2, cfg_scale=cfg_scale, **neutral)
    plain = sample(f"{base}-cfg", 2, cfg_scale=cfg_scale)
    assert torch.equal(composed, plain)


@pytest.mark.parametrize("view", ["flip", "rot180"])
def test_an_anagram_seen_through_its_view_is_the_anagram_of_the_swapped_classes(view):
    """For a self-inverse view v, starting from v(noise) with the classes swapped yields v of the
    first anagram: the construction treats the two views symmetrically."""
    forward, _ = VIEWS[view]
    noise = PerSampleRNG(0, range(4)).randn(SHAPE)
    first = sample("anagram-edm-heun", 0, noise=noise, class_a=0, class_b=2, view=view)
    swapped = sample("anagram-edm-heun", 0, noise=forward(noise), class_a=2, class_b=0, view=view)
    torch.testing.assert_close(swapped, forward(first), rtol=0, atol=1e-6)


def test_an_anagram_under_a_rotation_maps_the_estimate_back_with_the_inverse_view():
    """rot90 is not self-inverse: the anagram of (checker, ramp) has the mean
    (T_a + v^-1 T_b) / 2 (the mean of the two views' constraints), not (T_a + v T_b) / 2."""
    forward, inverse = VIEWS["rot90"]
    out = sample("anagram-edm-heun", 0, count=256, steps=18, class_a=2, class_b=0, view="rot90")
    mean = out.mean(0, keepdim=True)
    right = (TEMPLATES[2][None] + inverse(TEMPLATES[0][None])) / 2
    wrong = (TEMPLATES[2][None] + forward(TEMPLATES[0][None])) / 2
    assert torch.dist(mean, right) < 0.2 * torch.dist(right, wrong)


def test_a_hybrid_takes_its_low_frequencies_from_class_a_and_the_rest_from_class_b():
    out = sample("hybrid-edm-heun", 0, count=256, steps=18, class_a=0, class_b=2, lowpass_sigma=1.5)
    mean = out.mean(0, keepdim=True)
    ramp, checker = TEMPLATES[0][None], TEMPLATES[2][None]
    expected = lowpass(ramp, 1.5) + checker - lowpass(checker, 1.5)
    assert torch.dist(mean, expected) < 0.1 * min(torch.dist(expected, ramp), torch.dist(expected, checker))


@pytest.mark.parametrize("name, cfg_scale, factor", [("anagram-edm-heun", 1.0, 2), ("anagram-edm-heun", 2.0, 4),
                                                     ("hybrid-ddim", 1.0, 2), ("hybrid-ddim", 3.0, 4)])
def test_a_composition_counts_both_classes_and_both_guidance_halves(name, cfg_scale, factor):
    method = METHODS.get(name)
    counter = CountingDenoiser(ClassGaussianDenoiser())
    rng = PerSampleRNG(0, range(4))
    cond = {"labels": torch.zeros(4, dtype=torch.long), "null_label": 3}
    method.sample(counter, rng.randn(SHAPE), 5, rng=rng, cond=cond,
                  **method.resolve_hparams({"cfg_scale": cfg_scale, "class_a": 0, "class_b": 2}))
    base = METHODS.get(name.split("-", 1)[1])
    assert counter.nfe(4) == method.planned_nfe(5, {"cfg_scale": cfg_scale}) == factor * base.planned_nfe(5, {})


def test_a_composition_on_an_unconditional_model_says_to_pick_a_conditional_one():
    method = METHODS.get("anagram-edm-heun")
    rng = PerSampleRNG(0, range(2))
    with pytest.raises(ValueError, match="class-conditional"):
        method.sample(ClassGaussianDenoiser(), rng.randn(SHAPE), 2, rng=rng, cond=None,
                      **method.resolve_hparams({}))


ANAGRAM_SUITE = """
[suite]
dataset = "digits8"
n_samples = 24
batch_size = 8
grid_size = 16
feature_extractor = "lenet"
metrics = ["fid"]

[models.edm-cond]
recipe = "edm-cond"
steps = 20
base_channels = 8
channel_mult = [1, 2]

[[cells]]
method = "anagram-edm-heun"
steps = [3]
hparams = { class_a = 6, class_b = 9, view = "rot180" }
sweep = { cfg_scale = [1.0, 2.0] }

[[cells]]
method = "hybrid-edm-heun"
steps = [3]
hparams = { class_a = 1, class_b = 7 }
"""


@pytest.fixture(scope="module")
def anagram_results(tmp_path_factory):
    from tests.helpers import run_suite_text
    return run_suite_text(tmp_path_factory.mktemp("anagram"), ANAGRAM_SUITE)


@pytest.fixture(scope="module")
def anagram_rows(anagram_results):
    from bench.store import ResultStore
    return ResultStore(anagram_results, "tiny").read()[0]


def test_anagram_cells_read_both_views_and_score_the_transformed_one(anagram_rows):
    assert len(anagram_rows) == 3 and all(r["status"] == "ok" for r in anagram_rows)
    views = {"view_a_acc", "view_b_acc", "both_acc"}
    for row in anagram_rows:
        expected = {"fid"} | views | ({"fid_view_b"} if row["method"].startswith("anagram") else set())
        assert row["task"] == "anagram" and set(row["metrics"]) == expected
        value = {name: row["metrics"][name]["value"] for name in views}
        assert 0 <= value["both_acc"] <= min(value["view_a_acc"], value["view_b_acc"]) <= 1


def test_anagram_nfe_counts_both_classes(anagram_rows):
    by_scale = {r["hparams"]["cfg_scale"]: r["nfe"] for r in anagram_rows if r["method"] == "anagram-edm-heun"}
    assert by_scale == {1.0: 2 * 5, 2.0: 4 * 5}       # Heun at 3 steps: NFE 5


def test_anagram_grids_show_view_a_beside_view_b(anagram_rows, anagram_results):
    from PIL import Image
    row = next(r for r in anagram_rows if r["method"] == "anagram-edm-heun")
    with Image.open(anagram_results / "tiny" / row["samples_grid"]) as grid:
        assert grid.width == 2 * (8 * (8 + 1) + 1)     # 4 pairs of 8 px images a line, x2


def test_anagram_report_has_its_table(anagram_results, tmp_path):
    from bench.report import render_report
    text = (render_report("tiny", anagram_results, tmp_path) / "leaderboard.md").read_text()
    assert "Anagrams and hybrids" in text and "acc view b" in text


@pytest.mark.parametrize("change, message", [
    (("feature_extractor = \"lenet\"", "feature_extractor = \"inception\""), "feature_extractor"),
    (("class_a = 6", "class_a = 10"), "class_a = 10 is not a class"),
])
def test_a_bad_anagram_cell_is_refused_before_any_work(write_suite, change, message):
    from bench.config import load_suite
    from methods.errors import DiffbenchError
    with pytest.raises(DiffbenchError, match=message):
        load_suite(str(write_suite(ANAGRAM_SUITE.replace(*change))))
