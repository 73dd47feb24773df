import numpy as np
import pytest
import torch

from bench.data.datasets import load_dataset
from bench.data.quantize import to_uint8
from bench.quality.metrics import features_of, fid_statistics, load_extractor
from bench.quality.scoring import CellScorer, Reference, block_ends
from bench.quality.statistics import frechet_at_infinity, frechet_distance, infinity_counts


@pytest.fixture(scope="module")
def digits():
    extractor = load_extractor("lenet", "digits8")
    images, labels = load_dataset("digits8").split("train")
    reference_images = (images[600:] + 0.1).clamp(-1, 1)
    reference = Reference(fid_statistics(features_of(extractor, to_uint8(reference_images))),
                          len(reference_images),
                          features_of(extractor, to_uint8(reference_images)).float())
    return extractor, to_uint8(images[:600]), labels[:600], reference


def score(digits, metrics, batch, n=600, labels=False):
    extractor, pixels, classes, reference = digits
    scorer = CellScorer(extractor, reference, metrics, n)
    for start in range(0, n, batch):
        scorer.add(pixels[start:start + batch], classes[start:start + batch] if labels else None)
    return scorer.finish()


def one_shot_fid(digits, start, stop):
    extractor, pixels, _, reference = digits
    return frechet_distance(fid_statistics(features_of(extractor, pixels[start:stop])), reference.stats)


# The extractor runs in float32 and its output moves in the 7th digit with the batch it is
# given; 1e-6 relative is that floor, the moments themselves are exact to ~1e-12.
EXTRACTOR_RTOL = 1e-6


@pytest.mark.parametrize("batch", [7, 64, 600])
def test_streamed_fid_equals_fid_of_all_features_at_once(digits, batch):
    assert score(digits, ["fid"], batch)["fid"][0] == pytest.approx(one_shot_fid(digits, 0, 600), rel=EXTRACTOR_RTOL)


def test_fid_spread_comes_from_disjoint_seed_blocks(digits):
    spread = score(digits, ["fid"], 64)["fid"][1]
    expected = [one_shot_fid(digits, start, stop) for start, stop in ((0, 200), (200, 400), (400, 600))]
    np.testing.assert_allclose(spread["block_values"], expected, rtol=EXTRACTOR_RTOL)
    assert spread["value"] == pytest.approx(np.std(expected, ddof=1) / np.sqrt(3), rel=1e-4)


def test_fid_infinity_is_dgm_evals_procedure_on_the_cells_features(digits):
    extractor, pixels, _, reference = digits
    value, detail = score(digits, ["fid", "fid_infinity"], 50)["fid_infinity"]
    expected = frechet_at_infinity(features_of(extractor, pixels[:600]).numpy(), reference.stats, 2020)
    assert detail["counts"] == infinity_counts(600) == expected["counts"]
    assert value == pytest.approx(expected["value"], rel=1e-5)
    # FID falls with N, so the extrapolation lies below FID at the full count
    assert value < detail["values"][-1] and detail["slope"] > 0


def test_fid_infinitys_uncertainty_is_the_spread_of_its_seed_blocks(digits):
    extractor, pixels, _, reference = digits
    detail = score(digits, ["fid", "fid_infinity"], 64)["fid_infinity"][1]
    features = features_of(extractor, pixels[:600]).numpy()
    blocks = [frechet_at_infinity(features[a:a + 200], reference.stats, 2020)["value"] for a in (0, 200, 400)]
    np.testing.assert_allclose(detail["block_values"], blocks, rtol=1e-5)
    assert detail["value"] == pytest.approx(np.std(blocks, ddof=1) / np.sqrt(3), rel=1e-4)


def test_feature_metrics_and_class_accuracy_are_reported_when_asked(digits):
    results = score(digits, ["fid", "kid", "precision", "recall", "isc"], 100, labels=True)
    assert set(results) == {"fid", "kid", "precision", "recall", "isc", "class_acc"}
    assert results["class_acc"][0] > 0.9 and 0 <= results["precision"][0] <= 1


def test_scorer_refuses_to_finish_short_of_its_sample_count(digits):
    extractor, pixels, _, reference = digits
    scorer = CellScorer(extractor, reference, ["fid"], 600)
    scorer.add(pixels[:100])
    with pytest.raises(RuntimeError, match="scored 100 samples, expected 600"):
        scorer.finish()


def test_blocks_partition_the_sample_count():
    assert block_ends(10, 3) == [3, 7, 10]


def peak_scoring_memory(digits, n):
    from bench.run.cost import PeakMemory
    extractor, pixels, _, reference = digits
    scorer = CellScorer(extractor, reference, ["fid"], n, store_features=False)
    with PeakMemory(torch.device("cpu")) as memory:
        for start in range(0, n, 500):
            scorer.add(pixels[start % 500:start % 500 + 500][:n - start])
        scorer.finish()
    return memory.peak_bytes


def test_fid_only_scoring_keeps_no_per_sample_features(digits):
    extractor, pixels, _, reference = digits
    scorer = CellScorer(extractor, reference, ["fid"], 500)
    scorer.add(pixels[:500])
    assert scorer.kept_features == [] and scorer.kept_logits == []


def test_peak_scoring_memory_does_not_grow_with_the_sample_count(digits):
    # Keeping 40,000 float64 128-d features would take 39 MiB more than keeping 2,000.
    peak_scoring_memory(digits, 1000)   # warm the allocator
    small, large = peak_scoring_memory(digits, 2000), peak_scoring_memory(digits, 40000)
    assert large - small < 8 * 2**20
