"""The super-resolution task's degradation, shared by training, the runner and the metrics.

HR images are downsampled by `scale` with antialiased bicubic interpolation (torch's
`interpolate(mode="bicubic", antialias=True)`, close to MATLAB's `imresize`), and the LR image is
quantised to uint8 as a stored LR image would be. Models and the `bicubic` baseline see the LR
image upsampled back to HR size with plain bicubic interpolation, clamped to [-1, 1].
"""
import torch
from torch.nn import functional as F

from methods.errors import DiffbenchError
from bench.quantize import from_uint8, to_uint8

DEGRADATION = "bicubic antialias downsample (torch), LR quantised to uint8; bicubic upsample"


def check_scale(shape: tuple[int, int, int], scale: int, what: str) -> None:
    if scale < 2 or shape[1] % scale or shape[2] % scale or min(shape[1:]) <= 2 * scale:
        raise DiffbenchError(f"{what}: superres_scale {scale} must be >= 2, divide the image size "
                             f"{shape[1]}x{shape[2]} and leave pixels after the {scale}-pixel border "
                             "crop; pick another scale or dataset")


def downsample(images: torch.Tensor, scale: int) -> torch.Tensor:
    size = (images.shape[-2] // scale, images.shape[-1] // scale)
    return F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False)


def upsample(lowres: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(lowres, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


def lowres_of(highres: torch.Tensor, scale: int) -> torch.Tensor:
    """The LR input for HR images in [-1, 1]: downsampled, then quantised like a stored image."""
    return from_uint8(to_uint8(downsample(highres, scale)))


def condition_of(lowres: torch.Tensor, scale: int) -> torch.Tensor:
    """What a model is conditioned on: the LR image upsampled to HR size."""
    return upsample(lowres, (lowres.shape[-2] * scale, lowres.shape[-1] * scale))
