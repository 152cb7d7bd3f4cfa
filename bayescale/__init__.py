"""bayescale: Bayesian scaling-law inference.

>>> import bayescale
>>> runs, truth = bayescale.simulate_ladder(seed=0)
>>> fit = bayescale.fit(runs, law="chinchilla")          # doctest: +SKIP
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
from .spec import ModelSpec, SpecError, available_specs, load_spec
from .report import write_report as report  # noqa: E402  (eager: the subpackage would shadow a lazy name)

__version__ = "0.1.0"

__all__ = [
    "fit",
    "load_fit",
    "read_runs",
    "simulate_ladder",
    "ScalingFit",
    "RunsTableError",
    "ConvergenceWarning",
    "Diagnostics",
    "ModelSpec",
    "SpecError",
    "load_spec",
    "available_specs",
    "available_laws",
    "get_law",
    "Task",
    "Truth",
    "datasets",
    "plotting",
    "report",
]
