"""Sample grids written beside the results, so reports can show them from files alone."""
import io
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from bench.paths import atomic_write


def save_grid(pixels_uint8: torch.Tensor, path: Path, upscale: int = 2, nrow: int | None = None) -> Path:
    """A grid of uint8 NCHW images (square-ish, or `nrow` a line), saved as PNG
    (nearest-neighbour upscaled)."""
    nrow = nrow or max(1, int(len(pixels_uint8) ** 0.5))
    grid = make_grid(pixels_uint8, nrow=nrow, padding=1, pad_value=255)
    array = grid.permute(1, 2, 0).numpy()
    image = Image.fromarray(array[..., 0] if pixels_uint8.shape[1] == 1 else array)
    image = image.resize((image.width * upscale, image.height * upscale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())
    return path
