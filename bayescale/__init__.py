"""bayescale: Bayesian scaling-law inference.

>>> import bayescale
>>> runs, truth = bayescale.simulate_ladder(seed=0)
>>> fit = bayescale.fit(runs, "chinchilla")              # doctest: +SKIP
>>> fit.predict({"params": 7e9, "tokens": 1.4e11})       # doctest: +SKIP
"""

from . import datasets, plotting
from .diagnostics import ConvergenceWarning, Diagnostics
from .fitting import fit
from .io import load_fit
from .laws import available_laws, get_law
from .result import ScalingFit
from .runs import RunsTableError, read_runs
from .simulate import Task, Truth, simulate_ladder
from .model import Model, available_models, load_model
from .parts import ModelError
from . import parts
from .report import write_report as report  # noqa: E402  (eager: the subpackage would shadow a lazy name)

__version__ = "0.2.0"

__all__ = [
    "fit",
    "load_fit",
    "read_runs",
    "simulate_ladder",
    "ScalingFit",
    "RunsTableError",
    "ConvergenceWarning",
    "Diagnostics",
    "Model",
    "ModelError",
    "load_model",
    "available_models",
    "parts",
    "available_laws",
    "get_law",
    "Task",
    "Truth",
    "datasets",
    "plotting",
    "report",
]
