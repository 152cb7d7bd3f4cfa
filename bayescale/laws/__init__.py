"""Scaling laws, registered by name."""

from .base import ScalingLaw, available_laws, get_law
from .power import FLOP_PER_PARAM_TOKEN, Chinchilla, Compute, Kaplan

__all__ = ["FLOP_PER_PARAM_TOKEN", "Chinchilla", "Compute", "Kaplan", "ScalingLaw",
           "available_laws", "get_law"]
