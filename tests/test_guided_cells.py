"""Classifier-guided cells end to end on digits8: the classifier is trained once and cached with
its accuracy by noise level, its gradients are counted apart from NFE, and guidance raises the
share of samples that the domain classifier reads as the requested class."""
import dataclasses
import json

import pytest

import bench.models.classifier
from bench.models.classifier import ACCURACY_SIGMAS, load_classifier
from tests.helpers import run_suite_text

SUITE = """
[suite]
dataset = "digits8"
n_samples = 64
batch_size = 16
grid_size = 8
metrics = ["fid", "class_acc"]

[models.eps]
recipe = "eps-digits8"
steps = 300

[[cells]]
method = "ddim-cg"
steps = [10]
hparams = { guidance_scale = 0.0 }

[[cells]]
method = "ddim-cg"
steps = [10]
hparams = { guidance_scale = 8.0 }
"""


@pytest.fixture(scope="module", autouse=True)
def short_classifier_training():
    """A tenth of the real budget: enough for 8x8 digits, and a test-only cache entry (the
    budget is part of the classifier's cache key)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench.models.classifier, "CLASSIFIER_BUDGET",
                      dataclasses.replace(bench.models.classifier.CLASSIFIER_BUDGET, steps=150, warmup_steps=10))
        yield


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    results = run_suite_text(tmp_path_factory.mktemp("guided"), SUITE)
    lines = (results / "tiny" / "rows.jsonl").read_text().splitlines()
    return {json.loads(line)["hparams"]["guidance_scale"]: json.loads(line) for line in lines}


def test_the_classifier_records_its_accuracy_at_every_noise_level():
    accuracy = load_classifier("digits8").accuracy_by_sigma
    assert list(accuracy) == [f"{s:g}" for s in ACCURACY_SIGMAS]
    assert accuracy["0.002"] > 0.8 and accuracy["80"] < 0.3   # clean digits readable, pure noise not


@pytest.mark.slow   # trains a 300-step eps model and samples with gradients (~3 min)
def test_guided_rows_name_the_classifier_and_count_its_gradients_apart_from_nfe(rows):
    guided, unguided = rows[8.0], rows[0.0]
    assert guided["status"] == unguided["status"] == "ok"
    assert guided["nfe"] == unguided["nfe"] == 10
    assert guided["classifier"]["evaluations_per_sample"] == 10
    assert unguided["classifier"]["evaluations_per_sample"] == 0
    assert guided["classifier"]["sha256"] == load_classifier("digits8").sha256
    assert 0 < guided["classifier"]["time_share"] < 1


@pytest.mark.slow   # shares the 3-minute rows above
def test_guidance_raises_the_class_accuracy_of_the_samples(rows):
    assert rows[8.0]["metrics"]["class_acc"]["value"] > rows[0.0]["metrics"]["class_acc"]["value"] + 0.2
