import dataclasses

import pytest
import torch

from bench.data.datasets import load_dataset
from bench.data.quantize import NonFiniteSamples, to_uint8
from bench.quality.metrics import (check_metrics_available, extract, features_of, fid_statistics,
                                   inception_score, kid, load_extractor, precision_recall)
from bench.quality.statistics import frechet_distance
from methods.errors import DiffbenchError


@pytest.fixture(scope="module")
def digits():
    extractor = load_extractor("lenet", "digits8")
    images, _ = load_dataset("digits8").split("train")
    return extractor, images


def fid(extractor, a, b):
    stats = [fid_statistics(features_of(extractor, to_uint8(x))) for x in (a, b)]
    return frechet_distance(*stats)


def test_lenet_extractor_classifies_held_out_digits(digits):
    extractor, _ = digits
    assert extractor.info["test_accuracy"] > 0.9


def test_fid_of_a_set_with_itself_is_zero(digits):
    # LeNet's ReLU features have a rank-deficient covariance; square roots of its near-zero
    # eigenvalues leave ~1e-5 of rounding, against FIDs of 10 and more.
    extractor, images = digits
    assert abs(fid(extractor, images, images)) < 1e-4


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


class UInt8Images(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = to_uint8(images)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index]


def test_harness_fid_agrees_with_torch_fidelity(digits):
    import torch_fidelity
    extractor, images = digits
    generated, reference = images[:300], (images[300:] + 0.2).clamp(-1, 1)
    direct = torch_fidelity.calculate_metrics(
        input1=UInt8Images(generated), input2=UInt8Images(reference), fid=True,
        feature_extractor=extractor.name, feature_layer_fid=extractor.feature_layer,
        feature_extractor_weights_path=extractor.info["weights_path"], cuda=False,
        verbose=False, cache=False, batch_size=100)["frechet_inception_distance"]
    assert fid(extractor, generated, reference) == pytest.approx(direct, rel=1e-4)


def test_fid_between_two_halves_of_a_dataset_falls_as_n_grows(digits):
    extractor, images = digits
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    first, second = images[order[:len(images) // 2]], images[order[len(images) // 2:]]
    values = [fid(extractor, first[:n], second[:n]) for n in (100, 300, 700)]
    assert values[0] > values[1] > values[2]


@pytest.fixture(scope="module")
def shifted_features(digits):
    extractor, images = digits
    features = features_of(extractor, to_uint8(images))
    reference, near = features[:600], features[600:1000]
    far = features_of(extractor, to_uint8((images[600:1000] + 0.8).clamp(-1, 1)))
    return reference, near, far


def test_kid_grows_for_a_shifted_set(shifted_features):
    reference, near, far = shifted_features
    assert kid(near, reference)[0] < kid(far, reference)[0]


def test_precision_falls_for_a_shifted_set(shifted_features):
    reference, near, far = shifted_features
    assert precision_recall(near, reference)[0] > precision_recall(far, reference)[0] + 0.2


def test_recall_falls_when_samples_collapse_onto_few_images(shifted_features):
    reference, near, _ = shifted_features
    collapsed = near[:10].repeat(40, 1)
    assert precision_recall(near, reference)[1] > precision_recall(collapsed, reference)[1] + 0.2


def test_inception_score_of_the_domain_classifier_counts_confident_classes(digits):
    extractor, images = digits
    logits = extract(extractor, to_uint8(images))["logits"]
    one_class = logits[logits.argmax(1) == 0]
    assert inception_score(logits)[0] > 5 > inception_score(one_class.repeat(10, 1))[0]


def test_inception_score_is_refused_without_logits(digits):
    extractor, _ = digits
    without = dataclasses.replace(extractor, logits_layer=None)
    with pytest.raises(DiffbenchError, match="'isc' needs class logits"):
        check_metrics_available(["fid", "isc"], without, "suite.toml")
