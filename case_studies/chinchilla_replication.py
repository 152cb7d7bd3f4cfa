"""Case study: the Chinchilla scaling law, replicated as a posterior.

Fits ``L = E + A N^-alpha + B D^-beta`` (Student-t likelihood on ln loss, the shipped
``chinchilla`` spec) to the 245 final losses of Hoffmann et al. (2022), Figure 4, as
digitised by Besiroglu et al. (2024, Epoch AI), with nutpie's NUTS (4 chains x 1000
draws after 1000 tuning steps), and compares the posterior with both published
point fits:

* Besiroglu et al. 2024 (Epoch), Approach 3 refit:  E = 1.82, A = 482.01, B = 2085.43,
  alpha = 0.3478, beta = 0.3658 (Huber loss, 5 high-loss runs excluded);
* Hoffmann et al. 2022 (Chinchilla), Approach 3:    E = 1.69, A = 406.4, B = 410.7,
  alpha = 0.34, beta = 0.28.

Epoch excluded the 5 highest-loss runs (2-7B parameters trained on well under one
token per parameter, near 1e19 FLOP).  Here all 245 runs are kept by default and the
heavy-tailed likelihood down-weights them (the script prints each one's weight);
``--exclude-outliers`` drops them as Epoch did.

Outputs (in ``--out``, default ``case_studies/out/chinchilla``): the comparison table
(``<stem>_posterior.csv``), the compute-optimal allocation at 5.76e23 FLOP
(``<stem>_allocation.csv``), the fit (``<stem>_fit.nc``, reload with
``bayescale.load_fit``), a JSON summary, and an HTML report when ``bayescale.report``
is available.  ``<stem>`` is ``chinchilla`` (or ``chinchilla_exclude_outliers``).

With ``--auto``, a hold-out beside the replication: the runs in the top 20% of compute
(``params x tokens``) are predicted from the rest, once with the ``chinchilla`` preset (the
replication's hand-picked model) and once with ``bayescale.fit(rows)`` and no model named
(``model="auto"``: the final-loss laws compared by a backtest inside the 80%, the winner refitted
with the model-discrepancy term its backtest estimated).  Both are printed side by side
(median absolute relative error, 90% coverage, median band width) with the model ``auto``
chose and why, and written to ``<stem>_auto.csv``.  Nothing in either choice saw the held-out
runs: the preset is the law of the paper being replicated, and ``auto`` chose inside the 80%.

Run::

    python case_studies/chinchilla_replication.py            # full run, ~1 min on 2 cores
    python case_studies/chinchilla_replication.py --small    # smoke run
    python case_studies/chinchilla_replication.py --exclude-outliers
    python case_studies/chinchilla_replication.py --auto     # plus the hold-out (+3 min)
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    add_published,
    base_parser,
    fmt,
    posterior_table,
    print_table,
    require_data,
    sampler_settings,
    write_json,
    write_report_if_available,
)

PARAMETERS = ["E", "A", "B", "alpha", "beta"]
HDI_PROB = 0.9

#: Besiroglu et al. (2024), "Chinchilla Scaling: A replication attempt", their Approach-3 fit.
EPOCH_2024 = {"E": 1.82, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
#: Hoffmann et al. (2022), "Training Compute-Optimal Large Language Models", Approach 3.
HOFFMANN_2022 = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}

#: Chinchilla's own training budget and allocation (70B parameters, 1.4T tokens).
CHINCHILLA_FLOP = 5.76e23
CHINCHILLA_PARAMS = 70e9
CHINCHILLA_TOKENS = 1.4e12

N_OUTLIERS = 5  # the runs Besiroglu et al. excluded: the 5 highest losses
#: ``--auto``: the share of runs, by compute, held out and predicted from the rest.
HOLDOUT_QUANTILE = 0.8


def parse_args(argv=None):
    """The common case-study options plus ``--exclude-outliers``."""
    parser = base_parser(__doc__.split("\n\n")[0], "case_studies/out/chinchilla")
    parser.add_argument(
        "--exclude-outliers",
        action="store_true",
        help=f"drop the {N_OUTLIERS} high-loss runs Epoch excluded (default: keep them; the "
             "Student-t likelihood down-weights them)",
    )
    parser.add_argument(
        "--auto",
        action="store_true",
        help="also predict the top 20%% of compute from the rest, with the chinchilla preset and "
             "with bayescale.fit(rows) and no model named (model='auto'), side by side",
    )
    return parser.parse_args(argv)


def holdout_comparison(runs: pd.DataFrame, settings: dict, seed: int,
                       progress: bool) -> tuple[pd.DataFrame, str]:
    """The top 20% of compute predicted from the rest by the preset and by ``model="auto"``.

    Returns one row per model (``model``, ``fitted``, ``targets``, ``median_abs_error``,
    ``covered_90``, ``median_width``, ``converged``, ``seconds``) and the auto choice's message.
    """
    import bayescale

    compute = runs["params"] * runs["tokens"]
    above = compute > compute.quantile(HOLDOUT_QUANTILE)
    train, test = runs[~above].reset_index(drop=True), runs[above].reset_index(drop=True)
    y = test["value"].to_numpy(dtype=float)
    rows, message = [], ""
    for label, model in (("chinchilla (preset)", "chinchilla"), ("auto", "auto")):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
            warnings.filterwarnings("ignore", message=r"predict: .* beyond the ladder")
            fit = bayescale.fit(train, model, random_seed=seed, progressbar=progress, **settings)
            pred = fit.predict(test[["params", "tokens"]], hdi_prob=HDI_PROB)
        if fit.model_choice is not None:
            message = fit.model_choice.message()
        lower, upper = pred["lower"].to_numpy(), pred["upper"].to_numpy()
        rows.append({"model": label, "fitted": fit.model.name, "targets": len(y),
                     "median_abs_error": float(np.median(np.abs(pred["median"].to_numpy() / y
                                                                - 1))),
                     "covered_90": float(np.mean((lower <= y) & (y <= upper))),
                     "median_width": float(np.median((upper - lower) / y)),
                     "converged": bool(fit.diagnostics().passed),
                     "seconds": time.perf_counter() - start})
    return pd.DataFrame(rows), message


def outlier_weights(fit, runs: pd.DataFrame) -> pd.DataFrame:
    """Each run's posterior-mean Student-t weight nu/(nu+z^2), z = ln-residual / sigma.

    This is the t likelihood's IRLS weight, (nu+1)/(nu+z^2), divided by that of a run
    lying exactly on the law: 1 = full weight, near 0 = ignored.
    """
    if "nu" not in fit.idata.posterior:  # a normal likelihood weighs every run equally
        return pd.DataFrame()
    mu = fit.predict_draws(runs[["params", "tokens"]], kind="mean")
    mu = mu.stack(sample=("chain", "draw")).transpose("sample", "target").to_numpy()
    z = ((np.log(runs["value"].to_numpy())[None, :] - np.log(mu))
         / fit.posterior_draws("sigma")[:, None])
    nu = fit.posterior_draws("nu")[:, None]
    weight = (nu / (nu + z**2)).mean(axis=0)
    return pd.DataFrame(
        {
            "run": runs["run"].to_numpy(),
            "params": runs["params"].to_numpy(),
            "tokens": runs["tokens"].to_numpy(),
            "loss": runs["value"].to_numpy(),
            "residual_sigmas": np.median(z, axis=0),
            "weight": weight,
        }
    )


def main(argv=None) -> int:
    """Fit, print the tables and write the outputs under ``--out``; exit status 0."""
    args = parse_args(argv)
    import bayescale
    from bayescale.allocation import optimal_allocation_draws
    from bayescale.datasets import load_chinchilla

    root = require_data("chinchilla_epoch", args.data)
    runs = load_chinchilla(root, exclude_outliers=args.exclude_outliers)
    all_runs = load_chinchilla(root) if args.exclude_outliers else runs
    outlier_ids = set(all_runs.loc[all_runs["value"].nlargest(N_OUTLIERS).index, "run"])
    settings = sampler_settings(args.small)
    stem = "chinchilla_exclude_outliers" if args.exclude_outliers else "chinchilla"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    print(f"Chinchilla replication: {len(runs)} runs from {root / 'chinchilla_epoch'}")
    print(
        f"nutpie NUTS, {settings['chains']} chains x {settings['draws']} draws ({settings['tune']} "
        "tuning)"
        + ("  [--small smoke run]" if args.small else "")
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        # the verdict is printed below
        warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
        fit = bayescale.fit(
            runs, "chinchilla", sampler="nutpie", random_seed=args.seed, progressbar=args.progress,
            **settings
        )
    wall = time.perf_counter() - start
    diag = fit.diagnostics()

    # ---------------------------------------------------------------- the comparison table
    table = posterior_table(fit, PARAMETERS, HDI_PROB)
    table = add_published(table, "epoch_2024", EPOCH_2024, HDI_PROB)
    table = add_published(table, "hoffmann_2022", HOFFMANN_2022, HDI_PROB)

    weights = outlier_weights(fit, runs)
    kept = sorted(outlier_ids & set(runs["run"]))
    if args.exclude_outliers:
        handling = (f"excluded: Epoch's {N_OUTLIERS} high-loss runs dropped ({len(runs)} runs "
                    "fitted)")
    elif not weights.empty:
        w_out = weights.loc[weights["run"].isin(kept), "weight"]
        w_rest = weights.loc[~weights["run"].isin(kept), "weight"]
        handling = (
            f"kept ({len(runs)} runs): Student-t likelihood (nu median "
            f"{np.median(fit.posterior_draws('nu')):.2f}) gives Epoch's {len(kept)} outliers mean "
            f"weight {w_out.mean():.3f} vs median {w_rest.median():.2f} for the other runs; "
            "--exclude-outliers drops them"
        )
    else:
        handling = f"kept ({len(runs)} runs), no robust likelihood; --exclude-outliers drops them"
    table["outliers"] = handling
    table.attrs["outliers"] = handling

    print_table(
        table.drop(columns="outliers"),
        f"Posterior (mean, median, {HDI_PROB:.0%} HDI) beside the published fits "
        "(epoch_2024 = Besiroglu et al. 2024; hoffmann_2022 = Hoffmann et al. 2022, Approach 3)",
    )
    print(f"Outliers: {handling}")
    if not args.exclude_outliers and not weights.empty and kept:
        print_table(
            weights[weights["run"].isin(kept)].sort_values("loss", ascending=False),
            "Epoch's excluded runs in this fit (residual in units of sigma, posterior median; "
            "weight 1 = a run on the law)",
        )

    # ---------------------------------------------------------------- diagnostics
    print(f"\nDiagnostics: {diag.message()}")
    print(
        f"  max R-hat {diag.max_rhat:.4f}, min bulk ESS {diag.min_ess_bulk:.0f}, min tail ESS "
        f"{diag.min_ess_tail:.0f}, {diag.divergences} divergences in {diag.n_draws} draws; fit "
        f"took {wall:.1f} s (including compilation)"
    )

    # ---------------------------------------------------------------- compute-optimal allocation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
        alloc = fit.optimal_allocation(CHINCHILLA_FLOP, hdi_prob=HDI_PROB)
    for label, values in (("epoch_2024", EPOCH_2024), ("hoffmann_2022", HOFFMANN_2022)):
        point = optimal_allocation_draws(
            *(np.array([values[k]]) for k in PARAMETERS), compute=np.array([CHINCHILLA_FLOP])
        )
        alloc[label] = alloc["quantity"].map({q: float(v[0, 0]) for q, v in point.items()})
    alloc["chinchilla_trained"] = alloc["quantity"].map({"params": CHINCHILLA_PARAMS,
                                                         "tokens": CHINCHILLA_TOKENS})
    print_table(
        alloc,
        f"Compute-optimal allocation at C = {CHINCHILLA_FLOP:.3g} FLOP (posterior mean, median, "
        f"{HDI_PROB:.0%} band; published fits' point values; Chinchilla as trained)",
    )
    n_row = alloc.set_index("quantity").loc["params"]
    d_row = alloc.set_index("quantity").loc["tokens"]
    print(
        f"  N* = {fmt(n_row['median'] / 1e9, 3)}B params [{fmt(n_row['lower'] / 1e9, 3)}, "
        f"{fmt(n_row['upper'] / 1e9, 3)}], D* = {fmt(d_row['median'] / 1e12, 3)}T tokens "
        f"[{fmt(d_row['lower'] / 1e12, 3)}, {fmt(d_row['upper'] / 1e12, 3)}]; Chinchilla was "
        "trained with 70B and 1.4T"
    )

    # ---------------------------------------------------------------- the hold-out (--auto)
    files = {
        "table": out / f"{stem}_posterior.csv",
        "allocation": out / f"{stem}_allocation.csv",
        "fit": out / f"{stem}_fit.nc",
        "summary": out / f"{stem}_summary.json",
    }
    auto_summary = None
    if args.auto:
        holdout, choice = holdout_comparison(runs, settings, args.seed, args.progress)
        print_table(holdout, f"Hold-out: the top {1 - HOLDOUT_QUANTILE:.0%} of compute "
                    "predicted from the rest, the preset beside model='auto' (relative error "
                    f"and width of the {HDI_PROB:.0%} band)")
        print(f"  {choice}")
        files["auto"] = out / f"{stem}_auto.csv"
        holdout.to_csv(files["auto"], index=False)
        auto_summary = {"choice": choice, "rows": holdout.to_dict("records")}

    # ---------------------------------------------------------------- outputs
    table.to_csv(files["table"], index=False)
    alloc.to_csv(files["allocation"], index=False)
    fit.save(files["fit"])
    if args.no_report:
        print("HTML report skipped (--no-report)")
    else:
        report = write_report_if_available(
            fit,
            out / f"{stem}_report.html",
            title="Chinchilla replication (Epoch's extraction of Hoffmann et al. 2022)",
            targets={"params": [CHINCHILLA_PARAMS], "tokens": [CHINCHILLA_TOKENS]},
            hdi_prob=HDI_PROB,
        )
        if report is not None:
            files["report"] = report
    write_json(
        files["summary"],
        {
            "case_study": "chinchilla_replication",
            "n_runs": len(runs),
            "exclude_outliers": args.exclude_outliers,
            "outliers": handling,
            "sampler": {"sampler": "nutpie", "random_seed": args.seed, **settings},
            "small": args.small,
            "fit_wall_seconds": wall,
            "diagnostics": diag.to_dict(),
            "verdict": diag.message(),
            "hdi_prob": HDI_PROB,
            "epoch_in_hdi": dict(zip(table["parameter"], table["epoch_2024_in_hdi90"].astype(bool),
                                     strict=True)),
            "hoffmann_in_hdi": dict(zip(table["parameter"],
                                        table["hoffmann_2022_in_hdi90"].astype(bool), strict=True)),
            "holdout": auto_summary,
            "files": {k: str(v) for k, v in files.items()},
        },
    )
    print("\nWrote " + ", ".join(str(p) for p in files.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
