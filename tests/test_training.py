import pytest
import torch

from bench.checkpoints import load_checkpoint
from bench.errors import DiffbenchError
from bench.training import TrainBudget, learning_rate, train


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
    from bench.recipes import ModelRecipe, ensure_trained
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
