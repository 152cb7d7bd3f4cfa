"""Observation models for the upstream loss, on the log scale.

Each likelihood is a pair: ``observe`` adds the observed variable (ln of the observed
values, around a mean ``mu`` with scale ``sigma`` on the log scale) to a PyMC model, and
``standard_noise`` draws the same noise in numpy, with unit scale, for posterior-predictive
bands of a *new* observation.  Working on ln(loss) makes the noise relative (a 1% scatter
is 1% at any loss) and keeps the law's positive mean positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pymc as pm


def _observe_student_t(name, mu, sigma, noise, observed, dims):
    return pm.StudentT(name, nu=noise["nu"], mu=mu, sigma=sigma, observed=observed, dims=dims)


def _noise_student_t(rng: np.random.Generator, noise: dict[str, np.ndarray], shape) -> np.ndarray:
    return rng.standard_t(np.broadcast_to(noise["nu"], shape))


def _observe_normal(name, mu, sigma, noise, observed, dims):
    return pm.Normal(name, mu=mu, sigma=sigma, observed=observed, dims=dims)


def _noise_normal(rng: np.random.Generator, noise: dict[str, np.ndarray], shape) -> np.ndarray:
    return rng.standard_normal(size=shape)


@dataclass(frozen=True)
class LogLikelihood:
    """A likelihood on ln(metric) with named noise parameters (``sigma`` is always one)."""

    name: str
    noise_params: tuple[str, ...]
    observe: Callable[..., Any]
    standard_noise: Callable[..., np.ndarray]


LIKELIHOODS = {
    "student_t_log": LogLikelihood("student_t_log", ("sigma", "nu"), _observe_student_t, _noise_student_t),
    "normal_log": LogLikelihood("normal_log", ("sigma",), _observe_normal, _noise_normal),
}
