"""The numeric design of a fit: the arrays the model sees, one entry per row.

Everything here is numpy, computed once before the PyMC model is built (the arrays enter
as ``pm.Data``) and again, identically, at prediction time.  Parts that need more (a
schedule's effective tokens, a walk's clock) compute it from these in their own module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .runs import Scale


def design(rows: pd.DataFrame, scale: Scale, families: list[str], runs: list[str] | None = None,
           schedule_inputs: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Arrays for the model or for prediction, one entry per row.

    Returns
    -------
    dict
        ``n`` (N/N0), ``d`` (effective tokens / D0: ``schedule_inputs["d_eff"]`` when a
        schedule term gives them, else tokens), ``u`` (un-annealed part of the run, 0
        without a schedule term), ``family`` (index into ``families``, -1 for an unseen
        family), ``run`` (index into ``runs``, -1 for none), ``prev`` (index of the previous
        row of the same run, -1 for the first), ``gap`` (ln tokens since that row),
        ``fraction`` (tokens / total tokens) and ``ln_fraction`` (its log, 0 at the run's end).

    Example
    -------
    >>> rows = pd.DataFrame({"params": [1e8, 1e8], "tokens": [1e9, 2e9], "total_tokens": 2e9,
    ...                      "family": "f", "run": "r"})
    >>> x = design(rows, Scale(1e8, 1e9), ["f"], ["r"])
    >>> x["prev"].tolist(), [round(g, 3) for g in x["gap"]]
    ([-1, 0], [0.0, 0.693])
    """
    tokens = rows["tokens"].to_numpy(dtype=float)
    total = rows["total_tokens"].to_numpy(dtype=float) if "total_tokens" in rows else tokens
    d_eff = tokens if schedule_inputs is None else schedule_inputs["d_eff"]
    u = np.zeros(len(rows)) if schedule_inputs is None else schedule_inputs["u"]
    fam_lookup = {f: i for i, f in enumerate(families)}
    fam_names = (rows["family"].astype(str) if "family" in rows
                 else pd.Series(families[:1] * len(rows)))
    fam = np.array([fam_lookup.get(f, -1) for f in fam_names], dtype=int)
    run_lookup = {r: i for i, r in enumerate(runs or [])}
    run_names = rows["run"].astype(str).tolist() if "run" in rows else [""] * len(rows)
    run_idx = np.array([run_lookup.get(r, -1) for r in run_names], dtype=int)
    prev = np.full(len(rows), -1, dtype=int)
    gap = np.zeros(len(rows))
    for i in range(1, len(rows)):
        if run_idx[i] >= 0 and run_names[i] == run_names[i - 1]:
            prev[i] = i - 1
            gap[i] = np.log(tokens[i] / tokens[i - 1])
    fraction = np.clip(tokens / total, 1e-12, 1.0)
    return {
        "n": rows["params"].to_numpy(dtype=float) / scale.N0,
        "d": np.asarray(d_eff, dtype=float) / scale.D0,
        "u": np.asarray(u, dtype=float),
        "family": fam,
        "run": run_idx,
        "prev": prev,
        "gap": gap,
        "fraction": fraction,
        "ln_fraction": np.log(fraction),
    }


def latest_row_of_run(rows: pd.DataFrame, runs, tokens) -> np.ndarray:
    """Index into ``rows`` of each query's run's latest row at or before the query's ``tokens``.

    ``rows`` are fitted rows, sorted by run then tokens.  The run's first row if the query
    precedes them all; shape (T,); -1 where the run has no fitted rows.

    Example: the walk of a fitted run at a checkpoint is its walk at
    ``latest_row_of_run(rows, ["pythia-70m"], [3e10])``.
    """
    rows = rows.reset_index(drop=True)
    by_run = {str(run): group.index.to_numpy()
              for run, group in rows.groupby(rows["run"].astype(str), sort=False)}
    fitted_tokens = rows["tokens"].to_numpy(dtype=float)
    out = np.full(len(tokens), -1, dtype=int)
    for t, (run, token) in enumerate(zip(runs, np.asarray(tokens, dtype=float), strict=False)):
        own = by_run.get(str(run))
        if own is None:
            continue
        before = own[fitted_tokens[own] <= token]
        out[t] = int(before[-1]) if len(before) else int(own[0])
    return out
