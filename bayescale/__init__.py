"""bayescale: Bayesian scaling-law inference.

>>> import bayescale
>>> runs, truth = bayescale.simulate_ladder(seed=0)
>>> fit = bayescale.fit(runs, "chinchilla")              # doctest: +SKIP
>>> fit.predict({"params": 7e9, "tokens": 1.4e11})       # doctest: +SKIP
"""

from . import datasets, parts, plotting
from .backtesting import Backtest, backtest
from .diagnostics import ConvergenceError, ConvergenceWarning, Diagnostics
from .fanout import FitJob, FitManyResult, fit_many
from .fitting import fit
from .io import load_fit
from .laws import available_laws, get_law
from .model import Model, available_models, load_model
from .parts import ModelError
from .report import write_report as report  # eager: the subpackage would shadow a lazy name
from .result import ScalingFit
from .runs import RunsTableError, read_runs
from .simulate import Task, Truth, simulate_ladder
from .uncertainty_scaling import UncertaintyScaling, uncertainty_scaling

__version__ = "0.2.0"

__all__ = [
    "Backtest",
    "ConvergenceError",
    "ConvergenceWarning",
    "Diagnostics",
    "FitJob",
    "FitManyResult",
    "Model",
    "ModelError",
    "RunsTableError",
    "ScalingFit",
    "Task",
    "Truth",
    "UncertaintyScaling",
    "available_laws",
    "available_models",
    "backtest",
    "datasets",
    "fit",
    "fit_many",
    "get_law",
    "load_fit",
    "load_model",
    "parts",
    "plotting",
    "read_runs",
    "report",
    "simulate_ladder",
    "uncertainty_scaling",
]
