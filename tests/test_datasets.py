import numpy as np
import pytest
import torch
from PIL import Image

from bench.datasets import load_dataset
from bench.errors import DiffbenchError


@pytest.mark.parametrize("name, shape, count", [("digits8", (1, 8, 8), 1797), ("mnist5k", (1, 28, 28), 5000)])
def test_bundled_datasets_are_in_range_with_labels(name, shape, count):
    data = load_dataset(name)
    assert data.shape == shape and len(data.images) == count
    assert float(data.images.min()) == -1.0 and float(data.images.max()) == 1.0
    assert data.num_classes == 10
    assert len(data.train_index) + len(data.test_index) == count


def test_split_is_disjoint_and_shuffled():
    data = load_dataset("mnist5k")
    assert set(data.train_index.tolist()).isdisjoint(data.test_index.tolist())
    _, test_labels = data.split("test")
    assert len(set(test_labels[:50].tolist())) > 5  # the source is sorted by label


def test_folder_of_images_loads_and_hashes(tmp_path):
    for i in range(5):
        Image.fromarray(np.full((6, 6, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    data = load_dataset(str(tmp_path))
    assert data.shape == (3, 6, 6) and data.labels is None and len(data.content_hash) == 16


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DiffbenchError, match="no PNG/JPEG images"):
        load_dataset(str(tmp_path))


def test_npz_with_labels_loads(tmp_path):
    path = tmp_path / "set.npz"
    np.savez(path, images=np.random.randint(0, 255, (10, 4, 4), dtype=np.uint8), labels=np.arange(10) % 2)
    data = load_dataset(str(path))
    assert data.shape == (1, 4, 4) and data.num_classes == 2


def test_content_hash_changes_with_pixels(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    pixels = np.zeros((4, 3, 3), dtype=np.uint8)
    np.savez(a, images=pixels)
    pixels[0, 0, 0] = 1
    np.savez(b, images=pixels)
    assert load_dataset(str(a)).content_hash != load_dataset(str(b)).content_hash
