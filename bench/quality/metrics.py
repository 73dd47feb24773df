"""Quality metrics: features -> statistics -> number (torch-fidelity's chain).

Every metric is registered with its direction. Feature-space metrics take the features of a
registered extractor: FID (Frechet distance of feature Gaussians, `bench.quality.statistics`;
`fd` is the same number under the field's extractor-neutral name) and FID_inf; KID,
precision/recall and the Inception Score come from torch-fidelity's own functions; CMMD, density
and coverage from `bench.quality.distances`;
`class_acc` is the domain classifier's accuracy on class-conditional samples, `view_a_acc` /
`view_b_acc` / `both_acc` its per-view accuracies on anagrams and hybrids. The per-image
metrics (PSNR, SSIM, LR-consistency, inpainting's known-region error) compare each output with
its task's target (`bench.run.tasks`, `bench.quality.fidelity`).
Reference features and statistics are cached by dataset hash, split, extractor and its weights.
"""
import dataclasses
import hashlib
import io
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bench.data.datasets import ImageDataset, as_dataset
from bench.data.quantize import QUANTISATION, to_uint8
from bench.paths import atomic_write, cache_dir
from bench.quality.distances import CMMD, DENSITY_COVERAGE
from bench.quality.extractors import Extractor, inception_extractor, lenet_extractor
from bench.quality.statistics import Moments
from bench.quality.vit import is_vit_spec, vit_extractor
from bench.rows import MetricEntry, metric_entry
from methods.errors import DiffbenchError
from methods.registry import Registry


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    description: str
    needs: str = "statistics"   # what of the samples it needs: statistics | features | logits | pixels
    aggregate: str = "mean"     # a per-image ("pixels") metric over images: mean (with its error) | max


METRICS: Registry[Metric] = Registry("metric")
for _metric in (
        Metric("fid", False, "Frechet distance between feature Gaussians"),
        Metric("fid_infinity", False, "FID extrapolated to infinitely many samples (Chong & "
               "Forsyth 2020; dgm-eval's 15 counts from min(5000, N/10))", "statistics"),
        Metric("fd", False, "Frechet distance in the suite's feature space (FD_DINOv2 with a "
               "dinov2 extractor; the same number as fid, named for any extractor)"),
        Metric("cmmd", False, "RBF-kernel MMD^2 (sigma 10) x 1000 (Jayasumana et al. 2024; CMMD "
               "proper with a clip extractor), the reference code's biased estimator", "features"),
        Metric("cmmd_unbiased", False, "cmmd's unbiased estimator (diagonals left out): no 1/N "
               "bias at few samples", "features"),
        Metric("density", True, "samples inside the reference's k-NN balls, over k (Naeem et al. "
               "2020, k = 5)", "features"),
        Metric("coverage", True, "share of reference images whose k-NN ball holds a sample "
               "(Naeem et al. 2020, k = 5)", "features"),
        Metric("kid", False, "kernel (MMD^2, cubic polynomial) distance, mean over subsets",
               "features"),
        Metric("precision", True, "fraction of samples inside the reference's k-NN manifold "
               "(Kynkaanniemi et al. 2019)", "features"),
        Metric("recall", True, "fraction of reference images inside the samples' k-NN manifold",
               "features"),
        Metric("isc", True, "Inception Score (domain-classifier score under a domain extractor)",
               "logits"),
        Metric("class_acc", True, "domain classifier's accuracy on samples vs requested labels",
               "logits"),
        Metric("psnr", True, "PSNR (dB) against the task's target: the HR image (super-resolution), "
               "the guide (img2img), the original's hole (inpainting)", "pixels"),
        Metric("ssim", True, "SSIM (Wang et al. 2004) against the same target as PSNR", "pixels"),
        Metric("lr_mse", False, "LR-consistency: MSE between the downsampled SR output and the "
               "LR input, pixels in [0, 1]", "pixels"),
        Metric("known_error", False, "inpainting: the largest change (grey levels) to a known "
               "pixel over every image; 0 when the known region is kept", "pixels", "max"),
        Metric("fid_view_b", False, "an anagram's FID seen through its view (flipped, rotated) "
               "against the same reference", "statistics"),
        Metric("view_a_acc", True, "anagrams and hybrids: share of images the domain classifier "
               "reads as class a in view a (upright; a hybrid low-passed)", "pixels"),
        Metric("view_b_acc", True, "share read as class b in view b (transformed; a hybrid as is)",
               "pixels"),
        Metric("both_acc", True, "share of images that pass both views", "pixels")):
    METRICS.register(_metric.name, _metric)

PIXEL_METRICS = tuple(name for name in METRICS if METRICS.get(name).needs == "pixels")

# Settings of the feature metrics; stored in the protocol of every row that reports them.
FID_BLOCKS = 3                    # disjoint seed blocks for FID's spread (EDM's three runs)
FID_INFINITY = {"points": 15, "counts": "linear in N from min(5000, max(N // 10, 2)) to N",
                "subsets": "random, without replacement, independent per count", "rng_seed": 2020,
                "fit": "least squares in 1/N", "uncertainty": "std over the seed blocks' FID_inf / sqrt(blocks)",
                "after": "dgm-eval compute_FD_infinity; Chong & Forsyth 2020"}
KID = {"subsets": 100, "max_subset_size": 1000, "kernel": "poly", "degree": 3, "rng_seed": 2020}
PRC = {"neighborhood": 3}
ISC = {"splits": 10, "rng_seed": 2020}

EXTRACTORS: Registry[Callable[..., Extractor]] = Registry("feature extractor")
EXTRACTORS.register("lenet", lenet_extractor)
EXTRACTORS.register("inception", inception_extractor)


def load_extractor(name: str, dataset_spec: str, weights_path: str | None = None) -> Extractor:
    """`lenet` resolves to the LeNet trained on the suite's dataset (`lenet-<dataset>`);
    `inception` to torch-fidelity's network with weights resolved as bench.quality.inception says;
    `dinov2:PATH` and `clip:PATH` to a user's ViT (`bench.quality.vit`); any other name to a
    registered (plugin) extractor."""
    if is_vit_spec(name):
        return vit_extractor(name)
    return EXTRACTORS.get(name)(dataset_spec, weights_path=weights_path)


def extract(extractor: Extractor, images_uint8: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every layer the extractor provides, for any number of images, in its batch size."""
    step = extractor.batch_size
    chunks = [extractor(images_uint8[i:i + step]) for i in range(0, len(images_uint8), step)]
    return {layer: torch.cat([c[layer] for c in chunks]).cpu() for layer in chunks[0]}


def features_of(extractor: Extractor, images_uint8: torch.Tensor) -> torch.Tensor:
    return extract(extractor, images_uint8)[extractor.feature_layer].double()


def fid_statistics(features: torch.Tensor) -> dict[str, np.ndarray]:
    return Moments(features.shape[1]).update(features).stats()


def statistics_hash(stats: dict) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(stats["mu"]).tobytes())
    digest.update(np.ascontiguousarray(stats["sigma"]).tobytes())
    return digest.hexdigest()[:16]


def _reference_path(extractor: Extractor, dataset: "ImageDataset | str", split: str, what: str):
    dataset = as_dataset(dataset)
    name = f"{dataset.content_hash}-{split}-{extractor.name}-{extractor.weights_sha256[:16]}"
    return cache_dir() / "stats" / f"{name}.{what}.npz"


def _load_cached(path, keys) -> dict | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            return {key: cached[key] for key in keys}
    except (OSError, ValueError, KeyError):
        path.unlink(missing_ok=True)  # a damaged cache entry is recomputed, never trusted
        return None


def _save_cached(path, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, buffer.getvalue())


def read_statistics_file(path, feature_dim: int | None, what: str) -> tuple[dict, int | None, str]:
    """FID reference statistics saved elsewhere: an .npz with `mu` (D) and `sigma` (D x D), the
    pytorch-fid / clean-fid layout, and optionally `count`. Read without unpickling and checked
    (finite, shapes matching each other and the extractor's feature size); returns (stats,
    count or None, the file's sha256)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except (OSError, ValueError, EOFError) as err:
        raise DiffbenchError(f"{what} {str(path)!r} is not a readable .npz of statistics "
                             f"({type(err).__name__}: {err}); save mu and sigma with numpy.savez") from None
    if "mu" not in arrays or "sigma" not in arrays:
        raise DiffbenchError(f"{what} {str(path)!r} has no 'mu' and 'sigma' arrays (it holds "
                             f"{', '.join(sorted(arrays)) or 'nothing'}): save FID statistics as mu, sigma")
    mu, sigma = arrays["mu"].astype(np.float64), arrays["sigma"].astype(np.float64)
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise DiffbenchError(f"{what} {str(path)!r}: mu must be D and sigma D x D, got "
                             f"{mu.shape} and {sigma.shape}")
    if feature_dim is not None and len(mu) != feature_dim:
        raise DiffbenchError(f"{what} {str(path)!r} holds {len(mu)}-dimensional statistics but the "
                             f"feature extractor gives {feature_dim}: use statistics of the same extractor")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise DiffbenchError(f"{what} {str(path)!r} contains NaN or inf")
    count = arrays.get("count")
    count = int(count) if count is not None and count.size == 1 and np.isfinite(count).all() else None
    return {"mu": mu, "sigma": sigma}, count, hashlib.sha256(raw).hexdigest()


def reference_features(extractor: Extractor, dataset: "ImageDataset | str", split: str) -> torch.Tensor:
    """The feature-layer features of a dataset split, computed once and cached."""
    path = _reference_path(extractor, dataset, split, "features")
    cached = _load_cached(path, ["features"])
    if cached is not None:
        return torch.from_numpy(cached["features"])
    images, _ = as_dataset(dataset).split(split)
    features = extract(extractor, to_uint8(images))[extractor.feature_layer]
    _save_cached(path, features=features.numpy())
    return features


def reference_statistics(extractor: Extractor, dataset: "ImageDataset | str", split: str) -> tuple[dict, int]:
    """FID statistics of a dataset split, computed once and cached; returns (stats, count)."""
    path = _reference_path(extractor, dataset, split, "stats")
    cached = _load_cached(path, ["mu", "sigma", "count"])
    if cached is not None:
        return {"mu": cached["mu"], "sigma": cached["sigma"]}, int(cached["count"])
    features = reference_features(extractor, dataset, split)
    stats = fid_statistics(features)
    _save_cached(path, mu=stats["mu"], sigma=stats["sigma"], count=len(features))
    return stats, len(features)


def stored_metric(name: str, value, uncertainty=None) -> MetricEntry:
    """A row's entry for registered metric `name`, with the direction it declares."""
    return metric_entry(value, METRICS.get(name).higher_is_better, uncertainty)


def check_metrics_available(metrics, extractor: Extractor, where: str) -> None:
    """Refuse, before any work, a metric the extractor cannot supply."""
    if "isc" in metrics and extractor.logits_layer is None:
        raise DiffbenchError(f"{where}: metric 'isc' needs class logits, which extractor "
                             f"{extractor.name!r} does not provide ({extractor.info.get('weights')}); "
                             "drop 'isc' or give Inception weights with logits (--inception-weights)")


def kid_subset_size(n_samples: int, reference_count: int) -> int:
    return min(KID["max_subset_size"], n_samples, reference_count)


def metric_settings(metrics, n_samples: int, reference_count: int) -> dict:
    """The settings of the requested feature metrics, for the protocol fingerprint."""
    settings = {"fid": {"uncertainty": "std over disjoint seed blocks", "blocks": FID_BLOCKS}}
    if "fid_infinity" in metrics:
        settings["fid_infinity"] = FID_INFINITY
    if "kid" in metrics:
        settings["kid"] = {**KID, "subset_size": kid_subset_size(n_samples, reference_count)}
    if "precision" in metrics or "recall" in metrics:
        settings["prc"] = PRC
    if "isc" in metrics:
        settings["isc"] = ISC
    if "cmmd" in metrics or "cmmd_unbiased" in metrics:
        settings["cmmd"] = CMMD
    if "density" in metrics or "coverage" in metrics:
        settings["density_coverage"] = DENSITY_COVERAGE
    return settings


def fid_protocol(extractor: Extractor, dataset: "ImageDataset | str", split: str, stats: dict,
                 reference_count: int, n_samples: int, metrics=("fid",)) -> dict:
    """The metric protocol fingerprint stored with every row."""
    dataset = as_dataset(dataset)
    return _protocol(extractor, {"dataset": dataset.name, "dataset_hash": dataset.content_hash,
                                 "split": split, "count": reference_count,
                                 "statistics_hash": statistics_hash(stats)},
                     n_samples, metrics, reference_count)


def statistics_file_protocol(extractor: Extractor, path, probe_uint8: torch.Tensor, n_samples: int,
                             metrics, what: str) -> tuple[dict, int | None, dict]:
    """(stats, count, protocol) when the reference is a statistics file: the file, by name and
    hash, stands where the dataset split would. `probe_uint8` (an image or more of the kind
    being scored) tells the extractor's feature size, which the file must match."""
    feature_dim = extract(extractor, probe_uint8[:1])[extractor.feature_layer].shape[1]
    stats, count, sha256 = read_statistics_file(path, feature_dim, what)
    reference = {"statistics_file": Path(path).name, "statistics_file_sha256": sha256,
                 "count": count, "statistics_hash": statistics_hash(stats)}
    return stats, count, _protocol(extractor, reference, n_samples, metrics, count or n_samples)


def _protocol(extractor: Extractor, reference: dict, n_samples: int, metrics, reference_count: int) -> dict:
    return {"extractor": extractor.name, "extractor_weights_sha256": extractor.weights_sha256,
            "feature_layer": extractor.feature_layer, "resize": None,
            **({"preprocessing": extractor.preprocessing} if extractor.preprocessing else {}),
            "quantisation": QUANTISATION, "n_samples": n_samples, "reference": reference,
            "metrics": metric_settings(metrics, n_samples, reference_count)}


def protocol_fingerprint(protocol: dict) -> str:
    """Names what the scores were computed from (extractor weights, reference dataset and split or
    statistics file, counts, settings), never the reference's computed statistics: those differ
    in their last bits between CPU kinds (AVX2 and AVX-512 kernels round differently), and rows
    made on two machines under one protocol must stay comparable. The statistics hash stays in
    the stored protocol as a record."""
    reference = {k: v for k, v in protocol.get("reference", {}).items() if k != "statistics_hash"}
    named = {**protocol, "reference": reference}
    return hashlib.sha256(json.dumps(named, sort_keys=True).encode()).hexdigest()[:16]


def kid(features: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """KID mean and standard deviation over random subsets (torch-fidelity)."""
    from torch_fidelity.metric_kid import kid_features_to_metric
    result = kid_features_to_metric(
        features.float(), reference.float(), kid_subsets=KID["subsets"],
        kid_subset_size=kid_subset_size(len(features), len(reference)), kid_kernel=KID["kernel"],
        kid_kernel_poly_degree=KID["degree"], kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1, rng_seed=KID["rng_seed"], verbose=False)
    return result["kernel_inception_distance_mean"], result["kernel_inception_distance_std"]


def precision_recall(features: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """Improved precision and recall (torch-fidelity's PRC; samples first, reference second)."""
    from torch_fidelity.metric_prc import prc_features_to_metric
    result = prc_features_to_metric(features.float(), reference.float(),
                                    prc_neighborhood=PRC["neighborhood"], prc_batch_size=10000,
                                    save_cpu_ram=False, verbose=False)
    return result["precision"], result["recall"]


def inception_score(logits: torch.Tensor) -> tuple[float, float]:
    """Inception Score mean and standard deviation over splits (torch-fidelity)."""
    from torch_fidelity.metric_isc import isc_features_to_metric
    result = isc_features_to_metric(logits, splits=ISC["splits"], shuffle=True,
                                    rng_seed=ISC["rng_seed"])
    return result["inception_score_mean"], result["inception_score_std"]
