"""Compute-optimal allocation of a FLOP budget between parameters and tokens, per draw.

For ``L = E + A N^-alpha + B D^-beta`` under ``C = 6 N D`` the optimum is closed-form
(Hoffmann et al. 2022, eq. 4):

    N* = G (C/6)^(beta/(alpha+beta)),  D* = G^-1 (C/6)^(alpha/(alpha+beta)),
    G = (alpha A / (beta B))^(1/(alpha+beta)).

Applied to every posterior draw this gives posterior bands for N*, D* and L(N*, D*).
"""

from __future__ import annotations

import numpy as np

from .laws import FLOP_PER_PARAM_TOKEN


def optimal_allocation_draws(
    E: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: np.ndarray, beta: np.ndarray,
    compute: np.ndarray
) -> dict[str, np.ndarray]:
    """N*, D*, loss* for each draw (arrays of shape (S,)) and budget (shape (K,)).

    Returns arrays of shape (S, K): ``params`` (parameters), ``tokens`` and ``loss`` (nats).

    Example
    -------
    >>> import numpy as np
    >>> out = optimal_allocation_draws(*(np.array([v]) for v in (1.69, 406.4, 410.7, 0.34, 0.28)),
    ...                                compute=np.array([5.76e23]))
    >>> 2e10 < float(out["params"][0, 0]) < 6e10  # tens of billions of parameters
    True
    """
    E, A, B, alpha, beta = (np.asarray(x, dtype=float)[:, None] for x in (E, A, B, alpha, beta))
    c6 = np.asarray(compute, dtype=float)[None, :] / FLOP_PER_PARAM_TOKEN
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    n_opt = G * c6 ** (beta / (alpha + beta))
    d_opt = c6 / n_opt
    loss = E + A * n_opt ** (-alpha) + B * d_opt ** (-beta)
    return {"params": n_opt, "tokens": d_opt, "loss": loss}
