"""A small DDPM-style UNet (Ho et al. 2020, Appendix B) sized for CPU benchmarks.

Conditioning hooks: a class label (embedded and added to the time embedding, with one extra
"null" class for classifier-free guidance) and a low-resolution image (concatenated to the
input channels, as in SR3).
"""
import dataclasses
import math

import torch
from torch import nn
from torch.nn import functional as F


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    image_channels: int = 1
    image_size: int = 28
    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    attention_levels: tuple[int, ...] = ()
    dropout: float = 0.0
    num_classes: int = 0
    cond_channels: int = 0

    def limits(self) -> dict[str, tuple]:
        """Each numeric field's accepted range (inclusive)."""
        return {"image_channels": (1, 64), "image_size": (2, 4096), "base_channels": (1, 4096),
                "num_res_blocks": (1, 16), "dropout": (0.0, 0.99), "num_classes": (0, 100_000),
                "cond_channels": (0, 64)}

    def build_problem(self) -> str | None:
        """Why a UNet with this config cannot run (group norms, embedding sizes, levels), found
        by one forward pass on the meta device (no memory, no arithmetic); None if it runs."""
        if not self.channel_mult or not all(isinstance(m, int) and 1 <= m <= 64 for m in self.channel_mult):
            return f"channel_mult must be a non-empty list of integers 1-64, got {list(self.channel_mult)}"
        if any(level not in range(len(self.channel_mult)) for level in self.attention_levels):
            return (f"attention_levels {list(self.attention_levels)} must be levels of "
                    f"channel_mult (0-{len(self.channel_mult) - 1})")
        try:
            with torch.device("meta"):
                x = torch.zeros(1, self.image_channels, self.image_size, self.image_size)
                cond = torch.zeros(1, self.cond_channels, self.image_size, self.image_size)
                UNet(self)(x, torch.ones(1), cond_image=cond if self.cond_channels else None)
        except (ValueError, RuntimeError) as err:
            return str(err).splitlines()[0]
        return None


def timestep_embedding(noise_level: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sinusoidal embedding of a (continuous) noise level, as in DDPM."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=noise_level.device) / half)
    args = noise_level.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = _norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2, self.conv2 = _norm(out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """net(x, noise_level, class_labels=None, cond_image=None) -> tensor shaped like x."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        ch = config.base_channels
        emb_dim = 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # Index num_classes is the "null" label used for unconditional / CFG evaluation.
        self.label_emb = nn.Embedding(config.num_classes + 1, emb_dim) if config.num_classes else None
        self.conv_in = nn.Conv2d(config.image_channels + config.cond_channels, ch, 3, padding=1)

        self.down, skip_channels = nn.ModuleList(), [ch]
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                self.down.append(self._block(ch, mult * config.base_channels, emb_dim, level))
                ch = mult * config.base_channels
                skip_channels.append(ch)
            if level < len(config.channel_mult) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skip_channels.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, config.dropout), SelfAttention(ch),
                                  ResBlock(ch, ch, emb_dim, config.dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for _ in range(config.num_res_blocks + 1):
                out_ch = mult * config.base_channels
                self.up.append(self._block(ch + skip_channels.pop(), out_ch, emb_dim, level))
                ch = out_ch
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
        self.norm_out = _norm(ch)
        self.conv_out = nn.Conv2d(ch, config.image_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def _block(self, in_ch, out_ch, emb_dim, level):
        block = ResBlock(in_ch, out_ch, emb_dim, self.config.dropout)
        if level in self.config.attention_levels:
            return nn.ModuleList([block, SelfAttention(out_ch)])
        return block

    def _run_layer(self, layer, h, emb):
        if isinstance(layer, nn.ModuleList):
            return layer[1](layer[0](h, emb))
        if isinstance(layer, ResBlock):
            return layer(h, emb)
        return layer(h)

    def forward(self, x, noise_level, class_labels=None, cond_image=None):
        emb = self.time_mlp(timestep_embedding(noise_level, self.config.base_channels))
        if self.label_emb is not None:
            if class_labels is None:
                class_labels = torch.full((x.shape[0],), self.config.num_classes, device=x.device)
            emb = emb + self.label_emb(class_labels)
        if self.config.cond_channels:
            x = torch.cat([x, cond_image.to(x.dtype)], dim=1)
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            h = self._run_layer(layer, h, emb)
            skips.append(h)
        for layer in self.mid:
            h = self._run_layer(layer, h, emb)
        for layer in self.up:
            if isinstance(layer, nn.Upsample):
                h = layer(h)
                if h.shape[-1] != skips[-1].shape[-1]:
                    h = F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest")
            else:
                h = self._run_layer(layer, torch.cat([h, skips.pop()], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))
