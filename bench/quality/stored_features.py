"""Per-sample features kept beside the rows, so that any two cells of a suite can be compared
after the fact (`bench.quality.paired`): results/<suite>/features/<cell key>.npz holds a cell's
features in seed order, and results/<suite>/reference/<protocol fingerprint>.npz what FID
needs of the protocol's reference: its features when it has fewer images than dimensions
(Inception's 2048-d at a few hundred images), else its mean and covariance (LeNet's 128-d).

Cell features are stored as float16 (a cell of 400 LeNet features is about 100 kB): they
serve the spread of paired resamples, while every FID shown is the one computed in float64 at
run time. Files are written whole or not at all and read with allow_pickle=False; a file whose
sha256 is not the one its row records is refused.
"""
import hashlib
import io
import re
import zipfile
from pathlib import Path

import numpy as np

from bench.paths import atomic_write
from bench.quality.paired import FidReference
from methods.errors import DiffbenchError

FEATURES_DIR = "features"
REFERENCE_DIR = "reference"
STORED_PATH = re.compile(rf"({FEATURES_DIR}|{REFERENCE_DIR})/[0-9a-f]{{8,64}}(-[0-9a-f]{{8,64}})?\.npz")


def npz_bytes(**arrays) -> bytes:
    """A compressed .npz with fixed member timestamps: the same arrays give the same bytes
    (numpy's own savez stamps the current time), so a re-run leaves the file and its sha256 as
    they were."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.save(member, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> str:
    sha256 = hashlib.sha256(data).hexdigest()
    if not (path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256):
        atomic_write(path, data)
    return sha256


def _read(directory: Path, relative: str, sha256: str, keys: set[str]) -> dict:
    """The arrays of a stored file; the path comes from a rows file (input, not trusted), so
    only the harness's own `features/<hex>.npz` and `reference/<hex>.npz` are read."""
    if not isinstance(relative, str) or not STORED_PATH.fullmatch(relative):
        raise DiffbenchError(f"{relative!r} is not a stored features path (features/<hex>.npz or "
                             "reference/<hex>.npz)")
    path = Path(directory) / relative
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DiffbenchError(f"cannot read {str(path)!r} ({err.strerror or err})") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise DiffbenchError(f"{str(path)!r} does not match the sha256 its row records: restore it "
                             "or run the cell again")
    with np.load(io.BytesIO(data), allow_pickle=False) as stored:
        if not keys <= set(stored.files):
            raise DiffbenchError(f"{str(path)!r} lacks {', '.join(sorted(keys - set(stored.files)))}")
        return {key: stored[key] for key in stored.files}


PER_IMAGE_PREFIX = "per_image_"


def save_cell_features(results_dir: Path, cell_key: str, features: np.ndarray,
                       per_image: dict[str, np.ndarray] | None = None) -> dict:
    """Store a cell's features (n x d, seed order) and, for a task with inputs, its per-image
    metrics (float64, seed order: paired PSNR / SSIM differences); returns the reference its
    row records."""
    relative = f"{FEATURES_DIR}/{cell_key}.npz"
    metrics = {f"{PER_IMAGE_PREFIX}{name}": np.asarray(values, dtype=np.float64)
               for name, values in sorted((per_image or {}).items())}
    sha256 = _write(Path(results_dir) / relative,
                    npz_bytes(features=np.asarray(features, dtype=np.float16), **metrics))
    return {"path": relative, "sha256": sha256, "count": int(len(features)),
            "dim": int(features.shape[1]), **({"per_image": sorted(per_image)} if per_image else {})}


def load_cell_features(results_dir: Path, ref: dict) -> np.ndarray:
    return _read(results_dir, ref["path"], ref["sha256"], {"features"})["features"].astype(np.float64)


def load_cell_per_image(results_dir: Path, ref: dict, metric: str) -> np.ndarray:
    """A cell's stored per-image values of `metric`, in seed order."""
    key = f"{PER_IMAGE_PREFIX}{metric}"
    return _read(results_dir, ref["path"], ref["sha256"], {key})[key]


def save_reference(results_dir: Path, fingerprint: str, stats: dict, features: np.ndarray | None) -> dict:
    """Store what FID needs of a protocol's reference: its features when fewer than their
    dimension (smaller, and exact), else its mean and covariance. The file is named by the
    protocol and its content: machines of two CPU kinds compute one protocol's reference to
    different last bits, and rows made on each keep their own."""
    if features is not None and len(features) < features.shape[1]:
        data = npz_bytes(features=np.asarray(features, dtype=np.float32))
    else:
        data = npz_bytes(mu=np.asarray(stats["mu"]), sigma=np.asarray(stats["sigma"]))
    relative = f"{REFERENCE_DIR}/{fingerprint}-{hashlib.sha256(data).hexdigest()[:16]}.npz"
    return {"path": relative, "sha256": _write(Path(results_dir) / relative, data)}


def load_reference(results_dir: Path, ref: dict) -> FidReference:
    stored = _read(results_dir, ref["path"], ref["sha256"], set())
    if "features" in stored:
        return FidReference.from_features(stored["features"])
    if {"mu", "sigma"} <= set(stored):
        return FidReference.from_statistics(stored["mu"], stored["sigma"])
    raise DiffbenchError(f"{ref['path']!r} holds neither reference features nor mu and sigma")
