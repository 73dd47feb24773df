"""One training loop for every cached model: progress bar, EMA, resumable checkpoints.

Randomness (batch indices, noise) comes from one torch.Generator whose state is saved with
each checkpoint, so an interrupted run resumes exactly where it stopped.
"""
import copy
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from bench.checkpoints import checkpoint_exists, load_checkpoint, save_checkpoint


@dataclasses.dataclass(frozen=True)
class TrainBudget:
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 50
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 100
    bf16: bool = False             # CPU bf16 autocast for the forward pass
    channels_last: bool = False


def learning_rate(budget: TrainBudget, step: int) -> float:
    """Linear warm-up, then cosine decay to zero (short CPU budgets end on a small step size)."""
    if step < budget.warmup_steps:
        return budget.lr * (step + 1) / budget.warmup_steps
    progress = (step - budget.warmup_steps) / max(1, budget.steps - budget.warmup_steps)
    return budget.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> None:
    """EMA of the weights, with the usual warm-up (1 + n) / (10 + n) so early weights fade fast."""
    decay = min(decay, (1 + step) / (10 + step))
    for ema_p, p in zip(ema.parameters(), model.parameters()):
        ema_p.lerp_(p, 1 - decay)


def _state_tensors(model, ema, optimizer, generator) -> dict[str, torch.Tensor]:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    for index, state in optimizer.state_dict()["state"].items():
        tensors.update({f"optim.{index}.{k}": torch.as_tensor(v) for k, v in state.items()})
    tensors["generator"] = generator.get_state()
    return tensors


def _restore_state(tensors, model, ema, optimizer, generator) -> None:
    def strip(prefix):
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    model.load_state_dict(strip("model."))
    ema.load_state_dict(strip("ema."))
    state: dict[int, dict] = {}
    for key, value in strip("optim.").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optim_state = optimizer.state_dict()
    optim_state["state"] = state
    optimizer.load_state_dict(optim_state)
    generator.set_state(tensors["generator"])


def train(model: torch.nn.Module, loss_fn: Callable, num_examples: int, budget: TrainBudget,
          directory: Path, description: str, meta: dict) -> dict:
    """Train `model` on `loss_fn(model, batch_index, generator)`; returns the final sidecar meta.

    Writes `directory/train-state.safetensors` every `checkpoint_every` steps and finally
    `directory/model.safetensors` holding the EMA weights.
    """
    final, state_path = directory / "model.safetensors", directory / "train-state.safetensors"
    ema = _copy_frozen(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=budget.lr)
    generator = torch.Generator().manual_seed(budget.seed)
    start, history = 0, []
    if checkpoint_exists(state_path):
        tensors, state_meta = load_checkpoint(state_path, f"{description} training-state")
        _restore_state(tensors, model, ema, optimizer, generator)
        start, history = state_meta["step"], state_meta["loss_history"]
    if budget.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    began, bar = time.perf_counter(), tqdm(range(start, budget.steps), initial=start,
                                           total=budget.steps, desc=f"train {description}",
                                           mininterval=2.0, dynamic_ncols=True)
    running = []
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(budget, step)
        index = torch.randint(0, num_examples, (budget.batch_size,), generator=generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=budget.bf16):
            loss = loss_fn(model, index, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.float().backward()
        optimizer.step()
        update_ema(ema, model, budget.ema_decay, step)
        running.append(float(loss.detach()))
        if (step + 1) % budget.checkpoint_every == 0 or step + 1 == budget.steps:
            history.append([step + 1, sum(running) / len(running)])
            running.clear()
            bar.set_postfix(loss=f"{history[-1][1]:.4f}")
            save_checkpoint(state_path, _state_tensors(model, ema, optimizer, generator),
                            {**meta, "step": step + 1, "loss_history": history})
    elapsed = time.perf_counter() - began
    images_per_s = (budget.steps - start) * budget.batch_size / elapsed if elapsed > 0 else None
    final_meta = {**meta, "step": budget.steps, "loss_history": history,
                  "train_images_per_s_last_session": images_per_s,
                  "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    save_checkpoint(final, dict(ema.state_dict()), final_meta)
    return json.loads((directory / "model.safetensors.json").read_text())


def _copy_frozen(model: torch.nn.Module) -> torch.nn.Module:
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    return ema
