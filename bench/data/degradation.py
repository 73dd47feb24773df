"""What the tasks make of a test image: the super-resolution task's low-resolution input (shared
by training, the runner and the metrics), img2img's coarse guide and inpainting's masks.

HR images are downsampled by `scale` with antialiased bicubic interpolation (torch's
`interpolate(mode="bicubic", antialias=True)`, close to MATLAB's `imresize`), and the LR image is
quantised to uint8 as a stored LR image would be. Models and the `bicubic` baseline see the LR
image upsampled back to HR size with plain bicubic interpolation, clamped to [-1, 1].
"""
import math

import torch
from torch.nn import functional as F

from bench.data.quantize import from_uint8, to_uint8
from methods.errors import DiffbenchError
from methods.registry import did_you_mean

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


MASKS = {"centre": "the centre square of half the side", "half": "the right half",
         "strokes": "4 seeded random brush strokes (4 segments each, radius 4-8 % of the side)"}
SKETCH_BLOCK, SKETCH_LEVELS = 4, 4
MASK_SEED = 20220401   # masks depend on the test image only, never on the cell's seed


def sketch_of(images: torch.Tensor) -> torch.Tensor:
    """The img2img guide: SKETCH_BLOCK-pixel block means quantised to SKETCH_LEVELS levels per
    channel, then to uint8 as a stored image would be."""
    blocks = F.avg_pool2d(images, SKETCH_BLOCK)
    levels = ((blocks + 1) / 2 * (SKETCH_LEVELS - 1)).round() / (SKETCH_LEVELS - 1) * 2 - 1
    coarse = levels.repeat_interleave(SKETCH_BLOCK, -2).repeat_interleave(SKETCH_BLOCK, -1)
    return from_uint8(to_uint8(coarse))


def inpaint_masks(kind: str, shape: tuple[int, int, int], indices) -> torch.Tensor:
    """N x 1 x H x W masks, 1 where a pixel is known; for strokes, test image i's own."""
    _, height, width = shape
    if kind == "strokes":
        return torch.stack([stroke_mask(height, width, int(i)) for i in indices])
    known = torch.ones(1, 1, height, width)
    if kind == "centre":
        top, left = height // 4, width // 4
        known[..., top:top + height // 2, left:left + width // 2] = 0
    elif kind == "half":
        known[..., width // 2:] = 0
    else:
        raise DiffbenchError(f"unknown inpainting mask {kind!r}{did_you_mean(kind, MASKS)}; valid: {', '.join(MASKS)}")
    return known.expand(len(indices), 1, height, width).clone()


def stroke_mask(height: int, width: int, index: int, strokes: int = 4, segments: int = 4) -> torch.Tensor:
    """1 x H x W: brush strokes (polylines of random direction, length and width) drawn by a
    generator seeded by the image's index; 0 under a stroke."""
    generator = torch.Generator().manual_seed(MASK_SEED * 1_000_003 + index)
    uniform = lambda low, high: low + (high - low) * float(torch.rand((), generator=generator))
    rows, cols = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    side = min(height, width)
    hole = torch.zeros(height, width, dtype=torch.bool)
    for _ in range(strokes):
        radius = uniform(0.04, 0.08) * side
        y, x = uniform(0, height), uniform(0, width)
        for _ in range(segments):
            angle, length = uniform(0, 2 * math.pi), uniform(0.15, 0.35) * side
            y_end = min(max(y + length * math.sin(angle), 0), height)
            x_end = min(max(x + length * math.cos(angle), 0), width)
            hole |= _segment_distance(rows, cols, (y, x), (y_end, x_end)) <= radius
            y, x = y_end, x_end
    return (~hole).float().unsqueeze(0)


def _segment_distance(rows, cols, start, end) -> torch.Tensor:
    """Distance of each pixel centre from the segment start-end."""
    (y0, x0), (y1, x1) = start, end
    dy, dx = y1 - y0, x1 - x0
    along = ((rows - y0) * dy + (cols - x0) * dx) / max(dy * dy + dx * dx, 1e-12)
    along = along.clamp(0, 1)
    return torch.hypot(rows - (y0 + along * dy), cols - (x0 + along * dx))
