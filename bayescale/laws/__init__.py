"""Scaling laws, registered by name."""

from .base import ScalingLaw, available_laws, get_law
from .power import FLOP_PER_PARAM_TOKEN, Chinchilla, Compute, Gadre, Kaplan

__all__ = ["FLOP_PER_PARAM_TOKEN", "Chinchilla", "Compute", "Gadre", "Kaplan", "ScalingLaw",
           "available_laws", "get_law"]
