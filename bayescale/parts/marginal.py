"""Integrate each run's Gaussian parts out of the likelihood: a per-run marginal on ln loss.

Given the law, a run's offset, slope, drift walk and AR(1) residual are jointly Gaussian on
its ln losses, so the run's residual vector ``r = ln(loss) - ln(law)`` (n_r checkpoints)
has a closed-form covariance::

    Sigma = sum_k Z_k Z_k^T + N,

with ``Z_k`` (n_r x k) the loadings of a part's standard-normal latents on the run's rows
(:class:`~bayescale.parts.RunEffect`: ``sigma_run``, and the slope's ``sigma_slope
ln(D/D_total)``; :class:`~bayescale.parts.Drift`: the walk's lower-triangular increments)
and ``N`` the noise: ``diag(s^2)``, or ``s_i s_j exp(-|ln D_i - ln D_j| / ell)`` with
:class:`~bayescale.parts.AR1Residuals`.  The likelihood is then a multivariate normal per
run (multivariate Student-t with a Student-t noise part: one scale mixture per run, so an
outlying run rather than an outlying row is down-weighted), evaluated by a Cholesky factor
batched over runs padded to one length (one compiled kernel for all runs and its gradient:
:mod:`bayescale.parts.whitening`).  The padded length is read from the data, so one compiled
model serves ladders whose runs are longer or shorter.  The sampler no longer walks through
hundreds of latent increments; its posterior has the law's parameters and the parts' scales
only.

The pointwise log-likelihood of a row is its density given the earlier rows of its run
(the Cholesky factor's sequential decomposition), so rows still sum to the joint and
``ScalingFit.outliers`` still flags rows.  After sampling, the latents (``z_run``,
``z_slope``, ``z_walk``) are drawn from their Gaussian conditional given each posterior
draw and the data (Matheron's rule; :func:`draw_run_latents`), so predictions for fitted
runs continue from where each run is, exactly as in the latent form.

Not with a :class:`~bayescale.parts.Downstream` part: accuracy rows see their run's latent
offset and walk through a non-Gaussian link.

Example
-------
>>> from bayescale.model import load_model
>>> model = load_model("pythia_lambada").with_parts(MarginalRuns())  # doctest: +SKIP
>>> MarginalRuns().to_dict()
{'part': 'marginal_runs'}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .base import BuildContext, ModelError, Part
from .whitening import whiten

#: The parts whose latents the marginal integrates out (one of them must be present).
GAUSSIAN_PARTS = ("run_effect", "drift", "ar1_residuals")


@dataclass(frozen=True)
class MarginalRuns(Part):
    """Integrate each run's offset, slope, drift and AR(1) residual out of the likelihood.

    A model with this part fits the same generative model as without it (exactly with a
    normal noise part; with a Student-t noise one scale mixture per run instead of per row)
    by a per-run multivariate likelihood instead of sampled latents.  Needs at least one of
    ``run_effect``, ``drift``, ``ar1_residuals``; not with ``downstream``.
    """

    lookup_name = "marginal_runs"
    order = 70

    def check(self, model) -> None:
        """Require a Gaussian within-run part and refuse the downstream part."""
        if not any(model.part(name) is not None for name in GAUSSIAN_PARTS):
            raise ModelError(f"marginal_runs: nothing to integrate out; needs one of "
                             f"{list(GAUSSIAN_PARTS)}")
        if model.part("downstream") is not None:
            raise ModelError("marginal_runs: not with the downstream part (accuracy rows see "
                             "their run's latent offset and walk); drop one of the two")

    def variables(self, model) -> list[str]:
        """None: the part adds no parameter."""
        return []

    def observe(self, ctx: BuildContext) -> None:
        """The observed ``ln_loss``: per run, a multivariate normal or Student-t (last step)."""
        blocks = ctx.blocks
        assert blocks is not None  # build_model makes them for a model with this part
        noise = ctx.store.get("run_noise_covariance")
        if noise is None:
            scale = blocks.gather(ctx.sigma)
            noise = blocks.identity()[None] * (scale**2)[:, :, None]
        cov = noise + blocks.identity()[None] * (1.0 - blocks.mask_tensor)[:, :, None]
        covariances = ctx.store.get("run_covariances", {})
        for name, (z, _) in ctx.store.get("run_loadings", {}).items():
            cov = cov + (covariances[name] if name in covariances else outer(z))
        student = ctx.model.noise.likelihood == "student_t"
        params = [ctx.mu["obs"], cov] + ([ctx.noise["nu"]] if student else [])
        index, position = blocks.block, blocks.position

        def logp(value, mu, cov, *nu):
            return run_logp(value, mu, cov, blocks, nu[0] if nu else None)

        def random(mu, cov, *nu, rng=None, size=None):
            return run_random(mu, cov, index, position, nu[0] if nu else None, rng)

        signature = "(o),(r,l,l)" + (",()" if student else "") + "->(o)"
        pm.CustomDist("ln_loss", *params, logp=logp, random=random, signature=signature,
                      observed=ctx.ln_value, dims="obs")
        # what draw_run_latents needs after sampling, kept on the model it belongs to
        pm.modelcontext(None).bayescale_marginal = {
            "mu": ctx.mu["obs"], "noise": noise, "loadings": ctx.store.get("run_loadings", {}),
            "blocks": blocks, "student": student,
            "block_run": ctx.x["obs"]["run"][blocks.index[:, 0]]}


def outer(loadings):
    """``Z Z^T`` (R, L, L) of loadings (R, L, k); elementwise when k is 1 (no batched product)."""
    if loadings.type.shape[-1] == 1:
        return loadings * loadings.transpose(0, 2, 1)
    return loadings @ loadings.transpose(0, 2, 1)


# ============================================================================ run blocks
@dataclass
class RunBlocks:
    """Fitted rows arranged as runs padded to one length: row ``index[r, i]`` is the i-th of run r.

    ``index``, ``mask``: (R, L); ``block``, ``position``: (n_obs,), each row's run block and
    place in it.  Rows are sorted by run then tokens (a run's first row has ``prev < 0``);
    padding follows each run's last row, so it never conditions a real row.

    >>> b = RunBlocks.from_previous(np.array([-1, 0, 1, -1]))
    >>> b.index.tolist(), b.mask.tolist()
    ([[0, 1, 2], [3, 3, 3]], [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    """

    index: np.ndarray
    mask: np.ndarray
    block: np.ndarray
    position: np.ndarray
    index_tensor: Any = None
    mask_tensor: Any = None
    block_tensor: Any = None
    position_tensor: Any = None

    @classmethod
    def from_previous(cls, prev: np.ndarray) -> RunBlocks:
        """From the design's ``prev`` (index of each row's previous row in its run, -1 if first)."""
        first = np.flatnonzero(np.asarray(prev) < 0)
        ends = np.append(first[1:], len(prev))
        length = int(max(ends - first)) if len(first) else 0
        index = np.zeros((len(first), length), dtype=int)
        mask = np.zeros((len(first), length))
        block = np.zeros(len(prev), dtype=int)
        position = np.zeros(len(prev), dtype=int)
        for r, (a, b) in enumerate(zip(first, ends, strict=True)):
            index[r] = np.concatenate([np.arange(a, b), np.full(length - (b - a), b - 1)])
            mask[r, : b - a] = 1.0
            block[a:b] = r
            position[a:b] = np.arange(b - a)
        return cls(index, mask, block, position)

    @property
    def length(self) -> int:
        """L, the longest run's number of fitted rows."""
        return self.index.shape[1]

    def symbolic_length(self) -> Any:
        """L as a symbolic scalar (the mask's shape).

        No constant of the graph fixes L, so a compiled model serves runs of other lengths.
        """
        return self.mask_tensor.shape[1]

    def identity(self) -> Any:
        """The (L, L) identity matrix, symbolic in L."""
        return pt.eye(self.symbolic_length())

    def earlier(self) -> Any:
        """(L, L) booleans, ``i <= j`` (row i is not after row j), symbolic in L."""
        position = pt.arange(self.symbolic_length())
        return pt.le(position[:, None], position[None, :])

    def register(self) -> RunBlocks:
        """Enter ``index`` and ``mask`` as ``pm.Data`` of the model being built."""
        self.index_tensor = pm.Data("run_block_index", self.index)
        self.mask_tensor = pm.Data("run_block_mask", self.mask)
        self.block_tensor = pm.Data("run_block_of_row", self.block, dims="obs")
        self.position_tensor = pm.Data("run_block_position", self.position, dims="obs")
        return self

    def gather(self, values) -> Any:
        """Per-row ``values`` (obs,) or a scalar as (R, L), zero on padding."""
        values = pt.as_tensor(values)
        if values.ndim == 0:
            return values * self.mask_tensor
        return values[self.index_tensor] * self.mask_tensor

    def positions(self, values: np.ndarray) -> np.ndarray:
        """Per-row numpy ``values`` relative to the run's first row, as (R, L) (padding 0)."""
        values = np.asarray(values, dtype=float)
        return (values[self.index] - values[self.index[:, :1]]) * self.mask


# ============================================================================ likelihood
def run_logp(value, mu, cov, blocks: RunBlocks, nu=None):
    """Per-row log density of ln loss given the earlier rows of its run, (obs,).

    ``cov`` (R, L, L) is each run's covariance (identity on padding).  Row i of a run, with
    whitened residual ``w_i`` (the Cholesky factor's sequential decomposition), has density
    ``N(w_i; 0, 1) / L_ii``; with ``nu`` the multivariate Student-t's conditional, a
    Student-t with ``nu + i`` degrees of freedom and scale ``sqrt((nu + Q_i) / (nu + i))``
    (``Q_i`` the sum of the run's earlier ``w^2``).  The rows of a run sum to its joint
    density.
    """
    resid = blocks.gather(value - mu)
    white, log_diag = whiten(resid, cov)
    if nu is None:
        per_row = -0.5 * white**2 - log_diag - 0.5 * np.log(2 * np.pi)
    else:
        before = pt.cumsum(white**2, axis=1) - white**2
        dof = nu + pt.arange(blocks.symbolic_length())[None, :]
        scale2 = (nu + before) / dof
        per_row = (pt.gammaln((dof + 1) / 2) - pt.gammaln(dof / 2) - 0.5 * pt.log(dof * np.pi)
                   - (dof + 1) / 2 * pt.log1p(white**2 / (scale2 * dof))
                   - log_diag - 0.5 * pt.log(scale2))
    return per_row[blocks.block_tensor, blocks.position_tensor]


def run_random(mu, cov, block, position, nu=None, rng=None) -> np.ndarray:
    """A draw of ln loss (obs,) from the per-run marginal (for prior predictive checks)."""
    rng = rng if rng is not None else np.random.default_rng()
    chol = np.linalg.cholesky(cov)
    z = rng.standard_normal(cov.shape[:2])
    if nu is not None:
        z = z * np.sqrt(nu / rng.chisquare(nu, size=(cov.shape[0], 1)))
    resid = np.einsum("rij,rj->ri", chol, z)
    return mu + resid[block, position]


# ============================================================================ latents
def draw_run_latents(pm_model: pm.Model, idata, random_seed: int = 0, nu_name: str = "nu"):
    """Add ``z_run``/``z_slope``/``z_walk`` to ``idata.posterior``, drawn given the data.

    For each posterior draw and run: the latents u (standard normal a priori) and the
    residual ``r = Z u + e`` are jointly Gaussian, so ``u | r`` is drawn by Matheron's rule,
    ``u = u0 + Z^T Sigma^-1 (r - Z u0 - e0)`` with ``(u0, e0)`` a prior draw; with a
    Student-t noise part both are first scaled by the run's mixing variance drawn from its
    conditional, ``InvGamma((nu + n_r)/2, (nu + Q_r)/2)``.  A no-op for a model fitted in
    latent form.  In place; returns ``idata``.
    """
    graph = getattr(pm_model, "bayescale_marginal", None)
    if graph is None or not graph["loadings"]:
        return idata
    import xarray as xr

    blocks: RunBlocks = graph["blocks"]
    names = list(graph["loadings"])
    outputs = [graph["mu"], graph["noise"]] + [graph["loadings"][n][0] for n in names]
    inputs = list(pm_model.free_RVs)
    fn = pm.pytensorf.compile(inputs, outputs, on_unused_input="ignore")
    posterior = idata.posterior
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    values = {v.name: posterior[v.name].to_numpy().reshape(n_chain * n_draw,
                                                           *posterior[v.name].shape[2:])
              for v in inputs}
    ln_value = pm_model["ln_value"].get_value()
    student = nu_name in values and graph["student"]
    rng = np.random.default_rng(random_seed)
    n_obs = len(ln_value)
    draws = {n: np.zeros((n_chain * n_draw, n_obs if graph["loadings"][n][1] == "obs"
                          else len(pm_model.coords["run"]))) for n in names}
    mask = blocks.mask
    for s in range(n_chain * n_draw):
        mu, noise, *zs = fn(*[values[v.name][s] for v in inputs])
        resid = (ln_value - mu)[blocks.index] * mask
        loadings = np.concatenate(zs, axis=2)  # (R, L, K)
        cov = noise + np.einsum("rik,rjk->rij", loadings, loadings)
        cov = cov + np.eye(blocks.length)[None] * (1 - mask)[:, :, None]
        chol = np.linalg.cholesky(cov)
        u0 = rng.standard_normal(loadings.shape[::2])  # (R, K)
        e0 = np.einsum("rij,rj->ri", np.linalg.cholesky(noise + np.eye(blocks.length)[None]
                                                        * (1 - mask)[:, :, None]),
                       rng.standard_normal(resid.shape)) * mask
        if student:
            nu = float(values[nu_name][s])
            white = np.linalg.solve(chol, resid[..., None])[..., 0]
            quad = (white**2).sum(axis=1)
            n_rows = mask.sum(axis=1)
            lam = (nu + quad) / rng.chisquare(nu + n_rows)
            u0, e0 = u0 * np.sqrt(lam)[:, None], e0 * np.sqrt(lam)[:, None]
        gap = resid - np.einsum("rik,rk->ri", loadings, u0) - e0
        solved = np.linalg.solve(cov, gap[..., None])[..., 0]
        u = u0 + np.einsum("rik,ri->rk", loadings, solved)
        start = 0
        for n, z in zip(names, zs, strict=True):
            k = z.shape[2]
            part = u[:, start:start + k]
            start += k
            if graph["loadings"][n][1] == "obs":  # one latent per row: scatter to rows
                draws[n][s, blocks.index[mask > 0]] = part[:, :blocks.length][mask > 0]
            else:
                draws[n][s, graph["block_run"]] = part[:, 0]
    for n in names:
        dim = "obs" if graph["loadings"][n][1] == "obs" else "run"
        posterior[n] = xr.DataArray(draws[n].reshape(n_chain, n_draw, -1),
                                    dims=("chain", "draw", dim),
                                    coords={"chain": posterior.chain, "draw": posterior.draw,
                                            dim: list(pm_model.coords[dim])})
    return idata


__all__ = ["MarginalRuns", "RunBlocks", "draw_run_latents", "run_logp"]
