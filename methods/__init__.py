"""The method library: networks, denoisers, training objectives and samplers.

Importing this package registers every method and objective.
"""
# Registration side effects; the library adapters last (guidance registers on the built-ins).
from methods import ddim, ddpm, denoising, edm, editing, flow, guidance, sde, superres  # noqa: F401  # isort: skip
from methods import composition  # noqa: F401  # after guidance: it composes guided estimates
from methods import deis, dpm_solver, unipc  # noqa: F401  # isort: skip
from methods import classifier_guidance  # noqa: F401  # isort: skip
from methods import diffusers_schedulers, kdiffusion  # noqa: F401  # isort: skip
from methods.base import (METHODS, OBJECTIVES, Denoiser, Method, Objective, PerSampleRNG, Sampler,
                          Schedule, register_method)
from methods.networks import UNet, UNetConfig

__all__ = ["METHODS", "OBJECTIVES", "Denoiser", "Method", "Objective", "PerSampleRNG", "Sampler",
           "Schedule", "UNet", "UNetConfig", "register_method"]
