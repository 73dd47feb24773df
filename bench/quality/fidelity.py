"""Super-resolution fidelity: PSNR and SSIM against the HR image (scikit-image), and
LR-consistency. Per image, on the uint8 output, with the convention every SR row stores."""
import numpy as np
import torch


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


def psnr_per_image(output_uint8: torch.Tensor, target_uint8: torch.Tensor, crop: int,
                   region: torch.Tensor | None = None) -> np.ndarray:
    """PSNR of each image, over `region`'s pixels only when given (N x H x W, True = counted)."""
    from skimage.metrics import peak_signal_noise_ratio
    outputs, targets = fidelity_plane(output_uint8, crop), fidelity_plane(target_uint8, crop)
    where = _region(region, outputs)
    with np.errstate(divide="ignore"):     # an unchanged image: PSNR inf, stored as a flag
        return np.array([peak_signal_noise_ratio(t[w], o[w], data_range=255)
                         for o, t, w in zip(outputs, targets, where)])


# The PSNR of uint8 rounding noise alone (error variance 1/12 grey level^2): where an exact
# reproduction is likely (an inpainted hole of plain background), per-image PSNR is capped here so
# that one such image does not make the mean infinite.
ROUNDING_NOISE_PSNR = 10 * np.log10(255 ** 2 * 12)


SSIM_WINDOW = 11   # the Gaussian window of sigma 1.5 (Wang et al. 2004)


def ssim_per_image(output_uint8: torch.Tensor, target_uint8: torch.Tensor, crop: int,
                   region: torch.Tensor | None = None) -> np.ndarray:
    """SSIM of each image: the mean of its SSIM map, over `region`'s pixels when given."""
    from skimage.metrics import structural_similarity
    outputs, targets = fidelity_plane(output_uint8, crop), fidelity_plane(target_uint8, crop)
    side = min(outputs.shape[1:])
    if side >= SSIM_WINDOW:
        window = {"gaussian_weights": True, "sigma": 1.5}
    else:  # tiny images (tests on 8x8 digits): the largest uniform window that fits
        window = {"win_size": side if side % 2 else side - 1}
    scores = [structural_similarity(t, o, data_range=255, use_sample_covariance=False, full=True,
                                    **window) for o, t in zip(outputs, targets)]
    if region is None:      # scikit-image's mean, which leaves out the window's half-width border
        return np.array([mean for mean, _ in scores])
    return np.array([ssim_map[w].mean() for (_, ssim_map), w in zip(scores, _region(region, outputs))])


def _region(region: torch.Tensor | None, planes: np.ndarray) -> np.ndarray:
    return np.ones(planes.shape, dtype=bool) if region is None else region.cpu().numpy()


def known_error_per_image(output_uint8: torch.Tensor, input_uint8: torch.Tensor,
                          known: torch.Tensor) -> np.ndarray:
    """The largest |output - input| (grey levels, any channel) on each image's known pixels."""
    difference = (output_uint8.int() - input_uint8.int()).abs().amax(1)
    return np.array([float(d[k].max()) if k.any() else 0.0 for d, k in zip(difference, known)])


def lr_mse_per_image(output_uint8: torch.Tensor, lowres: torch.Tensor, scale: int) -> np.ndarray:
    """Per image, MSE between the downsampled output and the LR input, both as [0, 1] pixels."""
    from bench.data.degradation import downsample
    from bench.data.quantize import from_uint8
    degraded = downsample(from_uint8(output_uint8), scale)
    return ((degraded - lowres) / 2).pow(2).flatten(1).mean(1).double().cpu().numpy()

