"""Observation models for the upstream loss, on the log scale.

Each likelihood is a pair: ``observe`` adds the observed variable (given ln of the
observed values) to a PyMC model, and
``noise`` draws the same noise in numpy for posterior-predictive bands of a *new*
observation.  Working on ln(loss) makes the noise relative (a 1% scatter is 1% at any
loss) and keeps the law's positive mean positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pymc as pm
import pytensor.tensor as pt


def _observe_student_t(name, mean, noise, observed, dims):
    return pm.StudentT(name, nu=noise["nu"], mu=pt.log(mean), sigma=noise["sigma"], observed=observed, dims=dims)


def _noise_student_t(rng: np.random.Generator, noise: dict[str, np.ndarray], shape) -> np.ndarray:
    return noise["sigma"] * rng.standard_t(noise["nu"], size=shape)


def _observe_normal(name, mean, noise, observed, dims):
    return pm.Normal(name, mu=pt.log(mean), sigma=noise["sigma"], observed=observed, dims=dims)


def _noise_normal(rng: np.random.Generator, noise: dict[str, np.ndarray], shape) -> np.ndarray:
    return noise["sigma"] * rng.standard_normal(size=shape)


@dataclass(frozen=True)
class LogLikelihood:
    """A likelihood on ln(metric) with named noise parameters."""

    name: str
    noise_params: tuple[str, ...]
    observe: Callable[..., Any]
    noise: Callable[..., np.ndarray]


LIKELIHOODS = {
    "student_t_log": LogLikelihood("student_t_log", ("sigma", "nu"), _observe_student_t, _noise_student_t),
    "normal_log": LogLikelihood("normal_log", ("sigma",), _observe_normal, _noise_normal),
}
