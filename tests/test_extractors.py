"""A user's ViT as the feature extractor (`dinov2:PATH`, `clip:PATH`, bench.quality.vit): tiny
random-weight timm ViTs saved as safetensors, their preprocessing as the reference readers do
it, and a suite scored with one end to end."""
import dataclasses

import numpy as np
import pytest
import safetensors.torch
import timm
import torch
from PIL import Image
from timm.models._hub import save_for_hf

from bench.quality import vit
from bench.quality.metrics import load_extractor
from bench.store import ResultStore
from methods.errors import DiffbenchError
from tests.helpers import run_suite_text

DINO_ARGS = {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 224}
CLIP_ARGS = {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 64, "num_classes": 16}


def saved_vit(folder, architecture, args):
    torch.manual_seed(0)
    network = timm.create_model(architecture, pretrained=False, **args)
    save_for_hf(network, folder, model_args=args, safe_serialization=True)
    return network


@pytest.fixture(scope="module")
def dino_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dino")
    saved_vit(folder, "vit_small_patch14_dinov2", DINO_ARGS)
    return folder


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    saved_vit(folder, "vit_base_patch16_clip_224", CLIP_ARGS)
    return folder


def digits_uint8(count=6):
    return (torch.rand(count, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)


def test_images_are_resized_by_pils_bicubic_filter_as_rgb():
    images = digits_uint8(2)
    resized = vit.resize_uint8(images, 224, centre_crop=False)
    expected = np.array(Image.fromarray(images[1, 0].numpy()).convert("RGB").resize((224, 224), Image.BICUBIC))
    assert resized.shape == (2, 3, 224, 224) and torch.equal(resized[1], torch.from_numpy(expected).permute(2, 0, 1))


def test_clip_crops_the_centre_square_first():
    wide = torch.zeros(1, 3, 8, 12, dtype=torch.uint8)
    wide[..., 2:10] = 200           # the centre 8 x 8 is bright, the side strips dark
    assert vit.resize_uint8(wide, 16, centre_crop=True).min() == 200


def test_a_dinov2_folder_gives_the_cls_token_of_dgm_evals_preprocessing(dino_folder):
    extractor = load_extractor(f"dinov2:{dino_folder}", "digits8")
    network = timm.create_model("vit_small_patch14_dinov2", pretrained=False, **DINO_ARGS).eval()
    network.load_state_dict(safetensors.torch.load_file(dino_folder / "model.safetensors"))
    images = digits_uint8()
    pixels = vit.resize_uint8(images, 224, False).float() / 255
    mean, std = torch.tensor(vit.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(vit.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = network((pixels - mean) / std)
    torch.testing.assert_close(extractor(images)["embedding"], expected)
    assert extractor.preprocessing["resize"] == "PIL bicubic to 224x224"


def test_a_clip_embedding_has_unit_length_at_the_models_own_size(clip_folder):
    extractor = load_extractor(f"clip:{clip_folder}", "digits8")
    embedding = extractor(digits_uint8())["embedding"]
    assert embedding.shape == (6, 16) and extractor.preprocessing["resize"] == "PIL bicubic to 64x64"
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(6))


def test_the_extractors_identity_is_its_weights(dino_folder, tmp_path):
    other = tmp_path / "other"
    torch.manual_seed(5)
    save_for_hf(timm.create_model("vit_small_patch14_dinov2", pretrained=False, **DINO_ARGS), other,
                model_args=DINO_ARGS, safe_serialization=True)
    first, second = (load_extractor(f"dinov2:{p}", "digits8") for p in (dino_folder, other))
    assert first.weights_sha256 != second.weights_sha256 and first.name != second.name
    assert load_extractor(f"dinov2:{dino_folder}", "digits8").weights_sha256 == first.weights_sha256


@pytest.mark.slow
def test_a_bare_safetensors_file_holds_the_default_architecture(tmp_path, monkeypatch):
    small = dataclasses.replace(vit.KINDS["dinov2"], architecture="vit_small_patch14_dinov2")
    monkeypatch.setitem(vit.KINDS, "dinov2", small)
    network = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=224)
    safetensors.torch.save_file(network.state_dict(), tmp_path / "dino.safetensors")
    extractor = load_extractor(f"dinov2:{tmp_path / 'dino.safetensors'}", "digits8")
    assert extractor(digits_uint8(2))["embedding"].shape == (2, 384)


def test_a_folder_with_pickled_weights_only_is_refused(tmp_path):
    network = timm.create_model("vit_small_patch14_dinov2", pretrained=False, **DINO_ARGS)
    save_for_hf(network, tmp_path, model_args=DINO_ARGS, safe_serialization=False)
    with pytest.raises(DiffbenchError, match="no model.safetensors"):
        load_extractor(f"dinov2:{tmp_path}", "digits8")


@pytest.mark.parametrize("spec, message", [("dinov2:/no/such/place", "no such folder"),
                                           ("clip:hub", "no torch.hub model")])
def test_a_bad_extractor_spec_is_one_line_naming_it(spec, message):
    with pytest.raises(DiffbenchError, match=message):
        load_extractor(spec, "digits8")


def test_dinov2_hub_loads_the_reference_entry_point(monkeypatch, dino_folder):
    asked = []
    tiny = timm.create_model("vit_small_patch14_dinov2", pretrained=False, **DINO_ARGS)
    monkeypatch.setattr(torch.hub, "load", lambda *args: asked.append(args) or tiny)
    extractor = load_extractor("dinov2:hub", "digits8")
    assert asked == [("facebookresearch/dinov2", "dinov2_vitl14")]
    assert extractor(digits_uint8(2))["embedding"].shape == (2, 32)


SUITE = """
[suite]
description = "a user's ViT extractor"
dataset = "digits8"
n_samples = 40
batch_size = 20
feature_extractor = "dinov2:{folder}"
metrics = ["fid", "fd", "fid_infinity", "kid", "cmmd", "precision", "recall", "density", "coverage"]

[models.eps]
recipe = "eps-digits8"
steps = 20
base_channels = 8

[[cells]]
method = "ddim"
steps = [3]
"""


@pytest.fixture(scope="module")
def vit_rows(tmp_path_factory, dino_folder):
    results = run_suite_text(tmp_path_factory.mktemp("vit-suite"), SUITE.format(folder=dino_folder), "vit")
    return ResultStore(results, "vit").read()[0]


def test_a_suite_scores_every_metric_from_the_vits_features(vit_rows):
    (row,) = vit_rows
    assert row["status"] == "ok", row["message"]
    metrics = row["metrics"]
    assert {"fid", "fd", "fid_infinity", "kid", "cmmd", "precision", "recall", "density", "coverage"} <= set(metrics)
    assert metrics["fd"]["value"] == metrics["fid"]["value"] and metrics["cmmd"]["value"] > 0
    assert row["paired"]["features"]["dim"] == 32


def test_the_protocol_records_the_vits_weights_and_preprocessing(vit_rows):
    protocol = vit_rows[0]["protocol"]
    assert protocol["preprocessing"]["after"] == "dgm-eval DINOv2Encoder.transform"
    assert protocol["extractor"].startswith("dinov2-") and len(protocol["extractor_weights_sha256"]) == 64
    assert protocol["metrics"]["cmmd"]["sigma"] == 10.0
    assert protocol["metrics"]["density_coverage"]["nearest_k"] == 5
