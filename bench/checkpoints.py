"""Checkpoints: safetensors tensors plus a JSON sidecar, written atomically, verified on load."""
import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from bench.errors import DiffbenchError
from bench.paths import atomic_write


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
