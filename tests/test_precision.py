"""Training precision is the machine's: bf16 only where the CPU runs it natively, decided by
torch's capability queries (or a timing probe when they cannot tell); the resolved precision is
part of the model's identity."""
import json

import pytest

import bench.models.precision
from bench.data.datasets import load_dataset
from bench.models.precision import resolve_precision
from bench.models.recipes import ModelRecipe, ensure_trained, find_model
from bench.models.training import TrainBudget
from methods import UNetConfig


@pytest.fixture
def cpu(monkeypatch):
    """cpu("native" | "emulated" | "unknown"): what the capability queries report."""
    def fake(support):
        monkeypatch.setattr(bench.models.precision, "cpu_bf16_support", lambda: support)
    return fake


@pytest.mark.parametrize("support, chosen, says", [
    ("native", "bf16", "runs bf16 natively"),
    ("emulated", "fp32", "no native bf16"),
])
def test_auto_follows_the_cpus_bf16_capability(cpu, support, chosen, says):
    cpu(support)
    precision = resolve_precision("auto", probe=lambda bf16: pytest.fail("no probe needed"))
    assert precision.name == chosen and says in precision.reason


@pytest.mark.parametrize("fp32_s, bf16_s, chosen", [(1.0, 0.5, "bf16"), (1.0, 0.95, "fp32"),
                                                    (1.0, 9.0, "fp32")])
def test_an_unknown_cpu_is_decided_by_a_timing_probe(cpu, fp32_s, bf16_s, chosen):
    cpu("unknown")
    precision = resolve_precision("auto", probe=lambda bf16: bf16_s if bf16 else fp32_s)
    assert precision.name == chosen and "timing probe" in precision.reason


@pytest.mark.parametrize("asked", ["fp32", "bf16"])
def test_an_explicit_precision_is_kept_whatever_the_cpu(cpu, asked):
    cpu("emulated" if asked == "bf16" else "native")
    assert resolve_precision(asked).name == asked


def test_this_machines_answer_is_one_of_the_three():
    assert bench.models.precision.cpu_bf16_support() in ("native", "emulated", "unknown")


def tiny_recipe(name="prec-test", **budget):
    return ModelRecipe(name=name, model="eps", objective="ddpm-eps", dataset="digits8",
                       network=UNetConfig(image_size=8, base_channels=8, channel_mult=(1,)),
                       budget=TrainBudget(steps=4, batch_size=8, checkpoint_every=4, **budget))


@pytest.mark.parametrize("support, chosen", [("native", "bf16"), ("emulated", "fp32")])
def test_the_resolved_precision_is_in_the_cache_key_and_the_sidecar(cpu, caplog, support, chosen):
    cpu(support)
    with caplog.at_level("INFO", logger="diffbench"):
        model = ensure_trained(tiny_recipe())
    assert model.meta["precision"] == chosen and model.meta["budget"]["precision"] == chosen
    dataset = load_dataset("digits8")
    resolved = tiny_recipe().for_dataset(dataset).with_precision(chosen)
    assert model.meta["cache_key"] == resolved.cache_key(dataset.content_hash)
    assert model.path.parent.name.endswith(model.meta["cache_key"])
    assert f"train prec-test: {chosen}, because" in caplog.text


def test_fp32_and_bf16_models_are_different_models():
    dataset = load_dataset("digits8")
    recipe = tiny_recipe().for_dataset(dataset)
    assert recipe.with_precision("fp32").cache_key(dataset.content_hash) != \
        recipe.with_precision("bf16").cache_key(dataset.content_hash)


def test_a_published_model_is_used_before_the_cache_and_before_training(cpu, monkeypatch, tmp_path):
    """Under "auto", a published model serves any machine, whatever precision it was trained in."""
    cpu("emulated")
    trained = ensure_trained(tiny_recipe(name="pub-test"))          # fp32, into the cache
    published = tmp_path / "published"
    target = published / trained.path.parent.name
    target.mkdir(parents=True)
    for name in ("model.safetensors", "model.safetensors.json"):
        (target / name).write_bytes((trained.path.parent / name).read_bytes())
    monkeypatch.setenv("DIFFBENCH_PUBLISHED_MODELS", str(published))
    monkeypatch.setattr("bench.models.recipes._train_recipe", lambda *a: pytest.fail("trained again"))
    cpu("native")                                                   # this machine would pick bf16
    model = ensure_trained(tiny_recipe(name="pub-test"))
    assert model.path == target / "model.safetensors"
    assert model.checkpoint_sha256 == trained.checkpoint_sha256
    assert json.loads((target / "model.safetensors.json").read_text())["precision"] == "fp32"
    assert find_model(tiny_recipe(name="pub-test", precision="bf16").for_dataset(load_dataset("digits8")),
                      load_dataset("digits8")) is None
