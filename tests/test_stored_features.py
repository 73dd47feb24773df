"""Per-sample features and reference statistics stored beside the rows: read back as written,
the same bytes on every write, refused when tampered with."""
import numpy as np
import pytest

from bench.quality.paired import fid
from bench.quality.statistics import Moments, frechet_distance
from bench.quality.stored_features import (load_cell_features, load_reference, save_cell_features,
                                           save_reference)
from methods.errors import DiffbenchError

KEY = "0123456789abcdef0123"


def test_a_path_that_is_not_a_stored_features_file_is_refused(tmp_path):
    with pytest.raises(DiffbenchError, match="not a stored features path"):
        load_cell_features(tmp_path, {"path": "../../secret.npz", "sha256": "0" * 64})


def test_cell_features_read_back_to_float16_precision(tmp_path):
    features = np.random.default_rng(0).random((40, 8)) * 3
    ref = save_cell_features(tmp_path, KEY, features)
    assert ref["path"] == f"features/{KEY}.npz" and ref["count"] == 40 and ref["dim"] == 8
    np.testing.assert_allclose(load_cell_features(tmp_path, ref), features, rtol=1e-3)


def test_writing_the_same_features_again_gives_the_same_bytes(tmp_path):
    features = np.random.default_rng(1).random((10, 4))
    first = save_cell_features(tmp_path, KEY, features)
    stamp = (tmp_path / first["path"]).stat().st_mtime_ns
    assert save_cell_features(tmp_path, KEY, features)["sha256"] == first["sha256"]
    assert (tmp_path / first["path"]).stat().st_mtime_ns == stamp


def test_a_changed_file_is_refused(tmp_path):
    ref = save_cell_features(tmp_path, KEY, np.ones((4, 2)))
    save_cell_features(tmp_path, KEY, np.zeros((4, 2)))      # overwritten behind the row's back
    with pytest.raises(DiffbenchError, match="does not match the sha256"):
        load_cell_features(tmp_path, ref)


@pytest.mark.parametrize("count, stored", [(6, "features"), (50, "statistics")])
def test_the_reference_is_stored_in_its_smaller_exact_form(tmp_path, count, stored):
    rng = np.random.default_rng(2)
    reference, samples = rng.random((count, 10)), rng.random((30, 10))
    stats = Moments(10).update(reference).stats()
    ref = save_reference(tmp_path, KEY, stats, reference)
    with np.load(tmp_path / ref["path"]) as data:
        assert ("features" in data.files) == (stored == "features")
    expected = frechet_distance(Moments(10).update(samples).stats(), stats)
    assert fid(samples, load_reference(tmp_path, ref)) == pytest.approx(expected, rel=1e-6)


def test_two_machines_references_of_one_protocol_are_kept_side_by_side(tmp_path):
    """An AVX2 and an AVX-512 machine compute one protocol's reference to different last bits;
    each row must still find the file it was scored against."""
    features = np.random.default_rng(0).normal(size=(40, 64))
    first = save_reference(tmp_path, "ab" * 8, {}, features)
    second = save_reference(tmp_path, "ab" * 8, {}, features * (1 + 1e-7))
    assert first["path"] != second["path"] and first["path"].startswith("reference/" + "ab" * 8)
    for ref in (first, second):
        assert load_reference(tmp_path, ref) is not None
