"""Scaling laws, registered by name."""

from .base import ScalingLaw, available_laws, get_law
from .power import FLOP_PER_PARAM_TOKEN, Chinchilla, Compute, Kaplan

__all__ = ["ScalingLaw", "Chinchilla", "Compute", "Kaplan", "get_law", "available_laws", "FLOP_PER_PARAM_TOKEN"]
