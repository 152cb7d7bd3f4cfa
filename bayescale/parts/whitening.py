"""Batched Cholesky whitening of run residuals as one PyTensor Op (numba, python and JAX).

``whiten(resid, cov)`` returns, for each run r, ``white[r] = L_r^-1 resid[r]`` and
``log_diag[r] = ln diag(L_r)`` with ``L_r`` the lower Cholesky factor of ``cov[r]``: what a
per-run multivariate normal or Student-t log-density needs (see
:func:`bayescale.parts.marginal.run_logp`).

Why one Op rather than PyTensor's ``cholesky`` and ``solve_triangular``: those are batched
over runs by ``Blockwise``, one LAPACK call per run and per step of the gradient, and on
ladders of tens of runs of 15-30 checkpoints that per-call overhead, not arithmetic, dominates
(figures in ``benchmarks/README.md``, ``benchmarks/gradient_cost.py``).  Here the factor,
the solve and their reverse-mode derivative (Murray 2016, "Differentiation of the Cholesky
decomposition") are plain loops over all runs in one compiled kernel.  The kernels are
written by hand because no library offers a batched, differentiable Cholesky whitening for
numba; they are tested against PyTensor's own ops and by finite differences.

Like LAPACK's ``potrf``, the factor reads the lower triangle of ``cov`` only, and the
gradient with respect to ``cov`` is lower-triangular (PyTensor's ``Cholesky`` convention).
A run whose covariance is not positive definite gets NaN whitened residuals, so its
log-density is NaN and a sampler rejects the point.

Example
-------
>>> import numpy as np
>>> white, log_diag = whiten_numpy(np.array([[2.0, 1.0]]), np.array([[[4.0, 0.0], [0.0, 1.0]]]))
>>> white.tolist(), np.exp(log_diag).tolist()
([[1.0, 1.0]], [[2.0, 1.0]])
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.scalar import upcast


# ============================================================================ kernels
@numba.njit(cache=False, fastmath=False)
def _factor(cov_r, chol):  # pragma: no cover - compiled
    """Lower Cholesky factor of one (L, L) matrix into ``chol``; False if not positive definite."""
    n = cov_r.shape[0]
    for j in range(n):
        s = cov_r[j, j]
        for k in range(j):
            s -= chol[j, k] * chol[j, k]
        if not s > 0.0:
            return False
        d = math.sqrt(s)
        chol[j, j] = d
        for i in range(j + 1, n):
            t = cov_r[i, j]
            for k in range(j):
                t -= chol[i, k] * chol[j, k]
            chol[i, j] = t / d
    return True


@numba.njit(cache=False, fastmath=False)
def _forward(resid, cov, white, log_diag, chol):  # pragma: no cover - compiled
    """Fill ``white`` and ``log_diag`` (R, L) run by run; ``chol`` (L, L) is scratch space."""
    n_run, n = resid.shape
    for r in range(n_run):
        chol[:, :] = 0.0
        if not _factor(cov[r], chol):
            white[r, :] = np.nan
            log_diag[r, :] = np.nan
            continue
        for i in range(n):
            t = resid[r, i]
            for k in range(i):
                t -= chol[i, k] * white[r, k]
            white[r, i] = t / chol[i, i]
            log_diag[r, i] = math.log(chol[i, i])


@numba.njit(cache=False, fastmath=False)
def whiten_kernel(resid, cov):  # pragma: no cover - compiled
    """``(white, log_diag)``, each (R, L), for ``resid`` (R, L) and ``cov`` (R, L, L)."""
    n_run, n = resid.shape
    white = np.empty((n_run, n), dtype=resid.dtype)
    log_diag = np.empty((n_run, n), dtype=resid.dtype)
    _forward(resid, cov, white, log_diag, np.zeros((n, n), dtype=resid.dtype))
    return white, log_diag


@numba.njit(cache=False, fastmath=False)
def whiten_grad_kernel(resid, cov, white_bar, log_diag_bar):  # pragma: no cover - compiled
    """Reverse-mode derivative: ``(resid_bar (R, L), cov_bar (R, L, L), lower-triangular)``.

    With ``M = L^-1``, ``white = M resid``: ``resid_bar = M^T white_bar``, and Murray's
    ``cov_bar = M^T Phi(L^T L_bar) M`` where ``L_bar = -tril(resid_bar white^T) +
    diag(log_diag_bar / diag(L))``, whose ``Phi(L^T L_bar)`` is, since ``L^T resid_bar =
    white_bar``, the O(L^2) ``P = -tril(white_bar white^T)`` with diagonal
    ``(log_diag_bar - white_bar white) / 2``.  Every loop runs along rows (axpy).
    """
    n_run, n = resid.shape
    dtype = resid.dtype
    resid_bar = np.zeros((n_run, n), dtype=dtype)
    cov_bar = np.zeros((n_run, n, n), dtype=dtype)
    chol = np.zeros((n, n), dtype=dtype)
    inv = np.zeros((n, n), dtype=dtype)
    white = np.zeros(n, dtype=dtype)
    prod = np.zeros((n, n), dtype=dtype)
    full = np.zeros((n, n), dtype=dtype)
    for r in range(n_run):
        chol[:, :] = 0.0
        if not _factor(cov[r], chol):
            resid_bar[r, :] = np.nan
            cov_bar[r, :, :] = np.nan
            continue
        inv[:, :] = 0.0  # M = L^-1, row by row
        for i in range(n):
            inv[i, i] = 1.0
            for k in range(i):
                a = chol[i, k]
                for j in range(k + 1):
                    inv[i, j] -= a * inv[k, j]
            d = 1.0 / chol[i, i]
            for j in range(i + 1):
                inv[i, j] *= d
        for i in range(n):
            t = 0.0
            for k in range(i + 1):
                t += inv[i, k] * resid[r, k]
            white[i] = t
        for k in range(n):  # resid_bar = M^T white_bar
            a = white_bar[r, k]
            for i in range(k + 1):
                resid_bar[r, i] += inv[k, i] * a
        prod[:, :] = 0.0  # prod = P M (lower)
        for i in range(n):
            wb = white_bar[r, i]
            for k in range(i + 1):
                a = -wb * white[k]
                if k == i:
                    a = 0.5 * (a + log_diag_bar[r, i])
                for j in range(k + 1):
                    prod[i, j] += a * inv[k, j]
        full[:, :] = 0.0  # full = M^T prod
        for k in range(n):
            for i in range(k + 1):
                a = inv[k, i]
                for j in range(k + 1):
                    full[i, j] += a * prod[k, j]
        for i in range(n):
            cov_bar[r, i, i] = full[i, i]
            for j in range(i):
                cov_bar[r, i, j] = full[i, j] + full[j, i]
    return resid_bar, cov_bar


def whiten_numpy(resid: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kernel on numpy arrays: ``(white, log_diag)`` for ``resid`` (R, L), ``cov`` (R, L, L)."""
    return whiten_kernel(np.ascontiguousarray(resid), np.ascontiguousarray(cov))


# ============================================================================ ops
class RunWhiten(Op):
    """``(resid (R, L), cov (R, L, L)) -> (white (R, L), log_diag (R, L))``; see the module."""

    __props__ = ()

    def make_node(self, resid, cov):
        """Two outputs shaped like ``resid``, of the inputs' float dtype."""
        resid, cov = pt.as_tensor(resid), pt.as_tensor(cov)
        dtype = upcast(resid.dtype, cov.dtype, "float32")
        resid, cov = pt.cast(resid, dtype), pt.cast(cov, dtype)
        if resid.ndim != 2 or cov.ndim != 3:
            raise ValueError(f"RunWhiten: resid must be (R, L) and cov (R, L, L); got "
                             f"{resid.ndim} and {cov.ndim} dimensions")
        return Apply(self, [resid, cov], [resid.type(), resid.type()])

    def perform(self, node, inputs, outputs):
        """The numba kernel, called from Python (C and Python linkers)."""
        white, log_diag = whiten_numpy(*inputs)
        outputs[0][0], outputs[1][0] = white, log_diag

    def infer_shape(self, fgraph, node, shapes):
        """Both outputs have the residuals' shape."""
        return [shapes[0], shapes[0]]

    def L_op(self, inputs, outputs, output_grads):
        """Gradients with respect to ``resid`` and ``cov`` from one :class:`RunWhitenGrad`."""
        white_bar, log_diag_bar = (
            pt.zeros_like(out) if isinstance(g.type, DisconnectedType) else g
            for out, g in zip(outputs, output_grads, strict=True))
        return list(RunWhitenGrad()(*inputs, white_bar, log_diag_bar))


class RunWhitenGrad(Op):
    """``(resid, cov, white_bar, log_diag_bar) -> (resid_bar, cov_bar)`` of :class:`RunWhiten`."""

    __props__ = ()

    def make_node(self, resid, cov, white_bar, log_diag_bar):
        """Outputs shaped like ``resid`` and ``cov``."""
        inputs = [pt.as_tensor(x) for x in (resid, cov, white_bar, log_diag_bar)]
        dtype = upcast(*(x.dtype for x in inputs), "float32")
        inputs = [pt.cast(x, dtype) for x in inputs]
        return Apply(self, inputs, [inputs[0].type(), inputs[1].type()])

    def perform(self, node, inputs, outputs):
        """The numba kernel, called from Python."""
        resid_bar, cov_bar = whiten_grad_kernel(*(np.ascontiguousarray(x) for x in inputs))
        outputs[0][0], outputs[1][0] = resid_bar, cov_bar

    def infer_shape(self, fgraph, node, shapes):
        """Shaped like ``resid`` and ``cov``."""
        return [shapes[0], shapes[1]]


_run_whiten = RunWhiten()


def whiten(resid, cov):
    """Symbolic ``(white, log_diag)`` (R, L) for ``resid`` (R, L) and ``cov`` (R, L, L)."""
    white, log_diag = _run_whiten(resid, cov)
    return white, log_diag


# ============================================================================ backends
def _kernel_version() -> int:
    """A number that changes with this module's source.

    PyTensor's numba cache keys an Op by its type and props only, so without it a graph
    compiled with an earlier version of the kernels would be loaded from the cache.
    """
    return int(hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12], 16)


def _register_numba() -> None:
    from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

    version = _kernel_version()

    @register_funcify_default_op_cache_key(RunWhiten)
    def _numba_run_whiten(op, node=None, **kwargs):
        return whiten_kernel, version

    @register_funcify_default_op_cache_key(RunWhitenGrad)
    def _numba_run_whiten_grad(op, node=None, **kwargs):
        return whiten_grad_kernel, version


_jax_registered = False


def register_jax() -> None:
    """Give both Ops their JAX implementation (idempotent; JAX samplers call it first)."""
    global _jax_registered
    if _jax_registered:
        return
    try:
        from pytensor.link.jax.dispatch.basic import jax_funcify
    except ImportError:  # pragma: no cover - JAX is an optional extra
        return

    def forward(resid, cov):
        import jax
        import jax.numpy as jnp

        chol = jax.lax.linalg.cholesky(cov, symmetrize_input=False)
        white = jax.lax.linalg.triangular_solve(chol, resid[..., None], left_side=True,
                                                lower=True)[..., 0]
        return white, jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1))

    def backward(resid, cov, white_bar, log_diag_bar):
        import jax
        import jax.numpy as jnp

        _, pullback = jax.vjp(forward, resid, cov)
        resid_bar, cov_bar = pullback((white_bar, log_diag_bar))
        lower = jnp.tril(cov_bar + jnp.swapaxes(cov_bar, -1, -2))
        diag = jnp.diagonal(cov_bar, axis1=-2, axis2=-1)
        return resid_bar, lower - diag[..., None] * jnp.eye(cov.shape[-1])

    jax_funcify.register(RunWhiten)(lambda op, **kwargs: forward)
    jax_funcify.register(RunWhitenGrad)(lambda op, **kwargs: backward)
    _jax_registered = True


_register_numba()

__all__ = ["RunWhiten", "RunWhitenGrad", "register_jax", "whiten", "whiten_numpy"]
