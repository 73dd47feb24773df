"""The denoising task: its noise levels, the three kinds of method (gaussian-blur tuned on
held-out pairs, one-step, any sampler started from the noisy image) and denoising cells end to
end on digits8."""
import pytest
import torch

from bench.config import load_suite
from bench.run.tasks import Denoising
from bench.store import ResultStore
from methods import METHODS, PerSampleRNG
from methods.denoising import blur, blur_scores, ddpm_sigma, tune_gaussian_blur
from methods.errors import DiffbenchError
from tests.helpers import TINY_EDM_MODEL, GaussianDenoiser, run_suite_text

SHAPE = (1, 8, 8)


@pytest.mark.parametrize("t", [1, 250, 500, 750, 1000])
def test_ddpm_sigma_is_the_noise_level_of_diffusers_linear_schedule_at_t(t):
    from diffusers import DDPMScheduler
    betas = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").betas.double()
    abar = float(torch.cumprod(1 - betas, 0)[t - 1])   # in float64: 1 - abar_1 is 1e-4
    assert ddpm_sigma(t) == pytest.approx(((1 - abar) / abar) ** 0.5, rel=1e-5)


@pytest.mark.parametrize("t", [0, 1001])
def test_ddpm_sigma_refuses_a_timestep_outside_the_schedule(t):
    with pytest.raises(ValueError, match="1..1000"):
        ddpm_sigma(t)


def noisy_pairs(count=64, sigma=0.5, seed=0):
    """Smooth blobs plus noise: images a blur can clean."""
    coords = torch.linspace(-1, 1, 8)
    centres = PerSampleRNG(seed, range(count)).randn((2,)) * 0.4
    clean = torch.exp(-((coords.view(1, 8, 1) - centres[:, 0].view(-1, 1, 1)) ** 2
                        + (coords.view(1, 1, 8) - centres[:, 1].view(-1, 1, 1)) ** 2) * 2) * 2 - 1
    clean = clean.unsqueeze(1)
    return clean + sigma * PerSampleRNG(seed + 1, range(count)).randn(SHAPE), clean


def test_gaussian_blur_tuning_picks_the_held_out_optimum_of_its_grid():
    noisy, clean = noisy_pairs()
    found = tune_gaussian_blur(noisy, clean)
    scores = blur_scores(noisy, clean)
    assert found["heldout_psnr"] == max(scores.values())
    assert scores[(found["kernel_size"], found["blur_sigma"])] == found["heldout_psnr"]


def test_gaussian_blur_tuning_keeps_what_the_cell_fixed():
    noisy, clean = noisy_pairs()
    assert tune_gaussian_blur(noisy, clean, kernel_size=5)["kernel_size"] == 5
    assert tune_gaussian_blur(noisy, clean, kernel_size=5, blur_sigma=1.0) is None


def test_gaussian_blur_samples_the_blurred_source_with_no_evaluation():
    noisy, _ = noisy_pairs(count=4)
    method = METHODS.get("gaussian-blur")
    out = method.sample(None, torch.zeros_like(noisy), 1, rng=None, cond={"source": noisy},
                        **method.resolve_hparams({"kernel_size": 5, "blur_sigma": 1.2}))
    assert torch.equal(out, blur(noisy, 5, 1.2))


def test_gaussian_blur_untuned_says_how_to_tune():
    noisy, _ = noisy_pairs(count=2)
    method = METHODS.get("gaussian-blur")
    with pytest.raises(ValueError, match="tune"):
        method.sample(None, noisy, 1, rng=None, cond={"source": noisy}, **method.resolve_hparams({}))


class FirstCall(torch.nn.Module):
    """A denoiser that records its first input and level."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.first = inner, None
        self.sigmas = inner.sigmas
        self.sigma_min, self.sigma_max, self.sigma_data = inner.sigma_min, inner.sigma_max, inner.sigma_data

    def forward(self, x, sigma, cond=None):
        if self.first is None:
            self.first = (x.clone(), torch.as_tensor(sigma).flatten()[0].item())
        return self.inner(x, sigma, cond)


STARTABLE = [name for name, method in METHODS.items() if method.task in ("generate", "denoise")
             and method.start is not None and method.model is not None and not method.classifier
             and not method.model.endswith("-cond")]


@pytest.mark.parametrize("name", STARTABLE)
def test_a_sampler_started_from_a_noisy_image_first_evaluates_it_at_its_level(name):
    """Iterative denoising begins from y = x0 + sigma n at sigma itself (its default
    hyper-parameters): the first evaluation sees y, not a rescaled or re-noised copy."""
    method, sigma = METHODS.get(name), ddpm_sigma(500)
    noisy = 0.3 + sigma * PerSampleRNG(0, range(3)).randn(SHAPE)
    spy = FirstCall(GaussianDenoiser())
    rng = PerSampleRNG(1, range(3))
    method.sample(spy, rng.randn(SHAPE), 4, rng=rng, start=(noisy, sigma), **method.resolve_hparams({}))
    x, level = spy.first
    assert level == pytest.approx(sigma, rel=1e-5)
    torch.testing.assert_close(x, noisy, rtol=1e-5, atol=1e-5)


def test_one_step_is_the_denoisers_prediction_and_edm_heun_at_one_step():
    denoiser, sigma = GaussianDenoiser(), ddpm_sigma(250)
    noisy = 0.3 + sigma * PerSampleRNG(0, range(3)).randn(SHAPE)
    one_step = METHODS.get("one-step").sample(denoiser, noisy, 1, rng=None, start=(noisy, sigma))
    torch.testing.assert_close(one_step, denoiser(noisy, torch.tensor(sigma)))
    heun = METHODS.get("edm-heun")
    torch.testing.assert_close(heun.sample(denoiser, noisy, 1, rng=None, start=(noisy, sigma),
                                           **heun.resolve_hparams({})), one_step)


def test_a_discrete_schedule_starts_at_the_training_level_of_t():
    sigmas = METHODS.get("ddim").schedule_from(GaussianDenoiser(), ddpm_sigma(500), 5, {})
    assert float(sigmas[0]) == pytest.approx(ddpm_sigma(500), rel=1e-5) and len(sigmas) == 6


DENOISE_SUITE = """
[suite]
dataset = "digits8"
n_samples = 24
batch_size = 8
grid_size = 16
metrics = ["fid"]
""" + TINY_EDM_MODEL + """
[models.eps]
recipe = "eps-digits8"
steps = 20
base_channels = 8

[[cells]]
method = "gaussian-blur"
denoise_t = [250, 750]

[[cells]]
method = "one-step"
denoise_t = [250, 750]

[[cells]]
method = "edm-heun"
steps = [1, 3]
denoise_t = [250]

[[cells]]
method = "ddpm"
steps = [3]
denoise_t = [750]
"""


@pytest.fixture(scope="module")
def denoise_results(tmp_path_factory):
    return run_suite_text(tmp_path_factory.mktemp("denoise"), DENOISE_SUITE)


@pytest.fixture(scope="module")
def denoise_rows(denoise_results):
    return ResultStore(denoise_results, "tiny").read()[0]


def test_denoising_cells_run_as_the_denoise_task_with_fidelity_metrics(denoise_rows):
    assert len(denoise_rows) == 7 and all(r["status"] == "ok" for r in denoise_rows)
    for row in denoise_rows:
        assert row["task"] == "denoise" and set(row["metrics"]) == {"fid", "psnr", "ssim"}


def test_each_noise_level_is_its_own_protocol_stating_t_and_sigma(denoise_rows):
    levels = {r["protocol_fingerprint"]: r["protocol"]["denoise"] for r in denoise_rows}
    assert sorted((p["t"], round(p["sigma"], 3)) for p in levels.values()) == [(250, 0.953), (750, 17.247)]


def test_one_step_equals_edm_heun_at_one_step_in_the_suite(denoise_rows):
    one = next(r for r in denoise_rows if r["label"] == "one-step(t=250)")
    heun = next(r for r in denoise_rows if r["method"] == "edm-heun" and r["steps"] == 1)
    assert one["nfe"] == heun["nfe"] == 1
    assert one["metrics"]["psnr"]["value"] == heun["metrics"]["psnr"]["value"]


def test_gaussian_blur_rows_say_the_kernel_found_on_held_out_pairs(denoise_rows):
    for row in (r for r in denoise_rows if r["method"] == "gaussian-blur"):
        assert row["hparams"] == {"kernel_size": 0, "blur_sigma": 0.0} and row["nfe"] == 0
        warmup = row["warmup"]
        assert warmup["heldout_images"] == 500 and warmup["found"]["kernel_size"] % 2 == 1
        assert warmup["scores"]["heldout_psnr"] > 0


def test_the_noisy_inputs_belong_to_the_test_image_not_the_batch():
    from bench.data.datasets import load_dataset
    dataset, task = load_dataset("digits8"), Denoising(500)
    config = type("Config", (), {"superres_scale": 1})()
    together = task.inputs(config, dataset, range(4, 8)).given
    alone = task.inputs(config, dataset, [6]).given
    assert torch.equal(together[2], alone[0])


def test_denoising_report_titles_each_level(denoise_results, tmp_path):
    from bench.report import render_report
    text = (render_report("tiny", denoise_results, tmp_path) / "leaderboard.md").read_text()
    assert "Denoising (t = 250, sigma = 0.953)" in text and "Denoising (t = 750, sigma = 17.247)" in text
    assert "chosen on 500 held-out pairs" in text
    assert text.count("paired PSNR against the best row") == 2     # one per noise level


def test_denoising_rows_store_their_per_image_psnr_in_seed_order(denoise_rows, denoise_results):
    from bench.quality.stored_features import load_cell_per_image
    for row in denoise_rows:
        values = load_cell_per_image(denoise_results / "tiny", row["paired"]["features"], "psnr")
        assert len(values) == 24 and values.mean() == pytest.approx(row["metrics"]["psnr"]["value"])


@pytest.mark.parametrize("cell, message", [
    ('method = "one-step"', "give the noise level as denoise_t"),
    ('method = "one-step"\ndenoise_t = [0]', "integers in 1..1000"),
    ('method = "sdedit"\ndenoise_t = [250]', "takes no denoise_t"),
    ('method = "diffusers:DDIMScheduler"\ndenoise_t = [250]', "cannot start from a noisy image"),
    ('method = "edm-heun-cg"\ndenoise_t = [250]', "classifier-guided"),
    ('method = "edm-heun"\nmodel = "edm-cond"\ndenoise_t = [250]', "class-conditional"),
])
def test_a_bad_denoising_cell_is_refused_naming_what_to_do(write_suite, cell, message):
    text = f"""
[suite]
dataset = "digits8"
n_samples = 16
batch_size = 8

[models.edm-cond]
recipe = "edm-cond"

[[cells]]
{cell}
steps = [2]
"""
    with pytest.raises(DiffbenchError, match=message):
        load_suite(str(write_suite(text)))
