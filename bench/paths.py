"""Where diffbench keeps things: a cache for checkpoints and statistics, results and reports."""
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """$DIFFBENCH_CACHE, else ~/.cache/diffbench (checkpoints, reference statistics)."""
    return Path(os.environ.get("DIFFBENCH_CACHE") or Path.home() / ".cache" / "diffbench")


def atomic_write(path: Path, data: bytes) -> None:
    """Write a whole file or nothing: a temporary sibling, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
