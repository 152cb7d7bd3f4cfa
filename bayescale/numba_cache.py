"""Keep the models nutpie compiles in PyTensor's on-disk numba cache.

PyTensor compiles a model's log-density with numba and caches it on disk under a key built
from the graph, so that the next process (a test worker, a ``fit_many`` worker, tomorrow's
session) loads it instead of compiling it again.  Two things kept bayescale's models out of
that cache, and this module mends both:

- **digamma.** A graph is cached only if every Op in it is.  PyTensor's numba digamma
  (``Psi``) calls SciPy's ``cython_special.psi`` through a function pointer, which numba
  cannot cache, and a Student-t likelihood with a sampled ``nu`` has digamma in its
  gradient.  :func:`digamma` is registered in its place: written out because numba has
  none of its own, by the classical method (Cephes ``psi``): reflection below zero, the
  recurrence ``psi(x) = psi(x + 1) - 1/x`` up to ``x >= 10``, then the asymptotic series in
  ``1 / x^2``; within 1e-12 of ``scipy.special.psi`` (``tests/test_numba_cache.py``).
- **one graph per model.** After the rewrite ``local_fill_to_alloc`` some nodes' inputs come
  out in an order that depends on object ids, so the same model got a new key in every
  process.  :func:`cacheable_numba_mode` leaves that rewrite out while nutpie compiles.
- **fast-math.** PyTensor compiles with LLVM's fast-math flags by default (contraction
  into fused multiply-adds, reassociation, approximate functions).  How they apply depends
  on what LLVM sees at once: a log-density compiled in this process is optimised together
  with nutpie's wrapper around it, one loaded from the cache is linked as finished machine
  code.  The two differ in the last bits, and NUTS trajectories magnify that into different
  draws: the same data, model and seed gave another posterior on a machine with a warm
  cache than on a new one.  :func:`cacheable_numba_mode` compiles without fast-math, so both
  give the same draws, bit for bit.

Importing the module registers the digamma (``bayescale.sampling`` imports it).

Example
-------
>>> round(digamma(1.0), 12)  # minus the Euler-Mascheroni constant
-0.577215664902
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numba


@numba.njit(cache=False)
def digamma(x: float) -> float:
    """Digamma ``psi(x) = d ln Gamma(x) / dx`` of one float (-inf at 0, NaN at -1, -2, ...)."""
    if math.isnan(x):
        return x
    reflection = 0.0
    if x == 0.0:
        return -math.inf
    if x < 0.0:
        if x == math.floor(x):
            return math.nan
        # psi(x) = psi(1 - x) - pi / tan(pi x)
        reflection = math.pi / math.tan(math.pi * x)
        x = 1.0 - x
    shift = 0.0
    while x < 10.0:
        shift += 1.0 / x
        x += 1.0
    z = 1.0 / (x * x)
    # psi(x) ~ ln x - 1/(2x) - sum_k B_2k / (2k x^2k), k = 1..7 (Bernoulli numbers B_2k)
    series = z * (1.0 / 12 - z * (1.0 / 120 - z * (1.0 / 252 - z * (
        1.0 / 240 - z * (1.0 / 132 - z * (691.0 / 32760 - z / 12))))))
    return math.log(x) - 0.5 / x - series - shift - reflection


def _version() -> int:
    """A number that changes with this module's source, so a cached graph follows the kernel."""
    return int(hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12], 16)


def _register() -> None:
    from pytensor.link.numba.dispatch.basic import register_funcify_and_cache_key
    from pytensor.link.numba.dispatch.scalar import scalar_op_cache_key
    from pytensor.scalar.math import Psi

    version = _version()

    @register_funcify_and_cache_key(Psi)
    def _numba_psi(op, node=None, **kwargs):
        return digamma, scalar_op_cache_key(op, version=version)


_register()

_MODE_LOCK = threading.Lock()
#: PyTensor settings while nutpie compiles: IEEE arithmetic (see the module's docstring);
#: ``benchmarks/fastmath.py`` compares it with PyTensor's default fast-math.
COMPILE_FLAGS: dict[str, object] = {"numba__fastmath": False}
#: Rewrites left out of the graphs compiled for nutpie: after these, some nodes' inputs come
#: out in an order that changes from process to process, and with it the cache key.
NONDETERMINISTIC_REWRITES = ("local_fill_to_alloc",)


@contextmanager
def cacheable_numba_mode() -> Iterator[None]:
    """PyTensor's ``"NUMBA"`` mode, less some rewrites and fast-math, inside the block.

    nutpie compiles a PyMC model with the mode named ``"NUMBA"``; inside this block that
    name gives the same mode less the rewrites whose output is not the same graph in every
    process (:data:`NONDETERMINISTIC_REWRITES`), so a model compiled once is loaded from
    PyTensor's cache by the next process; and it compiles with IEEE arithmetic
    (``numba__fastmath=False``), so that the loaded model and a freshly compiled one give
    the same draws.
    """
    import pytensor
    from pytensor.compile import mode as modes

    with _MODE_LOCK, pytensor.config.change_flags(**COMPILE_FLAGS):
        numba_mode = modes.predefined_modes["NUMBA"]
        modes.predefined_modes["NUMBA"] = numba_mode.excluding(*NONDETERMINISTIC_REWRITES)
        try:
            yield
        finally:
            modes.predefined_modes["NUMBA"] = numba_mode


__all__ = ["COMPILE_FLAGS", "NONDETERMINISTIC_REWRITES", "cacheable_numba_mode", "digamma"]
