"""The batched Cholesky whitening Op (``bayescale.parts.whitening``) against PyTensor's own ops.

Values and gradients equal those of ``cholesky`` + ``solve_triangular`` (batched by
``Blockwise``) with the Python/C and numba linkers, finite differences agree with the
analytic gradient, a covariance that is not positive definite gives NaN, and the JAX
implementation (optional extra) agrees with the numba kernel.
"""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.tensor.slinalg import cholesky, solve_triangular

from bayescale.parts.whitening import register_jax, whiten, whiten_numpy


@pytest.fixture(scope="module")
def problem():
    """Four runs of six rows: SPD covariances, residuals and arbitrary output weights."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 6, 6))
    cov = a @ a.transpose(0, 2, 1) + 6 * np.eye(6)
    resid, w_weight, d_weight = (rng.normal(size=(4, 6)) for _ in range(3))
    return resid, cov, w_weight, d_weight


def _graphs(w_weight, d_weight):
    resid, cov = pt.matrix("resid"), pt.tensor3("cov")
    white, log_diag = whiten(resid, cov)
    chol = cholesky(cov, lower=True)
    white_ref = solve_triangular(chol, resid[..., None], lower=True)[..., 0]
    log_diag_ref = pt.log(pt.diagonal(chol, axis1=-2, axis2=-1))
    outs = []
    for w, d in ((white, log_diag), (white_ref, log_diag_ref)):
        cost = (w * w_weight).sum() + (d * d_weight).sum()
        outs.append([w, d, *pytensor.grad(cost, [resid, cov])])
    return [resid, cov], outs


@pytest.mark.parametrize("mode", ["FAST_RUN", "NUMBA"])
def test_values_and_gradients_equal_pytensors_ops(problem, mode):
    resid, cov, w_weight, d_weight = problem
    inputs, (ours, reference) = _graphs(w_weight, d_weight)
    got = pytensor.function(inputs, ours, mode=mode)(resid, cov)
    # the reference with the C linker (numba takes ~30 s to compile Blockwise's gradient)
    want = pytensor.function(inputs, reference, mode="FAST_RUN")(resid, cov)
    for name, a, b in zip(["white", "log_diag", "resid_bar", "cov_bar"], got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=name)
    # the factor reads the lower triangle only, so its gradient is lower-triangular
    assert np.all(np.triu(got[3], k=1) == 0.0)


def test_gradient_matches_finite_differences(problem):
    resid, cov, w_weight, d_weight = problem

    def cost(r, c):
        white, log_diag = whiten(r, c)
        return (white * w_weight).sum() + (log_diag * d_weight).sum()

    pytensor.gradient.verify_grad(cost, [resid, cov], rng=np.random.default_rng(1))


def test_one_output_alone_is_differentiable(problem):
    resid, cov, _, _ = problem
    r, c = pt.matrix(), pt.tensor3()
    grad = pytensor.grad(whiten(r, c)[1].sum(), c)  # log_diag only: white is disconnected
    value = pytensor.function([r, c], grad)(resid, cov)
    # d sum(ln diag L) / d Sigma = Sigma^-1 / 2 (symmetric), in lower-triangular form
    inv = np.linalg.inv(cov)
    expected = np.tril(inv) - 0.5 * np.eye(6) * inv
    np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-12)


def test_whitened_residuals_are_standard_under_the_covariance():
    rng = np.random.default_rng(3)
    cov = np.array([[[2.0, 0.8], [0.8, 1.0]]])
    draws = rng.multivariate_normal([0, 0], cov[0], size=20000)
    white, log_diag = whiten_numpy(draws, np.repeat(cov, len(draws), axis=0))
    np.testing.assert_allclose(np.cov(white.T), np.eye(2), atol=0.03)
    assert np.isclose(2 * log_diag[0].sum(), np.log(np.linalg.det(cov[0])))


def test_not_positive_definite_gives_nan_for_that_run_only(problem):
    resid, cov, _, _ = problem
    bad = cov.copy()
    bad[1] = -np.eye(6)
    white, log_diag = whiten_numpy(resid, bad)
    assert np.isnan(white[1]).all() and np.isnan(log_diag[1]).all()
    assert np.isfinite(white[[0, 2, 3]]).all()


def test_jax_implementation_agrees_with_numba(problem):
    pytest.importorskip("jax", reason="the JAX backend is an optional extra: pip install '.[jax]'")
    import jax

    register_jax()
    resid, cov, w_weight, d_weight = problem
    inputs, (ours, _) = _graphs(w_weight, d_weight)
    want = pytensor.function(inputs, ours, mode="NUMBA")(resid, cov)
    with jax.enable_x64(True):
        got = pytensor.function(inputs, ours, mode="JAX")(resid, cov)
    for name, a, b in zip(["white", "log_diag", "resid_bar", "cov_bar"], got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-8, atol=1e-10, err_msg=name)
