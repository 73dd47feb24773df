import pytest
import torch

from bench.models.checkpoints import load_checkpoint
from bench.models.training import TrainBudget, learning_rate, train
from methods.errors import DiffbenchError


def make_problem():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    data = torch.randn(64, 3)
    target = data @ torch.tensor([[1.0], [-2.0], [0.5]])

    def loss_fn(net, index, generator):
        noise = torch.randn(len(index), 1, generator=generator) * 0.01
        return ((net(data[index]) - target[index] - noise) ** 2).mean()
    return model, loss_fn


def test_interrupted_training_resumes_to_identical_weights(tmp_path):
    budget = TrainBudget(steps=40, batch_size=8, lr=1e-2, warmup_steps=5, checkpoint_every=10,
                         precision="fp32")
    model, loss_fn = make_problem()
    train(model, loss_fn, 64, budget, tmp_path / "straight", "t", {})

    model, loss_fn = make_problem()
    calls = []

    def dies_at_step_25(net, index, generator):
        calls.append(1)
        if len(calls) > 25:
            raise KeyboardInterrupt  # killed after the step-20 checkpoint
        return loss_fn(net, index, generator)

    with pytest.raises(KeyboardInterrupt):
        train(model, dies_at_step_25, 64, budget, tmp_path / "resumed", "t", {})
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    model, loss_fn = make_problem()
    train(model, loss_fn, 64, budget, tmp_path / "resumed", "t", {})

    straight, _ = load_checkpoint(tmp_path / "straight" / "model.safetensors", "t")
    resumed, _ = load_checkpoint(tmp_path / "resumed" / "model.safetensors", "t")
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0)


def test_corrupted_checkpoint_is_a_clear_error(tmp_path):
    model, loss_fn = make_problem()
    train(model, loss_fn, 64, TrainBudget(steps=5, batch_size=8, checkpoint_every=5, precision="fp32"), tmp_path, "t", {})
    path = tmp_path / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DiffbenchError, match="does not match its recorded sha256"):
        load_checkpoint(path, "t")


def test_learning_rate_warms_up_then_decays():
    budget = TrainBudget(steps=100, lr=1.0, warmup_steps=10)
    assert learning_rate(budget, 0) == pytest.approx(0.1)
    assert learning_rate(budget, 9) == pytest.approx(1.0)
    assert learning_rate(budget, 99) < 0.01


def test_class_conditional_training_drops_ten_percent_of_labels():
    from bench.models.recipes import ModelRecipe, ensure_trained
    from methods import OBJECTIVES, UNetConfig
    from methods.base import Objective
    seen = []

    def spy_loss(net, x0, generator, labels=None, lowres=None):
        seen.append(labels.clone())
        return sum(p.sum() for p in net.parameters()) * 0.0

    OBJECTIVES.register("spy-test", Objective("spy-test", spy_loss, lambda net: net))
    try:
        recipe = ModelRecipe(name="spy-test", model="spy", objective="spy-test", dataset="digits8",
                             network=UNetConfig(base_channels=8, channel_mult=(1,), num_classes=1),
                             budget=TrainBudget(steps=50, batch_size=64, checkpoint_every=50))
        ensure_trained(recipe)
    finally:
        OBJECTIVES.unregister("spy-test")
    labels = torch.cat(seen)
    dropped = (labels == 10).float().mean()
    assert 0.07 < float(dropped) < 0.13 and int(labels.max()) == 10


def dropout_problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 1))
    data = torch.randn(64, 3)
    target = data.sum(1, keepdim=True)

    def loss_fn(net, index, generator):
        return ((net(data[index]) - target[index]) ** 2).mean()
    return model, loss_fn


BUDGET = TrainBudget(steps=40, batch_size=8, lr=1e-2, warmup_steps=5, checkpoint_every=10,
                     precision="fp32")


def interrupted_at(loss_fn, step):
    calls = []

    def dies(net, index, generator):
        calls.append(1)
        if len(calls) > step:
            raise KeyboardInterrupt
        return loss_fn(net, index, generator)
    return dies


def final_weights(directory):
    return load_checkpoint(directory / "model.safetensors", "t")[0]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


@pytest.mark.parametrize("problem", [make_problem, dropout_problem])
def test_resumed_training_is_bit_identical_with_and_without_dropout(tmp_path, problem):
    torch.manual_seed(123)   # the caller's global stream must not matter
    train(*problem(), 64, BUDGET, tmp_path / "straight", "t", {})
    model, loss_fn = problem()
    with pytest.raises(KeyboardInterrupt):
        train(model, interrupted_at(loss_fn, 25), 64, BUDGET, tmp_path / "resumed", "t", {})
    torch.rand(7)            # something else draws from the global generator in between
    train(*problem(), 64, BUDGET, tmp_path / "resumed", "t", {})
    assert_same_weights(final_weights(tmp_path / "resumed"), final_weights(tmp_path / "straight"))


def damage(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("harm", ["current state damaged", "killed between the two state files",
                                  "both states damaged", "state truncated"])
def test_a_damaged_training_state_falls_back_by_itself(tmp_path, harm):
    from bench.models.checkpoints import previous_state
    train(*dropout_problem(), 64, BUDGET, tmp_path / "straight", "t", {})
    model, loss_fn = dropout_problem()
    with pytest.raises(KeyboardInterrupt):
        train(model, interrupted_at(loss_fn, 35), 64, BUDGET, tmp_path / "resumed", "t", {})
    state = tmp_path / "resumed" / "train-state.safetensors"
    if harm == "current state damaged":
        damage(state)
    elif harm == "killed between the two state files":   # the old state moved aside, no new one yet
        state.replace(previous_state(state))
    elif harm == "both states damaged":
        damage(state)
        damage(previous_state(state))
    else:
        state.write_bytes(state.read_bytes()[:100])
    train(*dropout_problem(), 64, BUDGET, tmp_path / "resumed", "t", {})
    assert_same_weights(final_weights(tmp_path / "resumed"), final_weights(tmp_path / "straight"))


def test_a_kill_before_the_final_sidecar_retrains_nothing_and_completes(tmp_path, monkeypatch):
    import bench.models.checkpoints
    train(*make_problem(), 64, BUDGET, tmp_path / "straight", "t", {})
    real = bench.models.checkpoints.atomic_write

    def killed_at_the_sidecar(path, data):
        if path.name == "model.safetensors.json":
            raise KeyboardInterrupt
        return real(path, data)
    monkeypatch.setattr(bench.models.checkpoints, "atomic_write", killed_at_the_sidecar)
    with pytest.raises(KeyboardInterrupt):
        train(*make_problem(), 64, BUDGET, tmp_path / "resumed", "t", {"extra": 1},
              final_meta=lambda ema: {"accuracy": 0.5})
    monkeypatch.undo()
    calls = []
    model, loss_fn = make_problem()
    meta = train(model, lambda *a: calls.append(1) or loss_fn(*a), 64, BUDGET, tmp_path / "resumed",
                 "t", {"extra": 1}, final_meta=lambda ema: {"accuracy": 0.5})
    assert calls == [] and meta["accuracy"] == 0.5 and meta["extra"] == 1
    assert_same_weights(final_weights(tmp_path / "resumed"), final_weights(tmp_path / "straight"))


def test_lenet_accuracy_is_recorded_even_after_a_kill_at_its_sidecar(monkeypatch, tmp_path):
    import bench.models.checkpoints
    from bench.quality.extractors import lenet_extractor
    monkeypatch.setenv("DIFFBENCH_CACHE", str(tmp_path))
    real = bench.models.checkpoints.atomic_write

    def killed(path, data):
        if path.name == "model.safetensors.json" and "lenet" in str(path):
            raise KeyboardInterrupt
        return real(path, data)
    monkeypatch.setattr(bench.models.checkpoints, "atomic_write", killed)
    with pytest.raises(KeyboardInterrupt):
        lenet_extractor("digits8")
    monkeypatch.setattr(bench.models.checkpoints, "atomic_write", real)
    accuracy = lenet_extractor("digits8").info["test_accuracy"]
    assert isinstance(accuracy, float) and accuracy > 0.5
