"""Classifier-free guidance: Ho & Salimans 2022, "Classifier-Free Diffusion Guidance".

One network trained with its class label dropped (replaced by a null label) 10 % of the time
gives both D(x | c) and D(x | null). Guided: D = D(x | null) + s (D(x | c) - D(x | null)), the
same as Eq. 6's eps = (1 + w) eps(x, c) - w eps(x) with s = 1 + w. s = 1 is plain conditional
sampling (one evaluation); any other s evaluates both halves in one batched call, so it costs
two network evaluations per sample and the NFE counter sees both.
"""
import torch
from torch import nn

from methods.base import METHODS, register_method
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


def guided(sampler):
    """A sampler that applies classifier-free guidance to its denoiser."""
    def guided_sampler(denoiser, x, sigmas, *, rng, cond=None, callback=None, cfg_scale=1.0, **hparams):
        return sampler(ClassifierFreeGuidance(denoiser, cfg_scale), x, sigmas, rng=rng, cond=cond,
                       callback=callback, **hparams)
    guided_sampler.__doc__ = f"{sampler.__doc__} With classifier-free guidance (Ho & Salimans 2022)."
    guided_sampler.__name__ = f"{sampler.__name__}_cfg"
    return guided_sampler


def register_guided(base_name: str) -> None:
    """`<base>-cfg`: the base method on the class-conditional model `<model>-cond`, plus cfg_scale."""
    base = METHODS.get(base_name)
    register_method(
        name=f"{base.name}-cfg", family=base.family, task=base.task, model=f"{base.model}-cond",
        sampler=guided(base.sampler), schedule=base.schedule,
        defaults={**base.defaults, "cfg_scale": 1.0}, version=base.version,
        expected_nfe=base.expected_nfe, max_steps=base.max_steps,
        limits={**base.limits, "cfg_scale": (0.0, 100.0)}, paper=f"{base.paper} + classifier-free guidance (Ho & Salimans 2022)")


for _name in ("ddpm", "ddim", "edm-heun", "edm-stochastic", "edm-euler-ancestral", "flow-euler", "flow-heun"):
    register_guided(_name)


def guidance_for(denoiser, cfg_scale: float, cond: dict | None):
    """The denoiser a library sampler sees: guided when the cell asks for cfg_scale != 1 on a
    class-conditional model (an unconditional model cannot be guided)."""
    if cfg_scale == 1.0:
        return denoiser
    if cond is None or cond.get("labels") is None:
        raise ValueError(f"cfg_scale={cfg_scale} needs a class-conditional model; use cfg_scale=1.0 "
                         "or a '-cond' model")
    return ClassifierFreeGuidance(denoiser, cfg_scale)
