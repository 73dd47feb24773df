"""Quality metrics as pure functions: features -> statistics -> number (torch-fidelity's chain).

FID uses torch-fidelity's `fid_features_to_statistics` and `fid_statistics_to_metric`; features
come from a registered extractor. Reference statistics are cached by dataset hash, split,
extractor and its weights hash.
"""
import dataclasses
import hashlib
import io
import json
from typing import Callable

import numpy as np
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

from bench.datasets import load_dataset
from bench.features import Extractor, inception_extractor, lenet_extractor
from bench.paths import atomic_write, cache_dir
from bench.quantize import QUANTISATION, to_uint8
from bench.registry import Registry


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    description: str


METRICS: Registry[Metric] = Registry("metric")
METRICS.register("fid", Metric("fid", False, "Frechet distance between feature Gaussians"))
METRICS.register("class_acc", Metric("class_acc", True,
                                     "domain classifier's accuracy on samples vs requested labels"))
METRICS.register("psnr", Metric("psnr", True, "PSNR (dB) of the SR output against the HR image"))
METRICS.register("ssim", Metric("ssim", True, "SSIM (Wang et al. 2004) against the HR image"))
METRICS.register("lr_mse", Metric("lr_mse", False, "LR-consistency: MSE between the downsampled "
                                  "SR output and the LR input, pixels in [0, 1]"))

EXTRACTORS: Registry[Callable[..., Extractor]] = Registry("feature extractor")
EXTRACTORS.register("lenet", lenet_extractor)
EXTRACTORS.register("inception", inception_extractor)


def load_extractor(name: str, dataset_spec: str) -> Extractor:
    """`lenet` resolves to the LeNet trained on the suite's dataset (`lenet-<dataset>`)."""
    return EXTRACTORS.get(name)(dataset_spec)


def features_of(extractor: Extractor, images_uint8: torch.Tensor) -> torch.Tensor:
    step = extractor.batch_size
    chunks = [extractor(images_uint8[i:i + step])[extractor.feature_layer]
              for i in range(0, len(images_uint8), step)]
    return torch.cat(chunks).double().cpu()


def class_accuracy(extractor: Extractor, images_uint8: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of samples the domain classifier assigns to the label they were generated for."""
    predicted = torch.cat([extractor(images_uint8[i:i + 500])["logits"].argmax(1).cpu()
                           for i in range(0, len(images_uint8), 500)])
    return float((predicted == labels.cpu()).float().mean())


def fid_statistics(features: torch.Tensor) -> dict[str, np.ndarray]:
    return fid_features_to_statistics(features.double())


def fid_from_statistics(stats_a: dict, stats_b: dict) -> float:
    return float(fid_statistics_to_metric(stats_a, stats_b, verbose=False)["frechet_inception_distance"])


def statistics_hash(stats: dict) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(stats["mu"]).tobytes())
    digest.update(np.ascontiguousarray(stats["sigma"]).tobytes())
    return digest.hexdigest()[:16]


def reference_statistics(extractor: Extractor, dataset_spec: str, split: str) -> tuple[dict, int]:
    """FID statistics of a dataset split, computed once and cached; returns (stats, count)."""
    dataset = load_dataset(dataset_spec)
    name = f"{dataset.content_hash}-{split}-{extractor.name}-{extractor.weights_sha256[:16]}.npz"
    path = cache_dir() / "stats" / name
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as cached:
                return {"mu": cached["mu"], "sigma": cached["sigma"]}, int(cached["count"])
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a damaged cache entry is recomputed, never trusted
    images, _ = dataset.split(split)
    stats = fid_statistics(features_of(extractor, to_uint8(images)))
    buffer = io.BytesIO()
    np.savez(buffer, mu=stats["mu"], sigma=stats["sigma"], count=len(images))
    atomic_write(path, buffer.getvalue())
    return stats, len(images)


def fid_protocol(extractor: Extractor, dataset_spec: str, split: str, stats: dict,
                 reference_count: int, n_samples: int) -> dict:
    """The metric protocol fingerprint stored with every row."""
    dataset = load_dataset(dataset_spec)
    return {"extractor": extractor.name, "extractor_weights_sha256": extractor.weights_sha256,
            "feature_layer": extractor.feature_layer, "resize": None,
            "quantisation": QUANTISATION, "n_samples": n_samples,
            "reference": {"dataset": dataset.name, "dataset_hash": dataset.content_hash,
                          "split": split, "count": reference_count,
                          "statistics_hash": statistics_hash(stats)}}


def protocol_fingerprint(protocol: dict) -> str:
    return hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:16]


def fidelity_convention(channels: int, scale: int) -> dict:
    """How PSNR and SSIM are computed (stored in every superres row's protocol)."""
    return {"colour": "Y of YCbCr (ITU-R BT.601, as MATLAB rgb2ycbcr)" if channels == 3 else "grey",
            "border_crop": scale, "data_range": 255, "pixels": "uint8 (quantised output)",
            "psnr_ssim_average": "mean over images",
            "ssim": "Gaussian window sigma 1.5 (11 px), K1 0.01, K2 0.03 (scikit-image "
                    "structural_similarity); planes under 11 px: the largest uniform odd window",
            "lr_mse": "mean over images of MSE(downsample(output), LR) with pixels in [0, 1]"}


def fidelity_plane(pixels_uint8: torch.Tensor, crop: int) -> np.ndarray:
    """N x H x W float64 planes the fidelity metrics compare: Y for RGB, the image for grey,
    with `crop` border pixels removed."""
    from skimage.color import rgb2ycbcr
    array = pixels_uint8.permute(0, 2, 3, 1).cpu().numpy()
    if array.shape[-1] == 3:
        planes = rgb2ycbcr(array.astype(np.float64) / 255.0)[..., 0]
    else:
        planes = array[..., 0].astype(np.float64)
    return planes[:, crop:planes.shape[1] - crop, crop:planes.shape[2] - crop] if crop else planes


def psnr_per_image(output_uint8: torch.Tensor, target_uint8: torch.Tensor, crop: int) -> np.ndarray:
    from skimage.metrics import peak_signal_noise_ratio
    return np.array([peak_signal_noise_ratio(t, o, data_range=255) for o, t in
                     zip(fidelity_plane(output_uint8, crop), fidelity_plane(target_uint8, crop))])


SSIM_WINDOW = 11   # the Gaussian window of sigma 1.5 (Wang et al. 2004)


def ssim_per_image(output_uint8: torch.Tensor, target_uint8: torch.Tensor, crop: int) -> np.ndarray:
    from skimage.metrics import structural_similarity
    outputs, targets = fidelity_plane(output_uint8, crop), fidelity_plane(target_uint8, crop)
    side = min(outputs.shape[1:])
    if side >= SSIM_WINDOW:
        window = {"gaussian_weights": True, "sigma": 1.5}
    else:  # tiny images (tests on 8x8 digits): the largest uniform window that fits
        window = {"win_size": side if side % 2 else side - 1}
    return np.array([structural_similarity(t, o, data_range=255, use_sample_covariance=False,
                                           **window) for o, t in zip(outputs, targets)])


def lr_mse_per_image(output_uint8: torch.Tensor, lowres: torch.Tensor, scale: int) -> np.ndarray:
    """Per image, MSE between the downsampled output and the LR input, both as [0, 1] pixels."""
    from bench.superres import downsample, from_uint8
    degraded = downsample(from_uint8(output_uint8), scale)
    return ((degraded - lowres) / 2).pow(2).flatten(1).mean(1).double().cpu().numpy()


def mean_with_error(values: np.ndarray) -> tuple[float, dict]:
    """The mean and its standard error over images (the spread of a per-image metric)."""
    finite = len(values) > 1 and bool(np.isfinite(values).all())
    sem = float(values.std(ddof=1) / np.sqrt(len(values))) if finite else None
    return float(values.mean()), {"kind": "standard_error_of_mean", "value": sem, "n": len(values)}
