import numpy as np
import pytest
from PIL import Image

from bench.data.datasets import load_dataset
from methods.errors import DiffbenchError


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


@pytest.mark.parametrize("value_range, values", [([0, 1], [0.0, 1.0]), ([-1, 1], [-1.0, 1.0]),
                                                  ([0, 255], [0.0, 255.0])])
def test_float_npz_is_read_in_its_declared_range(tmp_path, value_range, values):
    path = tmp_path / "f.npz"
    images = np.zeros((4, 3, 3))
    images[:2], images[2:] = values
    np.savez(path, images=images, value_range=value_range)
    pixels = (load_dataset(str(path)).images + 1) * 127.5
    assert pixels.min() == 0 and pixels.max() == 255     # black stays black, white stays white


@pytest.mark.parametrize("images, extra, message", [
    (np.full((4, 3, 3), 0.5), {}, "need their value range declared"),
    (np.full((4, 3, 3), 0.5), {"value_range": [0, 2]}, "need their value range declared"),
    (np.full((4, 3, 3), 1.5), {"value_range": [0, 1]}, "outside their declared value_range"),
    (np.full((4, 3, 3), np.nan), {"value_range": [0, 1]}, "not finite"),
    (np.full((4, 3, 3), 300, dtype=np.int64), {}, "integer images must lie in 0-255"),
])
def test_an_ambiguous_or_out_of_range_npz_is_refused(tmp_path, images, extra, message):
    path = tmp_path / "bad.npz"
    np.savez(path, images=images, **extra)
    with pytest.raises(DiffbenchError, match=message):
        load_dataset(str(path))


def test_class_sub_folders_become_labels(tmp_path):
    for label, name in enumerate(["cat", "dog", "eel"]):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(np.full((6, 6), 40 * label, dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    data = load_dataset(str(tmp_path))
    assert data.num_classes == 3 and sorted(data.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert all(int(data.images[i].max() * 127.5 + 127.5 + 0.5) == 40 * int(data.labels[i])
               for i in range(6))


def test_images_at_two_depths_are_refused(tmp_path):
    (tmp_path / "cat").mkdir()
    Image.fromarray(np.zeros((6, 6), dtype=np.uint8)).save(tmp_path / "cat" / "0.png")
    Image.fromarray(np.zeros((6, 6), dtype=np.uint8)).save(tmp_path / "loose.png")
    with pytest.raises(DiffbenchError, match="different depths"):
        load_dataset(str(tmp_path))
