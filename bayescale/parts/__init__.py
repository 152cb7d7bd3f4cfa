"""The parts a model is built from; each module owns one part (see :mod:`.base`).

>>> from bayescale.parts import available_parts
>>> sorted(available_parts())[:3]
['ar1_residuals', 'checkpoints', 'downstream']
"""

from .base import (
    SOURCES,
    BuildContext,
    Default,
    ModelError,
    Part,
    PredictContext,
    Remedy,
    available_parts,
    get_part,
)
from .checkpoints import Checkpoints
from .discrepancy import Discrepancy
from .downstream import Downstream
from .drift import Drift
from .marginal import MarginalRuns
from .multi_power import MultiPowerSchedule
from .noise import Noise
from .pooling import FamilyPooling
from .residuals import AR1Residuals
from .run_effect import RunEffect
from .schedule import ScheduleTerm

__all__ = [
    "SOURCES",
    "AR1Residuals",
    "BuildContext",
    "Checkpoints",
    "Default",
    "Discrepancy",
    "Downstream",
    "Drift",
    "FamilyPooling",
    "MarginalRuns",
    "ModelError",
    "MultiPowerSchedule",
    "Noise",
    "Part",
    "PredictContext",
    "Remedy",
    "RunEffect",
    "ScheduleTerm",
    "available_parts",
    "get_part",
]
