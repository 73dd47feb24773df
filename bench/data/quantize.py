"""The one place samples become pixels: a finite-check, then [-1, 1] -> uint8."""
import torch

QUANTISATION = "uint8 = clamp(round((x + 1) * 127.5), 0, 255)"


class NonFiniteSamples(ValueError):
    """A sampler produced NaN or inf; no pixels are made from such a batch."""


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
        raise NonFiniteSamples(f"{bad} of {x.shape[0]} samples contain NaN or inf")
    return ((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def from_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels back to [-1, 1] (exact: to_uint8 recovers them)."""
    return pixels.float() / 127.5 - 1
