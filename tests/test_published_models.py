"""The weights behind the published leaderboards ship in results/published/models/: each is
intact, and a published suite finds every model it needs there (so a user's new cell shares the
published rows' checkpoint hash) without training anything."""
import json

import pytest

from bench.config import load_suite
from bench.data.datasets import load_dataset
from bench.models.checkpoints import load_checkpoint
from bench.models.recipes import find_model, suite_recipes
from bench.paths import published_models_dir

SHIPPED_SUITES = ["quick", "mnist-sr", "mnist", "mnist-top", "overhead", "photos-sr", "zoo",
                  "mnist-denoise", "mnist-anagrams", "mnist-cascade"]  # every model (and LeNet) ships
# Every published leaderboard's rows were made with those weights.
PUBLISHED_SUITES = sorted(p.parent.name for p in published_models_dir().parent.glob("*/rows.jsonl"))
SIZE_BUDGET_MB = 45


def published_weights():
    return sorted(published_models_dir().glob("*/model.safetensors"))


@pytest.mark.parametrize("weights", published_weights(), ids=lambda p: p.parent.name)
def test_each_published_weights_file_matches_its_sidecar(weights):
    tensors, meta = load_checkpoint(weights, "published")
    assert tensors and meta["precision"] in ("fp32", "bf16") and meta["torch"]
    assert weights.parent.name.endswith(meta.get("cache_key", weights.parent.name[-16:]))


@pytest.mark.parametrize("suite", SHIPPED_SUITES)
def test_a_published_suite_finds_every_model_in_the_published_folder(suite):
    config = load_suite(suite)
    dataset = load_dataset(config.dataset)
    for kind, recipe in suite_recipes(config).items():
        found = find_model(recipe.for_dataset(dataset), dataset)
        assert found is not None and found.parent.parent == published_models_dir(), kind


@pytest.mark.parametrize("suite", PUBLISHED_SUITES)
def test_the_published_rows_were_made_with_the_shipped_weights(suite):
    from bench.paths import REPO_ROOT
    shipped = {json.loads(p.with_name(p.name + ".json").read_text())["sha256"] for p in published_weights()}
    rows = [json.loads(r) for r in (REPO_ROOT / "results" / "published" / suite / "rows.jsonl").read_text().splitlines()]
    # a training curve samples its snapshots, which do not ship (past the size budget)
    used = {r["model"]["checkpoint_sha256"] for r in rows if r.get("model") and r["task"] != "train-curve"}
    assert used <= shipped and (used or all(r["task"] == "train-curve" for r in rows))


def test_a_published_training_curve_ends_at_the_shipped_models():
    """Training again with snapshots reproduced the shipped weights bit for bit: the last
    snapshot of each recipe that ships is the shipped model."""
    from bench.paths import REPO_ROOT
    shipped = {json.loads(p.with_name(p.name + ".json").read_text())["sha256"] for p in published_weights()}
    rows = [json.loads(r) for r in (REPO_ROOT / "results" / "published" / "convergence" / "rows.jsonl").read_text().splitlines()]
    last = {r["model"]["recipe"]: r["model"]["checkpoint_sha256"] for r in rows
            if r["training"]["step"] == r["training"]["budget_steps"]}
    assert {"eps", "edm", "flow"} <= set(last) and {last[k] for k in ("eps", "edm", "flow")} <= shipped


@pytest.mark.parametrize("suite", PUBLISHED_SUITES)
def test_the_published_rows_carry_the_current_fingerprint_rule(suite):
    from bench.quality.metrics import protocol_fingerprint
    from bench.store import read_rows
    rows, problems = read_rows(published_models_dir().parent / suite / "rows.jsonl")
    assert rows and not problems
    assert all(r["protocol_fingerprint"] == protocol_fingerprint(r["protocol"]) for r in rows)


def test_the_published_set_stays_small():
    total = sum(p.stat().st_size for p in published_models_dir().rglob("*") if p.is_file())
    assert total < SIZE_BUDGET_MB * 2**20


def test_a_damaged_published_file_says_restore_not_delete(tmp_path, monkeypatch):
    from methods.errors import DiffbenchError
    source = published_weights()[0]
    target = tmp_path / source.parent.name
    target.mkdir()
    (target / source.name).write_bytes(source.read_bytes()[:-10] + b"0123456789")
    (target / (source.name + ".json")).write_bytes(source.with_name(source.name + ".json").read_bytes())
    monkeypatch.setenv("DIFFBENCH_PUBLISHED_MODELS", str(tmp_path))
    with pytest.raises(DiffbenchError, match="git checkout") as info:
        load_checkpoint(target / source.name, "published")
    assert "do not delete" in str(info.value)


def test_the_mnist_classifier_for_guidance_ships(monkeypatch):
    import bench.models.classifier

    def no_training(*args):
        raise AssertionError("the published classifier was not found")
    monkeypatch.setattr(bench.models.classifier, "_train_classifier", no_training)
    classifier = bench.models.classifier.load_classifier("mnist5k")
    assert classifier.accuracy_by_sigma["0.002"] > 0.95 and classifier.module.num_classes == 10
