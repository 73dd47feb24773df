"""Composing noise estimates of a class-conditional model: visual anagrams and hybrid images.

Visual anagrams (Geng, Park & Owens 2024, "Visual Anagrams: Generating Multi-View Optical
Illusions with Diffusion Models", Alg. 1): at every step the noise estimate is the average of
the estimate for class a on the image and, mapped back, the estimate for class b on a view of
it, eps = 1/2 [eps(x, a) + v^-1(eps(v(x), b))]. The view must be an orthogonal pixel
transform (a flip, a rotation) so that v(x_t) has the noise statistics of x_t.

Hybrid images (Geng, Park & Owens 2024, "Factorized Diffusion: Perceptual Illusions by Noise
Decomposition"): low frequencies from class a's estimate and high ones from class b's,
eps = G(eps(x, a)) + eps(x, b) - G(eps(x, b)), G a Gaussian low-pass of width `lowpass_sigma`
pixels; seen blurred (from afar) the image is a, up close b.

Both are linear in the estimates, and a view or G maps x to itself plus a transformed copy,
so the same combination of the denoiser's x0 predictions gives the combined eps
(eps = (x - D) / sigma): each method here is a Denoiser wrapper around the classifier-free
guided model (Ho & Salimans 2022, each class guided on its own), under an unchanged sampler.
Both classes are evaluated in one batched call: two network evaluations per sample and call,
four with guidance (cfg_scale != 1).
"""
import functools
import math

import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

from methods.base import METHODS, register_method
from methods.denoisers import inherit_sigma_range
from methods.guidance import ClassifierFreeGuidance

# view: (v, v^-1) on N x C x H x W images
VIEWS = {
    "identity": (lambda x: x, lambda x: x),
    "flip": (lambda x: x.flip(-1), lambda x: x.flip(-1)),                 # left-right mirror
    "rot180": (lambda x: x.flip(-2, -1), lambda x: x.flip(-2, -1)),
    "rot90": (lambda x: x.rot90(1, (-2, -1)), lambda x: x.rot90(-1, (-2, -1))),   # counter-clockwise
}


def view_of(name: str):
    return VIEWS[name][0]


def lowpass(images: torch.Tensor, lowpass_sigma: float) -> torch.Tensor:
    """Gaussian low-pass of width `lowpass_sigma` pixels (kernel 2 ceil(3 sigma) + 1, reflect
    padding, capped at the image's side)."""
    if lowpass_sigma == 0:
        return images
    side = min(images.shape[-2:])
    size = min(2 * math.ceil(3 * lowpass_sigma) + 1, 2 * side - 1)
    return TF.gaussian_blur(images, [size, size], [lowpass_sigma, lowpass_sigma])


class _TwoClasses(nn.Module):
    """Evaluates the guided model for class a on x_a and class b on x_b in one batched call."""

    def __init__(self, denoiser, cfg_scale: float, class_a: int, class_b: int):
        super().__init__()
        self.guided = ClassifierFreeGuidance(denoiser, cfg_scale)
        self.class_a, self.class_b = class_a, class_b
        inherit_sigma_range(self, denoiser)

    def both(self, x_a, x_b, sigma, cond):
        if cond is None or "null_label" not in cond:
            raise ValueError("anagrams and hybrids need a class-conditional model (its null label "
                             "in cond['null_label']): pick a '-cond' model")
        count = x_a.shape[0]
        labels = torch.cat([torch.full((count,), self.class_a), torch.full((count,), self.class_b)])
        sigma = torch.as_tensor(sigma, device=x_a.device)
        sigma = sigma.repeat(2) if sigma.ndim and sigma.numel() == count else sigma
        estimate = self.guided(torch.cat([x_a, x_b]), sigma, {**cond, "labels": labels.to(x_a.device)})
        return estimate.chunk(2)


class AnagramDenoiser(_TwoClasses):
    def __init__(self, denoiser, cfg_scale, class_a, class_b, view: str):
        super().__init__(denoiser, cfg_scale, class_a, class_b)
        self.view, self.inverse = VIEWS[view]

    def forward(self, x, sigma, cond=None):
        upright, transformed = self.both(x, self.view(x), sigma, cond)
        return (upright + self.inverse(transformed)) / 2


class HybridDenoiser(_TwoClasses):
    def __init__(self, denoiser, cfg_scale, class_a, class_b, lowpass_sigma: float):
        super().__init__(denoiser, cfg_scale, class_a, class_b)
        self.lowpass_sigma = lowpass_sigma

    def forward(self, x, sigma, cond=None):
        low, high = self.both(x, x, sigma, cond)
        return lowpass(low, self.lowpass_sigma) + high - lowpass(high, self.lowpass_sigma)


COMMON = {"cfg_scale": 1.0, "class_a": 6, "class_b": 9}
LIMITS = {"cfg_scale": (0.0, 100.0), "class_a": (0, 9999), "class_b": (0, 9999)}


def anagram_views(*, view: str, **_) -> tuple:
    """Where each class shows: a upright (the sample as is), b through the view."""
    return None, VIEWS[view][0]


def hybrid_views(*, lowpass_sigma: float, **_) -> tuple:
    """a from afar (the sample low-passed, as composed), b up close (as is)."""
    return (lambda images: lowpass(images, lowpass_sigma)), None


def register_composition(kind: str, base_name: str, wrapper, views, extra: dict, extra_limits: dict,
                         paper: str) -> None:
    """`<kind>-<base>`: the base sampler on the composed denoiser, on the base's `-cond` model."""
    base = METHODS.get(base_name)
    own = set(COMMON) | set(extra)

    @functools.wraps(base.sampler)
    def sampler(denoiser, x, sigmas, *, rng, cond=None, callback=None, **hparams):
        settings = {k: hparams.pop(k) for k in own if k in hparams}
        composed = wrapper(denoiser, **{**COMMON, **extra, **settings})
        return base.sampler(composed, x, sigmas, rng=rng, cond=cond, callback=callback, **hparams)
    sampler.__name__ = f"{base.sampler.__name__}_{kind}"

    @functools.wraps(base.expected_nfe)
    def expected_nfe(steps, **named):
        nfe = base.expected_nfe(steps, **named)
        return None if nfe is None else 2 * nfe       # both classes at every evaluation

    register_method(
        name=f"{kind}-{base.name}", family="composition", task="anagram", views=views,
        model=f"{base.model}-cond", sampler=sampler, schedule=base.schedule,
        defaults={**base.defaults, **COMMON, **extra}, version="1", expected_nfe=expected_nfe,
        max_steps=base.max_steps, min_steps=base.min_steps, start=base.start,
        limits={**base.limits, **LIMITS, **extra_limits}, paper=f"{paper}; {base.paper}")


for _base in ("edm-heun", "ddim"):
    register_composition("anagram", _base, AnagramDenoiser, anagram_views, {"view": "rot180"}, {"view": set(VIEWS)},
                         "Geng, Park & Owens 2024, Visual Anagrams, Alg. 1 (averaged estimates of two "
                         "views)")
    register_composition("hybrid", _base, HybridDenoiser, hybrid_views, {"lowpass_sigma": 2.0},
                         {"lowpass_sigma": (0.0, 64.0)},
                         "Geng, Park & Owens 2024, Factorized Diffusion (low-pass of one class, "
                         "high-pass of the other)")
