"""Super-resolution: headstart / regression / bicubic semantics, the degradation, the fidelity
metrics, the photos split, and SR cells through the harness."""
import numpy as np
import pytest
import torch

from bench.config import load_suite
from bench.data.degradation import check_scale, condition_of, downsample, lowres_of, upsample
from bench.data.quantize import from_uint8, to_uint8
from bench.quality.fidelity import lr_mse_per_image, psnr_per_image, ssim_per_image
from bench.run.cost import CountingDenoiser
from bench.run.runner import run_suite
from bench.store import ResultStore
from methods import METHODS, PerSampleRNG
from methods.errors import DiffbenchError
from tests.helpers import TINY_SUITE, GaussianDenoiser, run_suite_text

SHAPE = (1, 4, 4)


def super_resolve(name, denoiser, lowres, steps=1, **hparams):
    method = METHODS.get(name)
    rng = PerSampleRNG(0, range(len(lowres)))
    return method.sample(denoiser, rng.randn(SHAPE), steps, rng=rng, cond={"lowres": lowres},
                         **method.resolve_hparams(hparams))


@pytest.fixture
def lowres():
    return torch.linspace(-0.8, 0.8, 8 * 16).reshape(8, *SHAPE)


def test_headstart_with_one_step_calls_the_denoiser_once(lowres):
    counter = CountingDenoiser(GaussianDenoiser())
    super_resolve("headstart", counter, lowres, steps=1, sigma_start=2.0)
    assert counter.calls == 1


def test_one_step_headstart_is_the_denoiser_at_sigma_start(lowres):
    denoiser = GaussianDenoiser()
    rng = PerSampleRNG(0, range(len(lowres)))
    expected = denoiser(lowres + 2.0 * rng.randn(SHAPE), 2.0)
    torch.testing.assert_close(super_resolve("headstart", denoiser, lowres, sigma_start=2.0), expected)


def test_headstart_approaches_the_upsampled_input_as_sigma_start_goes_to_zero(lowres):
    errors = [(super_resolve("headstart", GaussianDenoiser(), lowres, sigma_start=s) - lowres).abs().max()
              for s in (0.5, 0.05, 0.005)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 5 * 0.005  # what is left is the noise


def test_headstart_at_sigma_max_is_the_regression_output(lowres):
    denoiser = GaussianDenoiser()
    regression = super_resolve("regression", denoiser, lowres)
    torch.testing.assert_close(super_resolve("headstart", denoiser, lowres, sigma_start=80.0), regression)


def test_regression_returns_the_posterior_mean_when_the_input_is_uninformative(lowres):
    denoiser = GaussianDenoiser(mu=0.3, s=0.5)  # the condition carries nothing: E[x0] = mu
    # What remains of the sigma_max = 80 noise is s^2 / 80 = 0.003 per unit of n: allow 4 n.
    torch.testing.assert_close(super_resolve("regression", denoiser, lowres),
                               torch.full_like(lowres, 0.3), atol=4 * 0.25 / 80, rtol=0)


def test_bicubic_returns_its_condition_without_a_network(lowres):
    counter = CountingDenoiser(None)
    torch.testing.assert_close(super_resolve("bicubic", counter, lowres), lowres)
    assert counter.calls == 0


def test_downsample_keeps_a_constant_image_constant():
    image = torch.full((2, 3, 16, 16), 0.25)
    torch.testing.assert_close(downsample(image, 4), torch.full((2, 3, 4, 4), 0.25))


def test_lowres_input_is_quantised_and_upsampled_back_to_size():
    highres = torch.rand(3, 1, 28, 28) * 2 - 1
    lowres = lowres_of(highres, 4)
    assert lowres.shape == (3, 1, 7, 7)
    torch.testing.assert_close((lowres + 1) * 127.5, ((lowres + 1) * 127.5).round())
    assert condition_of(lowres, 4).shape == highres.shape


@pytest.mark.parametrize("shape, scale", [((1, 28, 28), 3), ((1, 28, 28), 1), ((3, 30, 32), 4),
                                          ((1, 8, 8), 4)])
def test_a_scale_that_does_not_divide_the_image_is_a_named_error(shape, scale):
    with pytest.raises(DiffbenchError, match="superres_scale"):
        check_scale(shape, scale, "suite.toml")


def grey(values, size=16) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.uint8).reshape(-1, 1, 1, 1).expand(-1, 1, size, size)


def test_psnr_of_a_constant_offset_is_the_textbook_value():
    expected = 10 * np.log10(255 ** 2 / 10 ** 2)
    np.testing.assert_allclose(psnr_per_image(grey([110]), grey([100]), crop=2), [expected])


def test_psnr_of_colour_images_uses_the_luma_channel():
    # For R = G = B = v, BT.601 luma is 16 + 219 v / 255: an offset of 10 becomes 10 * 219 / 255.
    a, b = grey([110]).expand(-1, 3, -1, -1), grey([100]).expand(-1, 3, -1, -1)
    expected = 10 * np.log10(255 ** 2 / (10 * 219 / 255) ** 2)
    np.testing.assert_allclose(psnr_per_image(a, b, crop=2), [expected], rtol=1e-6)


def test_ssim_is_one_for_identical_images_and_falls_as_noise_grows():
    clean = torch.linspace(0, 255, 28).round().to(torch.uint8).expand(2, 1, 28, 28)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))

    def noisy(amount):
        return (clean + amount * noise).round().clamp(0, 255).to(torch.uint8)
    scores = [ssim_per_image(image, clean, crop=4) for image in (clean, noisy(5), noisy(40))]
    np.testing.assert_allclose(scores[0], [1.0, 1.0])
    assert (scores[1] < 1.0).all() and (scores[2] < scores[1]).all()


def test_lr_consistency_of_the_ground_truth_is_only_quantisation_error():
    highres = torch.rand(4, 1, 28, 28) * 2 - 1
    consistent = lr_mse_per_image(to_uint8(highres), lowres_of(highres, 4), 4)
    blurred = lr_mse_per_image(to_uint8(-highres), lowres_of(highres, 4), 4)
    assert (consistent < (1 / 255) ** 2).all() and (blurred > 100 * consistent).all()


def test_photos_split_keeps_every_test_tile_from_held_out_photographs():
    from bench.data.datasets import PHOTO_PATCH, PHOTOS_TEST, PHOTOS_TRAIN, _photo, load_dataset
    dataset = load_dataset("photos")
    assert not set(PHOTOS_TRAIN) & set(PHOTOS_TEST)
    test, _ = dataset.split("test")
    first = torch.from_numpy(_photo(PHOTOS_TEST[0])[:PHOTO_PATCH, :PHOTO_PATCH]).permute(2, 0, 1)
    torch.testing.assert_close(to_uint8(test[0]), first)
    tiles = sum((_photo(n).shape[0] // PHOTO_PATCH) * (_photo(n).shape[1] // PHOTO_PATCH)
                for n in PHOTOS_TEST)
    assert len(test) == tiles and dataset.shape == (3, PHOTO_PATCH, PHOTO_PATCH)


SR_SUITE = (TINY_SUITE + """
[models.sr3]
recipe = "sr3"
steps = 10
base_channels = 8
batch_size = 16

[models.sr-edm]
recipe = "sr-edm"
steps = 10
base_channels = 8
batch_size = 16

[[cells]]
method = "bicubic"

[[cells]]
method = "sr3"
steps = [3]

[[cells]]
method = "headstart"
steps = [1, 2]

[[cells]]
method = "regression"
""").replace("[suite]", "[suite]\nsuperres_scale = 2")


@pytest.fixture(scope="module")
def sr_results(tmp_path_factory):
    return run_suite_text(tmp_path_factory.mktemp("sr"), SR_SUITE)


@pytest.fixture(scope="module")
def sr_rows(sr_results):
    rows, _ = ResultStore(sr_results, "tiny").read()
    return {(r["method"], r["steps"]): r for r in rows}


def test_superres_cells_report_fidelity_metrics(sr_rows):
    for key in [("bicubic", 1), ("sr3", 3), ("headstart", 1), ("regression", 1)]:
        row = sr_rows[key]
        assert row["status"] == "ok" and row["task"] == "superres"
        assert {"fid", "psnr", "ssim", "lr_mse"} <= set(row["metrics"])
        assert row["metrics"]["psnr"]["uncertainty"]["n"] == 24


@pytest.mark.parametrize("key, nfe", [(("bicubic", 1), 0), (("sr3", 3), 3), (("headstart", 1), 1),
                                      (("headstart", 2), 3), (("regression", 1), 1)])
def test_superres_nfe_is_measured(sr_rows, key, nfe):
    assert sr_rows[key]["nfe"] == nfe


def test_bicubic_needs_no_model_and_costs_no_flops(sr_rows):
    row = sr_rows[("bicubic", 1)]
    assert row["model"] is None and row["flops_per_image"] == 0 and row["num_parameters"] == 0


def test_superres_and_generation_rows_have_different_protocols(sr_rows):
    sr, generated = sr_rows[("sr3", 3)], sr_rows[("ddim", 2)]
    assert sr["protocol"]["superres"]["scale"] == 2
    assert sr["protocol"]["reference"]["split"] == "test"
    assert "superres" not in generated["protocol"]
    assert sr["protocol_fingerprint"] != generated["protocol_fingerprint"]


def test_a_superres_method_on_a_generation_recipe_is_a_config_error(write_suite):
    text = SR_SUITE.replace('recipe = "sr3"', 'recipe = "eps"')
    with pytest.raises(DiffbenchError, match="cannot use recipe 'eps'"):
        load_suite(str(write_suite(text)))


def test_more_superres_samples_than_test_images_is_a_named_error(write_suite, tmp_path):
    text = SR_SUITE.replace("n_samples = 24", "n_samples = 400").replace("batch_size = 8", "batch_size = 200")
    with pytest.raises(DiffbenchError, match="exceeds the 359 test images"):
        run_suite(load_suite(str(write_suite(text))), tmp_path / "results")


def test_report_draws_the_psnr_fid_trade_off_and_states_the_sr_protocol(sr_results, tmp_path):
    from bench.report import render_report
    out = render_report("tiny", sr_results, tmp_path / "reports")
    text = (out / "leaderboard.md").read_text()
    assert "Super-resolution x2" in text and "2-pixel border crop" in text
    assert (out / "psnr_ssim_vs_fid.png").stat().st_size > 1000 and (out / "psnr_ssim_vs_fid.pdf").is_file()


def test_ssim_matches_scikit_image_gaussian_ssim_on_photographs():
    from skimage import data
    from skimage.color import rgb2ycbcr
    from skimage.metrics import structural_similarity
    photo = torch.from_numpy(data.astronaut()[:128, :128]).permute(2, 0, 1)[None]
    blurred = to_uint8(upsample(downsample(from_uint8(photo), 4), (128, 128)))
    planes = [rgb2ycbcr(p[0].permute(1, 2, 0).numpy() / 255.0)[4:-4, 4:-4, 0] for p in (photo, blurred)]
    expected = structural_similarity(planes[0], planes[1], gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=255)
    assert ssim_per_image(blurred, photo, crop=4)[0] == pytest.approx(expected, abs=1e-4)


def test_superres_sample_grids_are_triplets_four_a_line(sr_rows, sr_results):
    from PIL import Image
    with Image.open(sr_results / "tiny" / sr_rows[("sr3", 3)]["samples_grid"]) as grid:
        width = grid.width
    assert width == 2 * (12 * (8 + 1) + 1)     # 12 images of 8 px, 1 px padding, upscaled x2
