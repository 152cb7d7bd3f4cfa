"""Simulation-based calibration (Talts et al. 2018) of the shipped model presets.

For one preset and a small ladder design: draw every free parameter from the preset's
prior, simulate the observed rows from the preset's own likelihood (loss rows in order
along each run, so AR(1) residuals and data-centred links are simulated as the model
conditions on them), fit the simulated table with :func:`bayescale.fit`, and rank each
watched parameter's true value among ``L`` thinned posterior draws.  If the inference is
right, every rank is uniform on ``0..L``.

The test: a chi-square test of each rank histogram against uniform (``bins`` equal bins of
ranks), at family-wise level 0.01 across the preset's rank statistics (Bonferroni).

Run it::

    python benchmarks/sbc.py --replicates 100 --out sbc_out            # every preset
    python benchmarks/sbc.py chinchilla --replicates 20 --out sbc_out

It writes ``<out>/sbc_<preset>.csv`` (one row per replicate and statistic),
``<out>/sbc_<preset>.png`` (rank histograms with a 99% band) and prints a summary.

Why not ``simuk`` (ArviZ's SBC package): simuk 0.2 recompiles the PyMC model and samples
with PyMC's sampler for every replicate (20-40 s of compilation each for these models, where
nutpie reuses one compiled model with new data), keeps every draw without thinning (our
chains are autocorrelated, which bends rank histograms), and needs ``arviz_base`` next to
the ArviZ 0.23 the package uses.
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
from pytensor.graph.replace import clone_replace
from scipy import stats

import bayescale
from bayescale.fitting import Prepared, prepare
from bayescale.simulate import Task

#: Family-wise level of the uniformity test across one preset's rank statistics.
LEVEL = 0.01


# --------------------------------------------------------------------------- designs
def _wsd_design() -> pd.DataFrame:
    """Three sizes, two warmup-stable-decay runs each (decay from 60% and 80% of the run)."""
    rows = []
    for params in (3e7, 1e8, 3e8):
        total = 20.0 * params
        for decay_from in (0.6, 0.8):
            fractions = np.linspace(0.05, 1.0, 12)
            lr = np.where(fractions < decay_from, 1.0,
                          1.0 - 0.9 * (fractions - decay_from) / (1.0 - decay_from)) * 3e-4
            for f, rate in zip(fractions, lr, strict=True):
                rows.append({"family": f"decay{decay_from:g}",
                             "run": f"N{params:g}-decay{decay_from:g}",
                             "params": params, "tokens": f * total, "total_tokens": total,
                             "lr": rate,
                             "value": 3.0})
    return pd.DataFrame(rows)


def preset_design(preset: str) -> pd.DataFrame:
    """A small ladder of the shape ``preset`` fits (its values are replaced by simulations).

    Final losses: 4 sizes x 3 token multipliers.  Checkpoint presets: 2 families x 3 sizes x
    2 seeds x 6 checkpoints under a cosine schedule.  Downstream presets add two tasks: at
    every row of a final-loss design, at the last two checkpoints of every run of a
    checkpoint design (as real ladders evaluate tasks less often than they log the loss; it
    also halves the cost of a replicate, about 25 s on 2 cores).
    ``multi_power``: three sizes x two warmup-stable-decay runs x 12 rows.
    """
    from bayescale.schedules import Schedule

    if preset == "multi_power":
        return _wsd_design()
    model = bayescale.load_model(preset)
    tasks = None
    if model.part("downstream") is not None:
        names = getattr(model.part("downstream"), "tasks", None)
        if names:
            tasks = [Task(name=n.removeprefix("acc:"), n_items=500) for n in names]
        else:
            tasks = [Task(name="a", n_items=500), Task(name="b", n_items=500, chance=0.5)]
    sizes = (5e7, 1.5e8, 4.5e8, 1.3e9)
    if model.part("checkpoints") is None:
        runs, _ = bayescale.simulate_ladder(seed=0, sizes=sizes, token_multipliers=(10, 20, 40),
                                            tasks=tasks)
    else:
        runs, _ = bayescale.simulate_ladder(seed=0, sizes=sizes[:3], token_multipliers=(20,),
                                            families=2, seeds=2,
                                            checkpoints=6, schedule=Schedule("cosine"), tasks=tasks)
        if tasks:
            last_two = runs.groupby("run")["tokens"].transform(
                lambda t: t >= np.sort(t.unique())[-2])
            runs = runs[(runs["metric"] == "loss") | last_two].reset_index(drop=True)
    return runs


# --------------------------------------------------------------------------- simulation
@dataclass
class PriorSimulator:
    """Draws (parameters, observed table) pairs from a preset's prior and likelihood.

    Built once per preset: a compiled function from the free parameters (and the current
    ln loss of every row, which AR(1) residuals and data-centred links condition on) to the
    parameters of each observed variable's distribution.
    """

    prepared: Prepared
    pm_model: pm.Model = field(init=False)
    free: list = field(init=False)

    def __post_init__(self) -> None:
        self.pm_model = self.prepared.build()
        self.free = list(self.pm_model.free_RVs)
        observed = list(self.pm_model.observed_RVs)
        self.observed = observed
        params = [list(rv.owner.op.dist_params(rv.owner)) for rv in observed]
        self.n_params = [len(p) for p in params]
        inputs = {rv: rv.type() for rv in self.free}
        ln_value = self.pm_model["ln_value"]
        ln_input = ln_value.type()
        outputs = clone_replace([p for ps in params for p in ps],
                                replace={**inputs, ln_value: ln_input})
        self.fn = pytensor.function([*inputs.values(), ln_input], outputs, on_unused_input="ignore")

    def prior_draws(self, n: int, seed: int) -> dict[str, np.ndarray]:
        """``n`` joint draws of every free variable from the prior, arrays of shape (n, ...)."""
        idata = pm.sample_prior_predictive(draws=n, model=self.pm_model,
                                           var_names=[v.name for v in self.free], random_seed=seed)
        return {v.name: idata.prior[v.name].isel(chain=0).to_numpy() for v in self.free}

    def simulate(self, draw: dict[str, np.ndarray], rng: np.random.Generator) -> pd.DataFrame:
        """One simulated table: the prepared rows with simulated values."""
        rows, acc_rows = self.prepared.rows, self.prepared.acc_rows
        values = [draw[v.name] for v in self.free]
        depth = rows.groupby("run", sort=False).cumcount().to_numpy()
        ln_loss = np.zeros(len(rows))
        loss_at = [rv.name for rv in self.observed].index("ln_loss")
        for k in range(int(depth.max()) + 1):
            # along each run: a row conditions on the rows before it
            params = self._params(values, ln_loss)[loss_at]
            new = self.observed[loss_at].owner.op.rng_fn(rng, *params, None)
            ln_loss[depth == k] = np.asarray(new)[depth == k]
        table = rows.assign(value=np.exp(ln_loss))
        if acc_rows is None:
            return table
        acc_at = [rv.name for rv in self.observed].index("acc")
        params = self._params(values, ln_loss)[acc_at]
        hits = np.asarray(self.observed[acc_at].owner.op.rng_fn(rng, *params, None), dtype=float)
        acc_values = (hits / acc_rows["n_items"].to_numpy(dtype=float)
                      if acc_rows["n_items"].notna().all() else hits)
        return pd.concat([table, acc_rows.assign(value=acc_values)], ignore_index=True)

    def _params(self, values: list[np.ndarray], ln_loss: np.ndarray) -> list[list[np.ndarray]]:
        flat = self.fn(*values, ln_loss)
        out, i = [], 0
        for n in self.n_params:
            out.append(flat[i:i + n])
            i += n
        return out


# --------------------------------------------------------------------------- ranks
def rank_statistics(posterior, truth: dict[str, np.ndarray], names: list[str],
                    thin_to: int) -> dict[str, int]:
    """Rank of each true value among ``thin_to`` draws thinned evenly from each chain.

    Every element of a vector parameter is ranked: ``{"alpha": 37, "b[1]": 80, ...}``, each
    in ``0..thin_to``.
    """
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    per_chain = thin_to // chains
    keep = np.linspace(0, draws - 1, per_chain).round().astype(int)
    ranks = {}
    for name in names:
        sample = posterior[name].isel(draw=keep).to_numpy().reshape(chains * per_chain, -1)
        true = np.asarray(truth[name]).reshape(-1)
        for j in range(sample.shape[1]):
            label = name if sample.shape[1] == 1 else f"{name}[{j}]"
            ranks[label] = int((sample[:, j] < true[j]).sum())
    return ranks


def uniformity(ranks: pd.DataFrame, n_ranks: int, bins: int) -> pd.DataFrame:
    """Chi-square test of each statistic's rank histogram against uniform.

    Returns one row per statistic: ``chi2``, ``p_value``, and ``passed`` at family-wise level
    :data:`LEVEL` (Bonferroni over the statistics).
    """
    out = []
    k = ranks.shape[1]
    for label in ranks.columns:
        counts = np.bincount((ranks[label].to_numpy() * bins) // n_ranks, minlength=bins)[:bins]
        chi2, p = stats.chisquare(counts)
        out.append({"statistic": label, "chi2": chi2, "p_value": p, "passed": p >= LEVEL / k})
    return pd.DataFrame(out)


@dataclass
class SBCResult:
    """Ranks of one preset's SBC run and their test."""

    preset: str
    ranks: pd.DataFrame  # replicates x statistics
    n_ranks: int  # ranks lie in 0..n_ranks - 1
    test: pd.DataFrame
    failed_fits: list[str]
    seconds: float
    max_rhat: float

    @property
    def passed(self) -> bool:
        """Every rank histogram consistent with uniform, and every replicate fitted."""
        return bool(self.test["passed"].all()) and not self.failed_fits

    def line(self) -> str:
        """One summary line."""
        worst = self.test.loc[self.test["p_value"].idxmin()]
        return (f"{self.preset}: {'PASS' if self.passed else 'FAIL'}, {len(self.ranks)} "
                f"replicates, {self.ranks.shape[1]} statistics, smallest p {worst['p_value']:.3g} "
                f"({worst['statistic']}; needs >= {LEVEL / self.ranks.shape[1]:.2g}), "
                f"{len(self.failed_fits)} failed fits, worst R-hat {self.max_rhat:.3f}, "
                f"{self.seconds:.0f} s")


def run_sbc(preset: str, replicates: int = 100, *, draws: int = 500, tune: int = 500,
            chains: int = 2, thin_to: int = 100, seed: int = 0, design: pd.DataFrame | None = None,
            progressbar: bool = False, ranks_csv: Path | None = None) -> SBCResult:
    """SBC of ``preset`` with ``replicates`` simulated ladders (see the module docstring).

    With ``ranks_csv``, the ranks so far are written there after every replicate, so a long
    run stopped early still leaves them (:func:`summarise_csv` tests them).

    Example
    -------
    >>> result = run_sbc("chinchilla", replicates=20, draws=200, tune=200)  # doctest: +SKIP
    >>> result.passed  # doctest: +SKIP
    True
    """
    start = time.perf_counter()
    prepared = prepare(preset_design(preset) if design is None else design, preset)
    simulator = PriorSimulator(prepared)
    prior = simulator.prior_draws(replicates, seed)
    names = [n for n in prepared.model.variables() if n in prior]
    rng = np.random.default_rng(seed)
    rows, failed, rhats = [], [], []
    for r in range(replicates):
        truth = {name: values[r] for name, values in prior.items()}
        table = simulator.simulate(truth, rng)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitted = bayescale.fit(table, prepared.model, draws=draws, tune=tune, chains=chains,
                                       random_seed=seed * 100_003 + r, progressbar=False,
                                       retry=False)
        except Exception as err:  # noqa: BLE001 - a replicate that cannot be fitted is reported, not fatal
            failed.append(f"replicate {r}: {type(err).__name__}: {err}")
            continue
        rhats.append(fitted.diagnostics().max_rhat)
        rows.append(rank_statistics(fitted.idata.posterior, truth, names, thin_to))
        if ranks_csv is not None:
            pd.DataFrame(rows).assign(preset=preset).to_csv(ranks_csv, index_label="replicate")
        if progressbar:
            print(f"\r{preset}: {r + 1}/{replicates}", end="", flush=True)
    if progressbar:
        print()
    ranks = pd.DataFrame(rows)
    n_ranks = (thin_to // chains) * chains + 1
    return SBCResult(preset, ranks, n_ranks,
                     uniformity(ranks, n_ranks, bins=min(10, max(2, replicates // 5))),
                     failed, time.perf_counter() - start,
                     float(np.nanmax(rhats)) if rhats else np.nan)


def summarise_csv(path: Path, thin_to: int = 100, chains: int = 2) -> pd.DataFrame:
    """The uniformity test of the ranks :func:`run_sbc` wrote to ``path``.

    Complete or not (a run stopped early); one row per statistic (see :func:`uniformity`).
    """
    ranks = pd.read_csv(path, index_col="replicate").drop(columns="preset")
    n_ranks = (thin_to // chains) * chains + 1
    return uniformity(ranks, n_ranks, bins=min(10, max(2, len(ranks) // 5)))


def plot_ranks(result: SBCResult, path: Path, bins: int = 10) -> None:
    """Rank histograms, one panel per statistic, with the 99% band of a uniform count."""
    import matplotlib.pyplot as plt

    k = result.ranks.shape[1]
    cols = min(6, k)
    fig, axes = plt.subplots(-(-k // cols), cols, figsize=(2.2 * cols, 1.8 * -(-k // cols)),
                             squeeze=False)
    n = len(result.ranks)
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / bins)
    for ax, label in zip(axes.flat, result.ranks.columns, strict=False):
        counts = np.bincount((result.ranks[label].to_numpy() * bins) // result.n_ranks,
                             minlength=bins)[:bins]
        ax.axhspan(lo, hi, color="0.85")
        ax.bar(np.arange(bins), counts, width=0.9, color="C0")
        ax.set_title(label, fontsize=8)
        ax.set_xticks([])
    for ax in list(axes.flat)[k:]:
        ax.set_visible(False)
    fig.suptitle(f"SBC rank histograms: {result.line()}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Command line: SBC of the named presets (default: every shipped preset)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("presets", nargs="*",
                        help="presets (default: all of bayescale.available_models())")
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="sbc_out")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    status = 0
    for preset in args.presets or list(bayescale.available_models()):
        result = run_sbc(preset, args.replicates, draws=args.draws, tune=args.tune, seed=args.seed,
                         progressbar=True, ranks_csv=out / f"sbc_{preset}.csv")
        plot_ranks(result, out / f"sbc_{preset}.png")
        print(result.line(), flush=True)
        for failure in result.failed_fits[:3]:
            print("   ", failure)
        status |= not result.passed
    return status


if __name__ == "__main__":
    raise SystemExit(main())
