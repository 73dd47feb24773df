"""The editing tasks: their inputs (guides, masks), their per-image metrics, and img2img and
inpainting cells run end to end on digits8."""
import math

import pytest
import torch

from bench.data.degradation import (SKETCH_BLOCK, SKETCH_LEVELS, inpaint_masks, lowres_of,
                                    sketch_of, stroke_mask)
from bench.data.quantize import to_uint8
from bench.run.tasks import Img2Img, Inpainting, SuperResolution, TaskInputs
from bench.store import ResultStore
from tests.helpers import TINY_EDM_MODEL, run_suite_text


def test_the_centre_mask_holes_the_centre_square_of_half_the_side():
    mask = inpaint_masks("centre", (1, 8, 8), range(2))
    expected = torch.ones(8, 8)
    expected[2:6, 2:6] = 0
    assert mask.shape == (2, 1, 8, 8) and torch.equal(mask[1, 0], expected)


def test_the_half_mask_holes_the_right_half():
    mask = inpaint_masks("half", (3, 28, 28), range(1))[0]
    assert mask[:, :, :14].eq(1).all() and mask[:, :, 14:].eq(0).all()


def test_stroke_masks_belong_to_their_image_not_to_the_batch():
    together = inpaint_masks("strokes", (1, 28, 28), range(5, 9))
    alone = inpaint_masks("strokes", (1, 28, 28), [7])
    assert torch.equal(together[2], alone[0]) and not torch.equal(together[0], together[1])


def test_strokes_hole_a_sizeable_but_partial_share_of_the_image():
    shares = torch.stack([1 - stroke_mask(28, 28, i).mean() for i in range(200)])
    assert 0.1 < float(shares.mean()) < 0.5 and float(shares.min()) > 0 and float(shares.max()) < 0.9


def test_the_sketch_is_constant_on_blocks_with_few_levels():
    images = torch.rand(3, 1, 8, 8) * 2 - 1
    guide = sketch_of(images)
    blocks = guide.unfold(2, SKETCH_BLOCK, SKETCH_BLOCK).unfold(3, SKETCH_BLOCK, SKETCH_BLOCK)
    assert blocks.flatten(-2).std(-1).max() == 0
    assert len(torch.unique(to_uint8(guide))) <= SKETCH_LEVELS
    assert torch.equal(sketch_of(guide), guide)                 # a guide is its own sketch


def inputs_of(original, mask):
    return TaskInputs(original, original * mask, {}, mask)


def test_inpainting_metrics_count_the_hole_for_fidelity_and_the_rest_for_consistency():
    original = torch.rand(2, 1, 16, 16) * 2 - 1
    mask = inpaint_masks("centre", (1, 16, 16), range(2))
    output = to_uint8(original).clone()
    value = int(output[0, 0, 0, 0])
    output[0, 0, 0, 0] = value + 9 if value < 200 else value - 9   # a known pixel moved 9 levels
    output[:, :, 4:12, 4:12] = 0                                # the hole filled with black
    scores = Inpainting("centre").per_image(output, inputs_of(original, mask), 0)
    hole = to_uint8(original)[:, 0, 4:12, 4:12].double()
    expected_psnr = 10 * torch.log10(255 ** 2 / hole.square().flatten(1).mean(1))
    assert scores["known_error"].tolist() == [9.0, 0.0]
    torch.testing.assert_close(torch.from_numpy(scores["psnr"]), expected_psnr)


def test_an_exactly_reproduced_hole_counts_at_the_rounding_noise_psnr_not_infinity():
    original = torch.rand(2, 1, 16, 16) * 2 - 1
    mask = inpaint_masks("centre", (1, 16, 16), range(2))
    output = to_uint8(original)
    output[1, :, 4:12, 4:12] = 0
    psnr = Inpainting("centre").per_image(output, inputs_of(original, mask), 0)["psnr"]
    assert psnr[0] == pytest.approx(10 * math.log10(255 ** 2 * 12)) and psnr[1] < 20


def test_img2img_compares_with_the_guide():
    original = torch.rand(2, 1, 8, 8) * 2 - 1
    guide = sketch_of(original)
    scores = Img2Img().per_image(to_uint8(guide), TaskInputs(original, guide, {}), 0)
    assert scores["psnr"].tolist() == [float("inf")] * 2 and scores["ssim"].tolist() == [1.0, 1.0]


def test_a_superres_grid_shows_the_lr_input_pixel_replicated():
    original = torch.rand(2, 1, 8, 8) * 2 - 1
    lowres = lowres_of(original, 4)
    shown = SuperResolution().shown(TaskInputs(original, lowres, {}))
    assert shown.shape == (2, 1, 8, 8)
    assert torch.equal(shown[0, 0, :4, :4], to_uint8(lowres)[0, 0, 0, 0].expand(4, 4))


EDIT_SUITE = """
[suite]
dataset = "digits8"
n_samples = 24
batch_size = 8
grid_size = 16
metrics = ["fid"]

""" + TINY_EDM_MODEL + """

[[cells]]
method = "sdedit"
steps = [3]
sweep = { strength = [0.0, 0.5, 1.0] }

[[cells]]
method = "inpaint-replace"
steps = [4]
mask = ["centre", "strokes"]

[[cells]]
method = "repaint"
steps = [4]
mask = ["half"]
hparams = { jump_length = 2, jump_n_sample = 2 }
"""


@pytest.fixture(scope="module")
def edit_results(tmp_path_factory):
    return run_suite_text(tmp_path_factory.mktemp("edit"), EDIT_SUITE)


@pytest.fixture(scope="module")
def edit_rows(edit_results):
    rows, _ = ResultStore(edit_results, "tiny").read()
    return rows


def rows_of(rows, method):
    return [r for r in rows if r["method"] == method]


def test_editing_cells_run_and_report_their_task_metrics(edit_rows):
    assert len(edit_rows) == 6 and all(r["status"] == "ok" for r in edit_rows)
    for row in edit_rows:
        expected = {"fid", "psnr", "ssim"} | ({"known_error"} if row["task"] == "inpaint" else set())
        assert set(row["metrics"]) == expected


def test_inpainting_rows_keep_the_known_region_exactly(edit_rows):
    for row in rows_of(edit_rows, "inpaint-replace") + rows_of(edit_rows, "repaint"):
        assert row["metrics"]["known_error"]["value"] == 0
        assert 0 < row["metrics"]["psnr"]["value"] < 60


def test_each_mask_is_its_own_protocol(edit_rows):
    inpainting = rows_of(edit_rows, "inpaint-replace") + rows_of(edit_rows, "repaint")
    assert sorted(r["protocol"]["inpaint"]["mask"] for r in inpainting) == ["centre", "half", "strokes"]
    assert len({r["protocol_fingerprint"] for r in inpainting}) == 3


def test_sdedit_at_strength_zero_is_its_guide_with_no_evaluation(edit_rows):
    by_strength = {r["hparams"]["strength"]: r for r in rows_of(edit_rows, "sdedit")}
    assert by_strength[0.0]["nfe"] == 0 and by_strength[0.0]["metrics"]["psnr"]["flag"] == "inf"
    assert by_strength[0.5]["nfe"] == 3 and by_strength[0.5]["metrics"]["psnr"]["value"] > 0


def test_editing_rows_compare_with_the_reference_split_not_their_sources(edit_rows):
    for row in edit_rows:
        assert row["protocol"]["reference"]["split"] == "train"


def test_editing_grids_are_triplets_four_a_line(edit_rows, edit_results):
    from PIL import Image
    row = rows_of(edit_rows, "repaint")[0]
    with Image.open(edit_results / "tiny" / row["samples_grid"]) as grid:
        assert grid.width == 2 * (12 * (8 + 1) + 1)     # 12 images of 8 px, 1 px padding, x2
