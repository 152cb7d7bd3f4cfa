"""Run inference on a built PyMC model: NUTS through one of several samplers, or a fast preview.

A closed registry: ``sampler`` in ``{"nutpie", "pymc", "numpyro", "blackjax"}`` for NUTS
(all sent through ``pm.sample(nuts_sampler=...)``), ``method`` in ``{"nuts", "map",
"advi"}``.  Optional dependencies are checked up front with a helpful ImportError.

``mass_matrix``: ``"diag"`` (default; every sampler) or ``"low_rank"`` (nutpie only: a
diagonal mass matrix plus a low-rank correction adapted from the draws and gradients of the
warmup, ``low_rank_modified_mass_matrix`` of nutpie).  Scaling laws have long, narrow
ridges (the irreducible loss E against the coefficients and exponents): a diagonal mass
matrix cannot align with them and NUTS crawls along them, while the low-rank correction
learns the few correlated directions.  On Pythia's checkpoint ladder it gave 1.7-2.1x the
bulk ESS per draw of the diagonal one (``benchmarks/mass_matrix.py``); on small ladders of
final losses, and on a 40-row truncated Pythia ladder, it was no better or worse, so the
default stays ``"diag"``.

``low_rank_cutoff`` (nutpie's ``mass_matrix_eigval_cutoff``, default 100): the correction
takes only the directions whose eigenvalue of the posterior covariance (in the diagonally
scaled space) lies outside ``[1/c, c]``.  ``c = 100`` ignores a pair of parameters
correlated at 0.9-0.95 (eigenvalues 1.9/0.1 and 1.95/0.05: ratios of 19-39), which is what
each family's ``E``, ``a`` and ``alpha`` look like on the simulated 3-family calibration
ladder; there ``c = 3`` gave 2-5x the bulk ESS per draw and 5-15x per second
(``benchmarks/README.md``), while on Pythia's ladder the default mixes well.

JAX (``sampler="numpyro"``): the chains run as one program on the device when JAX's default
backend is an accelerator (numpyro's ``chain_method="vectorized"``), one chain per device
when JAX sees at least as many devices as chains (``"parallel"``), else one after another
(``"sequential"``); ``idata.posterior.attrs["chain_method"]`` records which.  ``precision``:
``"float64"`` (default) or ``"float32"`` (JAX samplers only: the model is built with
PyTensor's ``floatX="float32"`` and sampled with ``jax_enable_x64`` off, both restored
afterwards; the draws come back upcast to float64).
"""

from __future__ import annotations

import importlib.util
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any

import arviz as az
import numpy as np
import pymc as pm
from pymc.backends.arviz import find_constants, find_observations
from threadpoolctl import threadpool_limits

from .numba_cache import cacheable_numba_mode
from .nutpie_compile import compile_pymc_model

SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax")
METHODS = ("nuts", "map", "advi")
MASS_MATRICES = ("diag", "low_rank")
PRECISIONS = ("float64", "float32")
#: Samplers that run on JAX: the only ones that can sample in float32.
JAX_SAMPLERS = ("numpyro", "blackjax")
_NEEDS = {"nutpie": ("nutpie",), "numpyro": ("numpyro", "jax"), "blackjax": ("blackjax", "jax")}


@dataclass(frozen=True)
class SamplerConfig:
    """What was asked of the sampler; stored with the fit for reproducibility."""

    sampler: str = "nutpie"
    method: str = "nuts"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    target_accept: float = 0.9
    random_seed: int = 0
    cores: int | None = None
    mass_matrix: str = "diag"
    low_rank_cutoff: float | None = None
    precision: str = "float64"

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict."""
        return asdict(self)


def check_sampler(sampler: str, method: str, mass_matrix: str = "diag",
                  low_rank_cutoff: float | None = None, precision: str = "float64") -> None:
    """Raise a clear error for an unknown sampler/method/mass matrix or a sampler not installed.

    Also for a ``precision`` other than ``"float64"``/``"float32"``, and for ``"float32"``
    with anything but NUTS on a JAX sampler.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {PRECISIONS}")
    if precision == "float32" and (sampler not in JAX_SAMPLERS or method != "nuts"):
        raise ValueError(f"precision='float32' needs a JAX sampler (sampler='numpyro', "
                         f"method='nuts'), not sampler={sampler!r} with method={method!r}")
    if low_rank_cutoff is not None:
        if mass_matrix != "low_rank":
            raise ValueError(f"low_rank_cutoff={low_rank_cutoff} needs mass_matrix='low_rank' (got "
                             f"{mass_matrix!r})")
        if not low_rank_cutoff > 1:
            raise ValueError("low_rank_cutoff must be > 1 (an eigenvalue ratio), got "
                             f"{low_rank_cutoff}")
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {METHODS}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r} is not one of {SAMPLERS}")
    if mass_matrix not in MASS_MATRICES:
        raise ValueError(f"mass_matrix={mass_matrix!r} is not one of {MASS_MATRICES}")
    if mass_matrix == "low_rank" and method == "nuts" and sampler != "nutpie":
        raise ValueError("mass_matrix='low_rank' needs sampler='nutpie' (got "
                         f"sampler={sampler!r}); use mass_matrix='diag' with the other samplers")
    if method != "nuts":
        return
    if sampler == "blackjax":
        raise ValueError(
            "sampler='blackjax' does not work with PyMC 5.28 and JAX 0.10: pymc's blackjax path "
            "fails inside blackjax 1.6.2 and 1.7.1 ('cannot select an axis to squeeze out'); use "
            "sampler='numpyro' for JAX/GPU"
        )
    missing = [pkg for pkg in _NEEDS.get(sampler, ()) if importlib.util.find_spec(pkg) is None]
    if missing:
        raise ImportError(
            f"sampler={sampler!r} needs {', '.join(missing)}; install with "
            f"`pip install 'bayescale[jax]'` or pick sampler='nutpie' or 'pymc'"
        )


#: Sampler settings each non-NUTS method leaves unused.
UNUSED_BY_METHOD = {
    "map": ("draws", "tune", "chains", "target_accept", "cores", "mass_matrix", "low_rank_cutoff",
            "precision"),
    "advi": ("tune", "chains", "target_accept", "cores", "mass_matrix", "low_rank_cutoff",
             "precision"),
}


def check_settings_used(method: str, **given: Any) -> None:
    """Refuse NUTS settings passed to a method that would ignore them, rather than drop them.

    For example ``method="map"`` with ``draws=...``.

    >>> check_settings_used("map", draws=None, tune=None)
    >>> check_settings_used("map", draws=500)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ValueError: method='map' does not use draws (sampler settings of method='nuts'); leave them out
    or fit with method='nuts'
    """
    unused = [name for name in UNUSED_BY_METHOD.get(method, ()) if given.get(name) is not None]
    if unused:
        raise ValueError(f"method={method!r} does not use {', '.join(unused)} (sampler settings of "
                         "method='nuts'); leave them out or fit with method='nuts'")


def retry_config(config: SamplerConfig) -> SamplerConfig:
    """The settings of the one automatic retry after failed diagnostics.

    Twice the tuning steps and the target acceptance halfway to 1 (0.9 -> 0.95, 0.95 ->
    0.975); draws, chains, mass matrix and seed unchanged.

    Longer tuning gives the step size and mass matrix time to adapt to a ridge; a higher
    target acceptance takes smaller steps through the curved regions that cause divergences.

    >>> retry_config(SamplerConfig(tune=1000, target_accept=0.9)).tune
    2000
    >>> retry_config(SamplerConfig(tune=1000, target_accept=0.9)).target_accept
    0.95
    """
    return replace(config, tune=2 * config.tune,
                   target_accept=round(1 - (1 - config.target_accept) / 2, 6))


_NUTPIE_CACHE: dict[str, Any] = {}
#: One lock per structure key: fits of one structure in threads of one process (the thread
#: workers of ``fit_many``'s own LocalCluster) compile it once and share it.
_COMPILE_LOCKS: dict[str, threading.Lock] = {}
_COMPILE_LOCKS_GUARD = threading.Lock()


@contextmanager
def _compiling(cache_key: str | None) -> Iterator[None]:
    """Hold ``cache_key``'s compile lock (no lock without a key)."""
    if cache_key is None:
        yield
        return
    with _COMPILE_LOCKS_GUARD:
        lock = _COMPILE_LOCKS.setdefault(cache_key, threading.Lock())
    with lock:
        yield


def nutpie_mass_matrix_kwargs(config: SamplerConfig) -> dict[str, Any]:
    """Nutpie's keyword arguments for ``config.mass_matrix`` and ``config.low_rank_cutoff``."""
    if config.mass_matrix != "low_rank":
        return {"low_rank_modified_mass_matrix": False}
    options: dict[str, Any] = {"low_rank_modified_mass_matrix": True}
    if config.low_rank_cutoff is not None:
        options["mass_matrix_eigval_cutoff"] = float(config.low_rank_cutoff)
    return options


def _data_values(model: pm.Model) -> dict[str, np.ndarray]:
    return {var.name: var.get_value() for var in model.data_vars}


def _sample_nutpie(model: pm.Model, config: SamplerConfig, progressbar: bool,
                   cache_key: str | None) -> az.InferenceData:
    """NUTS with nutpie, reusing a compiled model of the same structure.

    Compilation takes ~15 s, sampling a small ladder well under 1 s.  Within a process a
    structure compiles once (``cache_key``); across processes PyTensor's on-disk numba cache
    holds the log-density (:mod:`bayescale.numba_cache` keeps it cacheable), and the numba
    cache the callbacks nutpie calls (:mod:`bayescale.nutpie_compile`).
    """
    import nutpie

    with _compiling(cache_key):
        compiled = _NUTPIE_CACHE.get(cache_key) if cache_key else None
        fresh = compiled is None
        if compiled is None:
            with warnings.catch_warnings(), cacheable_numba_mode():
                warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
                compiled = compile_pymc_model(model)
            if cache_key:
                _NUTPIE_CACHE[cache_key] = compiled
    if not fresh:
        # data the compiled graph does not use (pruned when it was compiled) need no update
        compiled = compiled.with_data(**{name: value for name, value in _data_values(model).items()
                                         if name in compiled.shared_data})
    # one BLAS thread per chain: a model's BLAS calls (batched products) would otherwise start
    # threads that contend with the chains' (3x slower on 2 cores when the marginal form
    # called LAPACK once per run)
    with threadpool_limits(limits=1, user_api="blas"):
        idata = _nutpie_sample(nutpie, compiled, config, progressbar)
    idata.extend(
        az.from_dict(
            observed_data=find_observations(model),
            constant_data=find_constants(model),
            coords={k: list(v) for k, v in model.coords.items()},
            dims={name: list(d) for name, d in model.named_vars_to_dims.items()},
        )
    )
    return idata
def _nutpie_sample(nutpie, compiled, config: SamplerConfig, progressbar: bool) -> az.InferenceData:
    """``nutpie.sample`` of a compiled model with ``config``'s settings."""
    return nutpie.sample(
        compiled,
        draws=config.draws,
        tune=config.tune,
        chains=config.chains,
        cores=config.cores or min(config.chains, os.cpu_count() or 1),
        seed=config.random_seed,
        target_accept=config.target_accept,
        progress_bar=progressbar,
        **nutpie_mass_matrix_kwargs(config),
    )


def run_inference(
    model: pm.Model, config: SamplerConfig, progressbar: bool = True, cache_key: str | None = None
) -> az.InferenceData:
    """Sample ``model`` as ``config`` says; returns InferenceData (see :func:`add_log_likelihood`).

    ``cache_key`` (see :func:`bayescale.model.structure_key`) lets the nutpie sampler reuse
    a model compiled earlier in this process.
    """
    check_sampler(config.sampler, config.method, config.mass_matrix,
                  precision=config.precision)
    with model:
        if config.method == "nuts" and config.sampler == "nutpie":
            idata = _sample_nutpie(model, config, progressbar, cache_key)
        elif config.method == "nuts" and config.sampler in JAX_SAMPLERS:
            idata = _sample_jax(model, config, progressbar)
        elif config.method == "map":
            idata = _map(model, config, progressbar)
        elif config.method == "advi":
            approx = pm.fit(n=30_000, method="advi", random_seed=config.random_seed,
                            progressbar=progressbar)
            idata = approx.sample(config.draws, random_seed=config.random_seed)
        else:
            idata = _pm_sample(config, progressbar, cores=config.cores)
        for group in [g for g in idata.groups() if g.startswith("warmup")]:
            delattr(idata, group)
    return _upcast_to_float64(idata)


def add_log_likelihood(idata: az.InferenceData, model: pm.Model, precision: str = "float64"
                       ) -> az.InferenceData:
    """Add the pointwise log-likelihood of ``model``'s observed variables at every draw.

    A ``log_likelihood`` group (float64, dims ``chain, draw`` and the observations'), in
    place; computing it compiles one more function, so a fit does it only when asked
    (:meth:`bayescale.ScalingFit.log_likelihood`).
    """
    with model_precision(precision):
        pm.compute_log_likelihood(idata, model=model, progressbar=False,
                                  extend_inferencedata=True)
    return _upcast_to_float64(idata)


def _pm_sample(config: SamplerConfig, progressbar: bool, **extra: Any) -> az.InferenceData:
    """``pm.sample`` with ``config``'s NUTS settings (``extra``: more keyword arguments)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
        return pm.sample(draws=config.draws, tune=config.tune, chains=config.chains,
                         target_accept=config.target_accept, random_seed=config.random_seed,
                         nuts_sampler=config.sampler, progressbar=progressbar,
                         compute_convergence_checks=False, **extra)


def jax_chain_method(chains: int) -> str:
    """How numpyro runs ``chains`` chains on the devices JAX sees.

    ``"vectorized"`` (all chains in one program) when JAX's default backend is an
    accelerator (GPU, TPU), ``"parallel"`` (one chain per device) when there are at least
    ``chains`` devices, else ``"sequential"``.  On a CPU JAX sees one device unless
    ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` is set before JAX starts.
    """
    import jax

    if jax.default_backend() != "cpu":
        return "vectorized"
    return "parallel" if jax.local_device_count() >= chains else "sequential"


@contextmanager
def model_precision(precision: str) -> Iterator[None]:
    """PyTensor's ``floatX`` set to ``precision`` (``"float64"``/``"float32"``) inside.

    Build a model under it for its free variables, data and logp to take that dtype.
    """
    import pytensor

    with pytensor.config.change_flags(floatX=precision):
        yield


@contextmanager
def jax_precision(precision: str) -> Iterator[None]:
    """JAX's ``jax_enable_x64`` on for ``"float64"``, off for ``"float32"``, inside only.

    Importing ``pymc.sampling.jax`` sets the flag for the whole process, from ``floatX`` at
    that moment, so it is imported first, outside any ``floatX`` change.
    """
    import jax
    import pymc.sampling.jax  # noqa: F401

    with jax.enable_x64(precision == "float64"):
        yield


def _sample_jax(model: pm.Model, config: SamplerConfig,
                progressbar: bool) -> az.InferenceData:
    """NUTS on JAX through ``pm.sample``, chains as :func:`jax_chain_method` says.

    ``config.precision`` sets the dtype; ``posterior.attrs`` records ``chain_method`` and
    ``precision``.
    """
    from .parts.whitening import register_jax

    register_jax()
    chain_method = jax_chain_method(config.chains)
    with jax_precision(config.precision), model_precision(config.precision):
        idata = _pm_sample(config, progressbar,
                           nuts_sampler_kwargs={"chain_method": chain_method})
    idata["posterior"].attrs.update(chain_method=chain_method, precision=config.precision)
    return idata


def _upcast_to_float64(idata: az.InferenceData) -> az.InferenceData:
    """``idata`` with every float32 variable of every group as float64 (attrs kept)."""
    for group in idata.groups():
        data = idata[group]
        narrow = [name for name, var in data.data_vars.items() if var.dtype == np.float32]
        if narrow:
            setattr(idata, group, data.assign({name: data[name].astype(np.float64)
                                               for name in narrow}))
    return idata


def _map(model: pm.Model, config: SamplerConfig, progressbar: bool) -> az.InferenceData:
    """The posterior mode as a one-draw posterior: a preview, not an uncertainty estimate."""
    point = pm.find_MAP(model=model, progressbar=progressbar, seed=config.random_seed)
    variables = model.free_RVs + model.deterministics
    posterior = {v.name: np.asarray(point[v.name])[None, None, ...] for v in variables}
    dims = {name: list(d) for name, d in model.named_vars_to_dims.items()}
    return az.from_dict(
        posterior=posterior,
        observed_data=find_observations(model),
        coords={k: list(v) for k, v in model.coords.items()},
        dims=dims,
    )
