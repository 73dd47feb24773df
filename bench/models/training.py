"""One training loop for every cached model: progress bar, EMA, resumable checkpoints.

Randomness comes from one torch.Generator (batch indices, noise) and from torch's global
generator (dropout), seeded from the budget at the start and both saved with each training
state, so an interrupted run resumes bit for bit where it stopped whatever the network.

A run may also keep snapshots: the EMA weights after chosen steps (a training curve's
checkpoints), each with the training seconds and images seen until then. Where snapshots are
kept does not change the model, so they live beside its final weights under the same cache key.
"""
import copy
import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from bench.models.checkpoints import checkpoint_exists, load_state, save_checkpoint, save_state
from bench.models.precision import autocast

log = logging.getLogger("diffbench")
STATE_FILE = "train-state.safetensors"
SNAPSHOT_FOLDER = "snapshots"


def snapshot_path(directory: Path, step: int) -> Path:
    return Path(directory) / SNAPSHOT_FOLDER / f"step-{step:07d}.safetensors"


@dataclasses.dataclass(frozen=True)
class TrainBudget:
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 50
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 100
    precision: str = "auto"        # "auto" (bf16 only where the CPU runs it natively), "fp32", "bf16"
    channels_last: bool = False

    def limits(self) -> dict[str, tuple]:
        """Each numeric field's accepted range (inclusive; None: unbounded)."""
        return {"steps": (0, 10**7), "batch_size": (1, 65536), "lr": (1e-12, 10.0),
                "warmup_steps": (0, 10**7), "ema_decay": (0.0, 1.0), "seed": (0, 2**63 - 1),
                "checkpoint_every": (1, 10**7)}


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
    tensors["global_generator"] = torch.get_rng_state()   # what nn.Dropout draws from
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
    torch.set_rng_state(tensors["global_generator"])


def train(model: torch.nn.Module, loss_fn: Callable, num_examples: int, budget: TrainBudget,
          directory: Path, description: str, meta: dict,
          final_meta: Callable[[torch.nn.Module], dict] = lambda ema: {},
          snapshots: tuple[int, ...] = ()) -> dict:
    """Train `model` on `loss_fn(model, batch_index, generator)`; returns the final sidecar meta.

    Writes `directory/train-state.safetensors` every `checkpoint_every` steps and finally
    `directory/model.safetensors` holding the EMA weights, its sidecar including
    `final_meta(ema)` (e.g. a test accuracy), so nothing is added to it afterwards, and the EMA
    weights after each step in `snapshots` (`snapshot_path`). A saved state past a missing
    snapshot cannot give it, so training then starts again from step 0.
    `budget.precision` must be resolved ("fp32" or "bf16"). torch's global generator is
    seeded from the budget and restored afterwards: the caller's stream is left as it was.
    """
    if budget.precision not in ("fp32", "bf16"):
        raise ValueError(f"train() needs a resolved precision, got {budget.precision!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(budget.seed)
        return _train(model, loss_fn, num_examples, budget, Path(directory), description, meta,
                      final_meta, sorted(set(snapshots)))


def _train(model, loss_fn, num_examples, budget, directory, description, meta, final_meta, snapshots):
    final, state_path = directory / "model.safetensors", directory / STATE_FILE
    ema = _copy_frozen(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=budget.lr)
    generator = torch.Generator().manual_seed(budget.seed)
    start, history, seconds = 0, [], 0.0
    state = load_state(state_path, f"train {description}")
    missing = [s for s in snapshots if not checkpoint_exists(snapshot_path(directory, s))]
    if state is not None and missing and state[1]["step"] > missing[0]:
        log.info("train %s: the saved state is past step %d, whose snapshot is missing: "
                 "training again from step 0", description, missing[0])
        state = None
    if state is not None:
        tensors, state_meta = state
        _restore_state(tensors, model, ema, optimizer, generator)
        start, history = state_meta["step"], state_meta["loss_history"]
        seconds = state_meta.get("train_seconds", 0.0)
        log.info("train %s: resuming at step %d of %d", description, start, budget.steps)
    if budget.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    began, bar = time.perf_counter(), tqdm(range(start, budget.steps), initial=start,
                                           total=budget.steps, desc=f"train {description}",
                                           mininterval=2.0, dynamic_ncols=True)
    running = []
    for step in bar:
        step_began = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(budget, step)
        index = torch.randint(0, num_examples, (budget.batch_size,), generator=generator)
        with autocast(budget.precision):
            loss = loss_fn(model, index, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.float().backward()
        optimizer.step()
        update_ema(ema, model, budget.ema_decay, step)
        running.append(float(loss.detach()))
        seconds += time.perf_counter() - step_began   # the steps only, not saving checkpoints
        if step + 1 in snapshots:
            save_checkpoint(snapshot_path(directory, step + 1), dict(ema.state_dict()), {
                **meta, **progress_meta(budget, step + 1, seconds)})
        if (step + 1) % budget.checkpoint_every == 0 or step + 1 == budget.steps:
            history.append([step + 1, sum(running) / len(running)])
            running.clear()
            bar.set_postfix(loss=f"{history[-1][1]:.4f}")
            save_state(state_path, _state_tensors(model, ema, optimizer, generator),
                       {"step": step + 1, "loss_history": history, "train_seconds": seconds})
    elapsed = time.perf_counter() - began
    images_per_s = (budget.steps - start) * budget.batch_size / elapsed if elapsed > 0 else None
    save_checkpoint(final, dict(ema.state_dict()), {
        **meta, **progress_meta(budget, budget.steps, seconds), "loss_history": history,
        "final_loss": history[-1][1] if history else None, **final_meta(ema),
        "train_images_per_s_last_session": images_per_s,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return json.loads((directory / "model.safetensors.json").read_text())


def progress_meta(budget: TrainBudget, step: int, seconds: float) -> dict:
    """How far training had come: steps, images seen, and the wall-clock seconds of the steps
    (summed over resumed sessions; the machine's load at the time is in them)."""
    return {"step": step, "images_seen": step * budget.batch_size, "train_seconds": seconds}


def _copy_frozen(model: torch.nn.Module) -> torch.nn.Module:
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    return ema
