import pytest
import torch

from bench.datasets import load_dataset
from bench.metrics import features_of, fid_from_statistics, fid_statistics, load_extractor
from bench.quantize import NonFiniteSamples, to_uint8


@pytest.fixture(scope="module")
def digits():
    extractor = load_extractor("lenet", "digits8")
    images, _ = load_dataset("digits8").split("train")
    return extractor, images


def fid(extractor, a, b):
    stats = [fid_statistics(features_of(extractor, to_uint8(x))) for x in (a, b)]
    return fid_from_statistics(*stats)


def test_lenet_extractor_classifies_held_out_digits(digits):
    extractor, _ = digits
    assert extractor.info["test_accuracy"] > 0.9


def test_fid_of_a_set_with_itself_is_zero(digits):
    extractor, images = digits
    assert abs(fid(extractor, images, images)) < 1e-6


def test_fid_grows_with_a_shift(digits):
    extractor, images = digits
    values = [fid(extractor, images, (images + shift).clamp(-1, 1)) for shift in (0.1, 0.3, 0.6)]
    assert values[0] > 0.01 and values[0] < values[1] < values[2]


def test_quantisation_refuses_non_finite_samples():
    with pytest.raises(NonFiniteSamples, match="1 of 2"):
        to_uint8(torch.tensor([[0.0, float("nan")], [0.5, 0.5]]).reshape(2, 1, 1, 2))


def test_quantisation_maps_the_range_end_points():
    pixels = to_uint8(torch.tensor([-1.0, 0.0, 1.0, 7.0]).reshape(1, 1, 1, 4))
    assert pixels.flatten().tolist() == [0, 128, 255, 255]
