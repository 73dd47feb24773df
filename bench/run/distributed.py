"""Multi-process runs under torchrun (`torchrun --nproc_per_node N -m bench run SUITE`).

Every rank runs every cell; a cell's batches are dealt round-robin to the ranks (batch b to rank
b mod N). Sample i's noise depends only on (seed, i), and batch b holds the same indices on any
rank, so the samples are those of a single-process run. Each round, every rank's batch scores
(features, per-image metrics, timings) are gathered on rank 0, which accumulates them in batch
order, exactly as one process would, and writes the row. Rank 0 also goes first through
everything that fills a cache (training, reference statistics) while the others wait, so no two
processes write one cache file. Logs and progress bars come from rank 0 only.

Outside torchrun (or with one process) every function here is the identity.
"""
import contextlib
import datetime
import logging
import os

import torch
import torch.distributed as dist

# Rank 0 may train models while the others wait at a barrier: far longer than the default 30 min.
TIMEOUT = datetime.timedelta(hours=12)


def launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_environment() -> None:
    """Joins torchrun's process group: NCCL with one GPU per rank where CUDA is available, gloo
    on the CPU. Ranks other than 0 log warnings only."""
    if not launched() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))   # "cuda" is this rank's GPU
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=TIMEOUT)
    if rank() != 0:
        logging.getLogger("diffbench").setLevel(logging.WARNING)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (filling caches), then the other ranks (reading them)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def gather_on_main(value) -> list | None:
    """Every rank's `value`, in rank order, on rank 0 (None elsewhere)."""
    if not dist.is_initialized():
        return [value]
    gathered = [None] * world_size() if is_main() else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def broadcast_from_main(value):
    """Rank 0's `value` on every rank."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
