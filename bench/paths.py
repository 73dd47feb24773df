"""Where diffbench keeps things: a cache for checkpoints and statistics, the published models,
results and reports."""
import os
from pathlib import Path

from methods.errors import DiffbenchError, StorageError

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """$DIFFBENCH_CACHE, else ~/.cache/diffbench (checkpoints, reference statistics)."""
    return Path(os.environ.get("DIFFBENCH_CACHE") or Path.home() / ".cache" / "diffbench")


def published_models_dir() -> Path:
    """$DIFFBENCH_PUBLISHED_MODELS, else results/published/models/ in the repository: the
    weights behind the published leaderboards, looked up before the cache and before training."""
    return Path(os.environ.get("DIFFBENCH_PUBLISHED_MODELS") or REPO_ROOT / "results" / "published" / "models")


def checkpoint_folders(kind: str, name: str) -> list[Path]:
    """Where a checkpoint folder `name` may be, in lookup order: the published models, then the
    cache's `kind` folder ("models" or "extractors")."""
    return [published_models_dir() / name, cache_dir() / kind / name]


def ensure_writable(directory: Path, what: str, fix: str) -> None:
    """Create `directory` and write and remove a probe file there, or a one-line error."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as err:
        raise DiffbenchError(f"{what} {str(directory)!r} is not writable "
                             f"({err.strerror or err}): {fix}") from None


def atomic_write(path: Path, data: bytes) -> None:
    """Write a whole file or nothing: a temporary sibling, fsync, then rename over `path`. A
    failure (full disk, permissions) leaves no temporary file and is a StorageError."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:   # an interrupt, too, leaves no half-written sibling behind
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise StorageError(f"cannot write {str(path)!r} ({err.strerror or err}): free disk "
                               "space or fix permissions, then run again") from None
        raise
