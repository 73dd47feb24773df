"""The method library: networks, denoisers, training objectives and samplers.

Importing this package registers every method and objective.
"""
from methods import ddim, ddpm, edm, flow, guidance, superres  # noqa: F401  (registration side effects)
from methods.base import METHODS, OBJECTIVES, Method, Objective, PerSampleRNG
from methods.networks import UNet, UNetConfig

__all__ = ["METHODS", "OBJECTIVES", "Method", "Objective", "PerSampleRNG", "UNet", "UNetConfig"]
