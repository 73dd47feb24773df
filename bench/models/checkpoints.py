"""Checkpoints: safetensors tensors plus a JSON sidecar, written atomically, verified on load;
and training states, one self-verifying file each, so a kill can never pair new tensors with old
metadata."""
import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from bench.paths import atomic_write, checkpoint_folders, ensure_writable, published_models_dir
from methods.errors import DiffbenchError

log = logging.getLogger("diffbench")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> str:
    """Write `path` (.safetensors) and `path.json`; returns the tensors file's sha256."""
    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    sha = hashlib.sha256(data).hexdigest()
    atomic_write(path, data)
    atomic_write(sidecar_path(path), json.dumps({**meta, "sha256": sha}, indent=2).encode())
    return sha


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def load_checkpoint(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Load and verify a checkpoint; any damage is a one-line error saying what to delete."""
    path = Path(path)
    fix = f"delete {str(path.parent)!r} and run again to rebuild it"
    if published_models_dir().resolve() in path.resolve().parents:   # retraining would not match
        fix = (f"restore the published weights (git checkout -- {str(path.parent)!r}); do not "
               "delete them, a retrained model would not match the published rows")
    try:
        meta = json.loads(sidecar_path(path).read_text())
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            raise DiffbenchError(f"{what} checkpoint {str(path)!r} does not match its recorded "
                                 f"sha256 (corrupted or replaced): {fix}")
        return load(data), meta
    except (OSError, ValueError, SafetensorError) as err:
        raise DiffbenchError(f"{what} checkpoint {str(path)!r} is unreadable "
                             f"({type(err).__name__}): {fix}") from None


def checkpoint_exists(path: Path) -> bool:
    return path.is_file() and sidecar_path(path).is_file()


def save_state(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """A training state as one file: the tensors, with `meta` and the tensors' sha256 in the
    safetensors header, written by one atomic rename. The state it replaces is kept as
    `<name>.prev` so that a state damaged later still leaves one to resume from."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    digest = hashlib.sha256(save(tensors)).hexdigest()
    header = {"diffbench": json.dumps({**meta, "tensors_sha256": digest}, sort_keys=True)}
    data = save(tensors, metadata=header)
    if path.is_file():
        os.replace(path, previous_state(path))
    atomic_write(path, data)


def previous_state(path: Path) -> Path:
    return path.with_name(path.stem + ".prev" + path.suffix)


def _read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    data = path.read_bytes()
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_length])
    meta = json.loads(header["__metadata__"]["diffbench"])
    tensors = load(data)
    if hashlib.sha256(save(tensors)).hexdigest() != meta.pop("tensors_sha256"):
        raise ValueError("tensors do not match their recorded sha256")
    return tensors, meta


def load_state(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The newest intact training state (`path`, else the one before it), or None. A damaged
    one is named in a warning and passed over, never deleted."""
    for candidate in (path, previous_state(path)):
        if not candidate.is_file():
            continue
        try:
            return _read_state(candidate)
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as err:
            log.warning("%s: training state %s is damaged (%s: %s); passing over it", what,
                        candidate, type(err).__name__, err)
    return None


def published_or_trained(kind: str, folder: str, train_into, what: str) -> Path:
    """The weights file of checkpoint folder `folder`: published, else cached, else trained by
    `train_into(cache folder)` (which writes model.safetensors there)."""
    published, cached = checkpoint_folders(kind, folder)
    for directory in (published, cached):
        if checkpoint_exists(directory / "model.safetensors"):
            return directory / "model.safetensors"
    ensure_writable(cached, what, "set DIFFBENCH_CACHE to a writable folder")
    train_into(cached)
    return cached / "model.safetensors"
