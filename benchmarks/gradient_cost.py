"""Cost of one log-density + gradient evaluation, as nutpie compiles it, side by side.

For one ladder and preset: the latent form, the marginal form with PyTensor's batched
``cholesky`` + ``solve_triangular`` (``Blockwise``: one LAPACK call per run), and the marginal
form with :class:`bayescale.parts.whitening.RunWhiten` (one compiled kernel for all runs).
Each is compiled by nutpie's own function builder (numba) and its compiled function is called
directly, so the figures are the sampler's cost per leapfrog step, without Python's call
overhead (about 2 microseconds, measured by an empty function).

    python benchmarks/gradient_cost.py                      # Pythia <= 1.4B, pythia_lambada
    python benchmarks/gradient_cost.py --preset checkpoints_kaplan --evals 5000
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings

import numpy as np

#: Pythia sizes the case study fits (scenario 1).
PYTHIA_FIT_SIZES = ("70m", "160m", "410m", "1b", "1.4b")


def blockwise_whiten(resid, cov):
    """The marginal form's whitening with PyTensor's own batched ops (the stop-28 graph)."""
    import pytensor.tensor as pt
    from pytensor.tensor.slinalg import cholesky, solve_triangular

    chol = cholesky(cov, lower=True)
    return (solve_triangular(chol, resid[..., None], lower=True)[..., 0],
            pt.log(pt.diagonal(chol, axis1=-2, axis2=-1)))


def time_form(ready, form: str, evals: int) -> dict:
    """Compile ``ready``'s model in ``form`` and time its compiled logp + gradient."""
    from nutpie.compile_pymc import _make_functions

    import bayescale.parts.marginal as marginal

    fused = marginal.whiten
    if form == "latent":
        ready = dataclasses.replace(ready, model=ready.model.with_parts(drop=("marginal_runs",)))
    marginal.whiten = blockwise_whiten if form == "marginal (Blockwise)" else fused
    try:
        pm_model = ready.build()
        start = time.perf_counter()
        n_dim, _, logp_fn, *_ = _make_functions(
            pm_model, mode="NUMBA", compute_grad=True, join_expanded=True,
            pymc_initial_point_fn=lambda seed: pm_model.initial_point())
    finally:
        marginal.whiten = fused
    fn = logp_fn.vm.jit_fn
    shared = [np.asarray(v.get_value()) for v in logp_fn.get_shared()]
    point = np.random.default_rng(0).normal(size=n_dim) * 0.1
    fn(point, *shared)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(evals):
        fn(point, *shared)
    return {"form": form, "dim": n_dim, "compile_s": compile_s,
            "us": (time.perf_counter() - start) / evals * 1e6}


def main(argv=None) -> int:
    """Print the table: form, parameters, compile seconds, microseconds per evaluation, ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="pythia_lambada")
    parser.add_argument("--evals", type=int, default=20000)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    from bayescale.datasets import load_pythia
    from bayescale.fitting import prepare

    runs = load_pythia(tasks=None)
    runs = runs[runs["size"].isin(PYTHIA_FIT_SIZES)].reset_index(drop=True)
    ready = prepare(runs, args.preset)
    if ready.model.part("marginal_runs") is None:
        from bayescale.parts import MarginalRuns

        ready = dataclasses.replace(ready, model=ready.model.with_parts(MarginalRuns()))
    rows = [time_form(ready, form, args.evals)
            for form in ("latent", "marginal (Blockwise)", "marginal (RunWhiten)")]
    base = rows[0]["us"]
    print(f"{args.preset} on Pythia <= 1.4B ({len(ready.rows)} rows, "
          f"{ready.rows['run'].nunique()} runs), {args.evals} evaluations each")
    print(f"{'form':<22} {'dim':>4} {'compile s':>10} {'us/eval':>8} {'x latent':>9}")
    for row in rows:
        print(f"{row['form']:<22} {row['dim']:>4} {row['compile_s']:>10.1f} {row['us']:>8.1f} "
              f"{row['us'] / base:>9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
