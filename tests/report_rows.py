"""Result rows for report tests: the fields a report reads, with values a test chooses, completed
as the store hands rows out."""
import hashlib

import numpy as np
from PIL import Image

from bench.rows import complete
from bench.store import ResultStore

PROTOCOL = {"extractor": "lenet-x", "extractor_weights_sha256": "ab" * 32, "feature_layer": "fc1",
            "n_samples": 10, "reference": {"dataset": "x", "split": "train", "count": 5},
            "metrics": {"fid": {"blocks": 3}}}
PROVENANCE = {"git_sha": "f" * 40, "git_dirty": False, "device_name": "cpu", "device": "cpu",
              "num_threads": 2, "torch": "2", "torch_fidelity": "0.4"}


def model_ref(recipe: str) -> dict:
    """A model reference whose checkpoint hash follows from the recipe name."""
    return {"recipe": recipe, "cache_key": "0" * 16,
            "checkpoint_sha256": hashlib.sha256(recipe.encode()).hexdigest()}


def row(key, method, nfe, fid, seconds, fingerprint="p1", status="ok", task="generate",
        fid_error=None, hparams=None, model=None, **metrics):
    stored = {"fid": {"value": fid, "higher_is_better": False,
                      "uncertainty": None if fid_error is None else {"value": fid_error}}}
    stored.update({name: {"value": value, "higher_is_better": name in ("psnr", "ssim", "class_acc")}
                   for name, value in metrics.items()})
    return complete({"cell_key": key, "method": method, "label": method,
            "hparams": {"eta": 0.0} if hparams is None else hparams, "task": task, "dataset": "x",
            "n_samples": 10, "seed": 0, "steps": nfe, "nfe": nfe, "status": status,
            "message": None if status == "ok" else "boom", "metrics": stored,
            "time_per_image_s": {"median": seconds, "iqr": 0.0}, "batch_size": 4,
            "throughput_images_per_s": 1 / seconds, "num_parameters": 1000,
            "memory": {"kind": "cpu_peak_rss", "peak_bytes": 2**20},
            "protocol": PROTOCOL, "protocol_fingerprint": fingerprint, "provenance": PROVENANCE,
            "samples_grid": None, "model": model and model_ref(model)})


def store_rows(results, suite, *rows, grids=False):
    """Append `rows` to results/<suite>/; with `grids`, each successful row gets a sample grid."""
    store = ResultStore(results, suite)
    store.ensure_writable()
    for number, r in enumerate(rows):
        if grids and r["status"] == "ok":
            r = {**r, "samples_grid": f"samples/{number:08x}.png"}
            (store.directory / "samples").mkdir(exist_ok=True)
            pixels = np.random.default_rng(number).integers(0, 255, (16, 16), dtype=np.uint8)
            Image.fromarray(pixels).save(store.directory / r["samples_grid"])
        store.append(r)
    return store
