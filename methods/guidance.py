"""Classifier-free guidance: Ho & Salimans 2022, "Classifier-Free Diffusion Guidance".

One network trained with its class label dropped (replaced by a null label) 10 % of the time
gives both D(x | c) and D(x | null). Guided: D = D(x | null) + s (D(x | c) - D(x | null)), the
same as Eq. 6's eps = (1 + w) eps(x, c) - w eps(x) with s = 1 + w. s = 1 is plain conditional
sampling (one evaluation); any other s evaluates both halves in one batched call, so it costs
two network evaluations per sample and the NFE counter sees both.
"""
import torch
from torch import nn

from methods.base import METHODS, register_variant
from methods.denoisers import inherit_sigma_range


class ClassifierFreeGuidance(nn.Module):
    def __init__(self, denoiser: nn.Module, cfg_scale: float):
        super().__init__()
        self.inner, self.cfg_scale = denoiser, cfg_scale
        inherit_sigma_range(self, denoiser)

    def forward(self, x, sigma, cond=None):
        if cond is None or cond.get("labels") is None:
            raise ValueError("classifier-free guidance needs class labels in cond['labels']")
        if self.cfg_scale == 1.0:
            return self.inner(x, sigma, cond)
        labels = cond["labels"]
        null = torch.full_like(labels, cond["null_label"])
        sigma = torch.as_tensor(sigma, device=x.device)
        # one noise level per sample must cover both halves of the doubled batch; a scalar
        # already does
        sigma = sigma.repeat(2) if sigma.numel() == x.shape[0] and sigma.ndim else sigma
        both = self.inner(torch.cat([x, x]), sigma, {**cond, "labels": torch.cat([labels, null])})
        conditional, unconditional = both.chunk(2)
        return unconditional + self.cfg_scale * (conditional - unconditional)


for _name in ("ddpm", "ddim", "edm-heun", "edm-stochastic", "edm-euler-ancestral", "flow-euler",
              "flow-heun"):
    # `<base>-cfg`: the base method on the class-conditional model `<model>-cond`, plus cfg_scale
    register_variant(_name, suffix="-cfg", model=f"{METHODS.get(_name).model}-cond",
                     scale="cfg_scale", limit=(0.0, 100.0), note="classifier-free guidance (Ho & Salimans 2022)",
                     wrap=lambda denoiser, cfg_scale, cond: ClassifierFreeGuidance(denoiser, cfg_scale))


def guidance_for(denoiser, cfg_scale: float, cond: dict | None):
    """The denoiser a library sampler sees: guided when the cell asks for cfg_scale != 1 on a
    class-conditional model (an unconditional model cannot be guided)."""
    if cfg_scale == 1.0:
        return denoiser
    if cond is None or cond.get("labels") is None:
        raise ValueError(f"cfg_scale={cfg_scale} needs a class-conditional model; use cfg_scale=1.0 "
                         "or a '-cond' model")
    return ClassifierFreeGuidance(denoiser, cfg_scale)
