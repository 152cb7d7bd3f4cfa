"""What a model part is, and the two contexts its PyMC build and numpy prediction work in.

A part is one piece of the generative model (family pooling, run effects, a schedule term,
the noise, ...).  Each part is a frozen dataclass whose fields are its options, and owns,
side by side in its module:

- ``priors()``: its default priors, ``{name: Default(Prior, provenance)}``;
- ``check(model)``: the combinations with other parts it cannot live with, and
  ``validate(rows)``: what it needs from the data (both raise :class:`ModelError`
  naming the part);
- ``build(ctx)``: its piece of the PyMC graph (a :class:`BuildContext`);
- ``predict(ctx)``: the same piece in numpy over posterior draws (a :class:`PredictContext`);
- ``variables(model)``: the posterior variables it adds that diagnostics should watch;
- ``lookup_name`` and ``to_dict``/``from_dict``, so a model is data (TOML, saved fits).

Parts run in ascending ``order``: pooling (0) sets the law's parameters, noise (10) its
scales, the schedule term (20) the law's mean, run effects (30) and drift (40) add to ln
loss, the downstream link (50) observes accuracies, AR(1) residuals (60) condition each row
on the previous one; the noise part then observes ln loss.

Example
-------
>>> from bayescale.parts import Drift, get_part
>>> Drift(clock="fraction").to_dict()
{'part': 'drift', 'clock': 'fraction'}
>>> get_part({'part': 'drift', 'clock': 'fraction'})
Drift(clock='fraction')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from pymc_extras.prior import Prior

if TYPE_CHECKING:  # pragma: no cover
    from ..model import Model

_REGISTRY: dict[str, type[Part]] = {}

#: The random sources of a prediction, in the order :mod:`bayescale.uncertainty` nests
#: them: the law's error beyond the ladder, a new family's parameters, a new seed's run
#: effects, the drift still ahead, a new run's downstream offset, the benchmark's item
#: sampling, the loss measurement's noise.  Each part names the sources it draws
#: (``Part.sources``).
SOURCES = ("discrepancy", "family", "run", "drift", "downstream", "benchmark", "noise")


class ModelError(ValueError):
    """A model's parts do not fit together, or do not fit the data; the message names the part."""


@dataclass(frozen=True)
class Remedy:
    """A part's advice for a fit that did not converge: the model and settings to refit with.

    ``hint`` says it in words (the verdict shows it), ``model`` is the model to refit and
    ``sampler`` the sampler settings that go with it, e.g. ``{"mass_matrix": "low_rank"}``.
    """

    hint: str
    model: Model
    sampler: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Default:
    """A part's default prior for one parameter, with where it comes from."""

    prior: Prior
    provenance: str


def default(dist: str, why: str, **kwargs: float) -> Default:
    """Shorthand for a :class:`Default`: ``default("HalfNormal", "why...", sigma=0.1)``."""
    return Default(Prior(dist, **kwargs), why)


def choice(part: str, name: str, value: Any, allowed: tuple) -> None:
    """Raise a one-line :class:`ModelError` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ModelError(f"{part}: {name}={value!r} is not one of {allowed}")


@dataclass(frozen=True)
class Part:
    """Base class of model parts (see the module docstring)."""

    lookup_name: ClassVar[str]
    order: ClassVar[int]
    #: At most one part per slot (e.g. one schedule term).
    slot: ClassVar[str | None] = None
    #: The random sources (of :data:`SOURCES`) this part draws when predicting.
    sources: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "lookup_name" in cls.__dict__:
            _REGISTRY[cls.lookup_name] = cls

    # ------------------------------------------------------------- description
    def priors(self) -> dict[str, Default]:
        """Default priors of the parameters this part adds."""
        return {}

    def check(self, model: Model) -> None:
        """Raise :class:`ModelError` if this part cannot live with the model's other parts."""

    def validate(self, rows: pd.DataFrame) -> None:
        """Raise :class:`ModelError` if the fitted rows lack what this part needs."""

    def resolve(self, rows: pd.DataFrame) -> Part:
        """The part with any data-dependent option settled (default: itself, unchanged)."""
        return self

    def random_sources(self, posterior: Any) -> tuple[str, ...]:
        """The random sources this part draws in a prediction from ``posterior``."""
        return self.sources

    def variables(self, model: Model) -> list[str]:
        """Posterior variables to summarise and diagnose (scales, populations; not latents)."""
        return list(self.priors())

    def convergence_remedy(self, model: Model, worst: tuple[str, ...]) -> Remedy | None:
        """What to refit with when the worst-mixing variables are ``worst`` (None: nothing).

        :func:`bayescale.fit`'s automatic retry refits with the first remedy a part of the
        model offers, and the verdict shows its ``hint``.
        """
        return None

    def convergence_hint(self, model: Model, worst: tuple[str, ...]) -> str | None:
        """The :meth:`convergence_remedy` in words (None: no advice from this part)."""
        remedy = self.convergence_remedy(model, worst)
        return None if remedy is None else remedy.hint

    # ------------------------------------------------------------- the model
    def build(self, ctx: BuildContext) -> None:
        """Add this part to the PyMC model being built."""

    def predict(self, ctx: PredictContext) -> None:
        """Apply this part to the numpy prediction at ``ctx.targets``."""

    # ------------------------------------------------------------- data form
    def to_dict(self) -> dict[str, Any]:
        """``{"part": lookup_name, **options}`` with tuples as lists (TOML/JSON form)."""
        out: dict[str, Any] = {"part": self.lookup_name}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Part:
        """The part from :meth:`to_dict`'s form; unknown options raise :class:`ModelError`."""
        data = {k: v for k, v in data.items() if k != "part"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"{cls.lookup_name}: unknown option(s) {unknown}; options are "
                             f"{sorted(known)}")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**data)


def get_part(entry: str | dict[str, Any] | Part) -> Part:
    """A part from its lookup name, a dict (``{"part": name, **options}``) or a part."""
    if isinstance(entry, Part):
        return entry
    if isinstance(entry, str):
        entry = {"part": entry}
    name = entry.get("part")
    if name not in _REGISTRY:
        raise ModelError(f"unknown part {name!r}; available: {sorted(_REGISTRY)}")
    return _REGISTRY[name].from_dict(entry)


def available_parts() -> dict[str, str]:
    """``{lookup_name: first line of the part's docstring}``."""
    return {name: (cls.__doc__ or "").strip().splitlines()[0]
            for name, cls in sorted(_REGISTRY.items())}


# ============================================================================ contexts
@dataclass
class BuildContext:
    """State shared by the parts while one PyMC model is built (inside ``with pm.Model()``).

    ``where`` is ``"obs"`` (the fitted loss rows, dim ``obs``) or ``"acc"`` (accuracy rows,
    dim ``acc_obs``).  ``x[where]`` holds the numpy design arrays (see
    :func:`bayescale.design.design`), ``theta[where]`` the law's parameters at each row,
    ``mu[where]`` the ln of the latent loss at each row (parts add to it), ``sigma`` the
    residual scale of each loss row and ``noise`` the likelihood's other parameters.
    """

    model: Model
    rows: pd.DataFrame
    acc_rows: pd.DataFrame | None
    scale: Any
    families: list[str]
    runs: list[str]
    x: dict[str, dict[str, np.ndarray]]
    theta: dict[str, dict[str, Any]] = field(default_factory=dict)
    theta_family: dict[str, Any] = field(default_factory=dict)
    mu: dict[str, Any] = field(default_factory=dict)
    sigma: Any = None
    noise: dict[str, Any] = field(default_factory=dict)
    kappa: Any = None
    ln_value: Any = None
    store: dict[str, Any] = field(default_factory=dict)
    #: With :class:`~bayescale.parts.MarginalRuns`: the rows as padded run blocks; the
    #: within-run Gaussian parts then add loadings (``store["run_loadings"]``) instead of
    #: latents to ``mu``.
    blocks: Any = None

    @property
    def wheres(self) -> tuple[str, ...]:
        """``("obs", "acc")`` with accuracy rows, else ``("obs",)``."""
        return ("obs", "acc") if self.acc_rows is not None else ("obs",)

    def data(self, name: str, where: str = "obs"):
        """``pm.Data`` of the design array ``name`` (registered once per model)."""
        import pymc as pm

        key = name if where == "obs" else f"acc_{name}"
        if key not in self.store:
            dims = "obs" if where == "obs" else "acc_obs"
            source = {"family_index": "family", "run_index": "run"}.get(name, name)
            self.store[key] = pm.Data(key, self.x[where][source], dims=dims)
        return self.store[key]

    def size_factor(self, where: str = "obs"):
        """``(N/N0)^-kappa`` with the noise part's ``by_size``, else 1 (scales shrink with size)."""
        return 1.0 if self.kappa is None else self.data("n", where) ** (-self.kappa)


@dataclass
class PredictContext:
    """State shared by the parts while predicting at ``targets`` from posterior draws.

    Arrays are (S, T): S posterior draws (chains x draws, stacked), T targets.  ``known``
    marks targets naming a fitted run; ``new_draws`` asks for what a new measurement adds
    (a new seed's offset, the drift still ahead, the noise: ``kind="observation"``).

    For nested Monte Carlo (:mod:`bayescale.uncertainty`) the posterior draws are repeated
    ``copies`` times (S is then copies x draws, copy-major) and the sources named in
    ``frozen`` draw the same values in every copy: parts draw through :meth:`random`.
    """

    fit: Any  # the fit's structure: model, scale, families, run_names, rows, acc_rows
    idata: Any
    targets: pd.DataFrame
    x: dict[str, np.ndarray]
    family_labels: pd.Series
    run_labels: pd.Series
    known: np.ndarray
    new_draws: bool
    rng: np.random.Generator
    theta: dict[str, np.ndarray] = field(default_factory=dict)
    mu: np.ndarray | None = None
    sigma: np.ndarray | None = None
    metrics: pd.Series | None = None
    values: np.ndarray | None = None
    store: dict[str, Any] = field(default_factory=dict)
    copies: int = 1
    frozen: frozenset[str] = frozenset()
    #: Draw a new measurement's noise from the likelihood's Gaussian core (a Student-t noise
    #: on ln loss gives the loss no finite variance; see :mod:`bayescale.uncertainty`).
    gaussian_noise: bool = False
    #: Each source draws from its own stream (spawned from ``rng``'s seed), so that freezing
    #: one source leaves every other source's draws unchanged (common random numbers).
    streams: bool = False
    _source_rngs: dict[str, np.random.Generator] = field(default_factory=dict, repr=False)

    def draws(self, name: str) -> np.ndarray:
        """Posterior draws of ``name`` stacked over chains: shape (S, ...)."""
        if name not in self.store:
            values = (self.idata.posterior[name].stack(sample=("chain", "draw"))
                      .transpose("sample", ...).to_numpy())
            if self.copies > 1:
                values = np.tile(values, (self.copies,) + (1,) * (values.ndim - 1))
            self.store[name] = values
        return self.store[name]

    @property
    def n_draws(self) -> int:
        """S, the number of posterior draws (chains x draws, times ``copies``)."""
        posterior = self.idata.posterior
        return posterior.sizes["chain"] * posterior.sizes["draw"] * self.copies

    def random(self, source: str, sample: Callable[..., np.ndarray], *params: Any,
               inverse: Callable[..., np.ndarray] | None = None) -> np.ndarray:
        """Random values of ``source`` (one of :data:`SOURCES`): ``sample(rng, n, *params)``.

        ``sample`` returns an array whose first axis has ``n`` rows (one per draw); array
        ``params`` have one row per draw.  A frozen source takes the same random numbers in
        every copy: its draws for the first copy are repeated, or, where ``params`` depend on
        other sources (and so differ between copies), ``inverse(u, *params)`` (the inverse
        CDF) is applied to uniforms ``u`` repeated in every copy.

        Example
        -------
        >>> z = ctx.random("run", lambda rng, n: rng.standard_normal((n, 3)))  # doctest: +SKIP
        """
        if source not in SOURCES:
            raise ValueError(f"unknown random source {source!r}; sources are {SOURCES}")
        rng = self.rng
        if self.streams:
            if source not in self._source_rngs:
                seed = self.rng.bit_generator.seed_seq
                assert isinstance(seed, np.random.SeedSequence)
                self._source_rngs[source] = np.random.default_rng(np.random.SeedSequence(
                    seed.entropy, spawn_key=(*seed.spawn_key, SOURCES.index(source))))
            rng = self._source_rngs[source]
        if self.copies == 1 or source not in self.frozen:
            return sample(rng, self.n_draws, *params)
        outer = self.n_draws // self.copies
        reps = (self.copies,)
        if inverse is not None:
            shape = np.broadcast_shapes(*(np.shape(p) for p in params))
            u = rng.random((outer, *shape[1:]))
            return inverse(np.tile(u, reps + (1,) * (u.ndim - 1)), *params)
        first = sample(rng, outer, *(np.asarray(p)[:outer] for p in params))
        return np.tile(first, reps + (1,) * (first.ndim - 1))

    def size_factor(self, params=None) -> np.ndarray:
        """``(N/N0)^-kappa`` per draw and target (1 without a size-scaled noise part)."""
        params = self.targets["params"] if params is None else params
        n = np.asarray(params, dtype=float)[None, :] / self.fit.scale.N0
        if "kappa" not in self.idata.posterior or not self.fit.model.part("noise").by_size:
            return np.ones((self.n_draws, n.shape[1]))
        return n ** -self.draws("kappa")[:, None]
