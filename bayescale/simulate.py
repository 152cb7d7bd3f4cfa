"""Seeded synthetic ladders with known true parameters, for the demo and for tests.

The truth is a Chinchilla law ``L = E + A N^-alpha + B D^-beta``; families may perturb the
exponents and coefficients, seeds add a per-run offset, checkpoints along a run carry
AR(1)-correlated noise on ln(loss), and downstream accuracies follow a logistic link in
the (noise-free) loss with Binomial benchmark noise (Beta-Binomial with ``Task.phi``);
with ``downstream_run_spread`` every task of a run sees its loss times ``exp(spread z_run)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .schedules import Schedule

DEFAULT_TRUTH = {"E": 1.8, "A": 400.0, "B": 400.0, "alpha": 0.34, "beta": 0.30}
DEFAULT_SIZES = (2e7, 5e7, 1.2e8, 3e8, 7e8)
DEFAULT_MULTIPLIERS = (5.0, 10.0, 20.0, 40.0)
N_REF, D_REF = 1e8, 2e9  # where family differences in the coefficients are set


@dataclass(frozen=True)
class Task:
    """A synthetic downstream task: accuracy a sigmoid in the loss above chance.

    accuracy = chance + (1 - chance) * sigmoid(-slope (x - midpoint)), with ``x`` the loss L
    (``scale="loss"``) or ``ln(L - E)`` (``scale="log_reducible"``).

    Observed correct answers are Binomial(n_items, accuracy); with ``phi`` set, the accuracy
    of each row is first drawn from Beta(accuracy phi, (1 - accuracy) phi) (Beta-Binomial
    over-dispersion: extra scatter around the curve of sd about sqrt(acc (1 - acc) / phi)).
    """

    name: str
    n_items: int = 1000
    chance: float = 0.25
    slope: float = 3.0
    midpoint: float = 3.0
    phi: float | None = None
    scale: str = "loss"

    def accuracy(self, loss: np.ndarray, E: float | None = None) -> np.ndarray:
        """Accuracy at ``loss`` (nats).

        With ``scale="log_reducible"`` the sigmoid is in ``ln(loss - E)`` (slope and midpoint
        on that scale) and ``E`` is required.
        """
        from .downstream import to_link_scale

        if self.scale != "loss" and E is None:
            raise ValueError(f"task {self.name!r} with scale={self.scale!r} needs the irreducible "
                             "loss E")
        x = to_link_scale(self.scale, np.asarray(loss, dtype=float), E)
        return self.chance + (1 - self.chance) / (1 + np.exp(self.slope * (x - self.midpoint)))


@dataclass
class Truth:
    """True parameters of a simulated ladder (population, per family, per run)."""

    population: dict[str, float]
    families: dict[str, dict[str, float]] = field(default_factory=dict)
    run_offsets: dict[str, float] = field(default_factory=dict)
    downstream_offsets: dict[str, float] = field(default_factory=dict)
    walks: dict[str, np.ndarray] = field(default_factory=dict)
    downstream_run_spread: float = 0.0
    noise: float = 0.01
    ar1: float = 0.0
    anneal: float = 0.0
    tasks: tuple[Task, ...] = ()

    def __getitem__(self, key: str) -> float:
        return self.population[key]

    def loss(self, params, tokens, family: str | None = None) -> np.ndarray:
        """Noise-free loss of the law (family-level parameters if given), nats."""
        p = self.families.get(family, self.population) if family else self.population
        N, D = np.asarray(params, dtype=float), np.asarray(tokens, dtype=float)
        return p["E"] + p["A"] * N ** -p["alpha"] + p["B"] * D ** -p["beta"]


def simulate_ladder(
    seed: int = 0,
    *,
    truth: dict[str, float] | None = None,
    sizes=DEFAULT_SIZES,
    token_multipliers=DEFAULT_MULTIPLIERS,
    families: int | list[str] = 1,
    seeds: int = 1,
    checkpoints: int = 1,
    noise: float = 0.01,
    family_spread: float = 0.0,
    seed_spread: float = 0.0,
    ar1: float = 0.0,
    tasks: list[Task] | None = None,
    schedule: Schedule | None = None,
    anneal: float = 0.15,
    downstream_run_spread: float = 0.0,
    drift: float = 0.0,
    drift_start: float = 0.05,
    drift_clock: str = "ln_tokens",
    spacing: str = "log",
) -> tuple[pd.DataFrame, Truth]:
    """Simulate a ladder of training runs.

    Parameters
    ----------
    seed
        Random seed; the same seed gives the same table.
    truth
        Population law parameters (default ``DEFAULT_TRUTH``: E 1.8, A 400, B 400,
        alpha 0.34, beta 0.30).
    sizes, token_multipliers
        Model sizes N (parameters) and tokens-per-parameter of each run: D_total = m N.
    families, seeds
        Number (or names) of families, and seeds per (family, size, multiplier).
    checkpoints
        Checkpoints per run, from 10% to 100% of the run's tokens.
    spacing
        ``"log"`` (default: equal steps in ln tokens) or ``"linear"`` (equal steps in
        tokens, as in most training logs: steps in ln tokens shrink along the run).
    noise
        Residual scale on ln(loss).
    family_spread
        Log-scale spread of each family's exponents and coefficients around the population.
    seed_spread
        Scale of a per-run offset on ln(loss).
    ar1
        Lag-one correlation of residuals between consecutive checkpoints of a run.
    tasks
        Downstream tasks; adds ``acc:<task>`` rows at every checkpoint.
    schedule, anneal
        With a learning-rate :class:`~bayescale.schedules.Schedule`, a checkpoint at
        fraction f of its run sees effective tokens ``D lr_area(f) / lr_area(1)`` and
        ``anneal`` nats times its un-annealed part (see :mod:`bayescale.schedules`); the
        table then carries ``schedule``, ``warmup_fraction`` and ``final_lr_fraction``.
    downstream_run_spread
        Scale of a run-level downstream effect on ln(loss): every task of run r sees the
        loss ``latent exp(seed offset + downstream_run_spread z_r)`` (a run that is better or
        worse at every task than its loss says; recorded in ``Truth.downstream_offsets``).
        Default 0: the tasks see the run's loss.
    drift, drift_start, drift_clock
        Scale of a per-run random walk on ln(loss) in ln tokens (Brownian motion per unit of
        ln tokens, or per unit of the fraction of the run with ``drift_clock="fraction"``,
        starting from zero at ``drift_start`` of the run): a run that wanders away
        from the law and stays away (as ``drift="walk"`` in :func:`bayescale.fit` models it);
        its tasks' accuracies follow the walked loss.
        Default 0: no drift.  The walk of every run is kept in ``Truth.walks``.

    Returns
    -------
    runs : pandas.DataFrame
        A runs table (see :func:`bayescale.read_runs`).
    truth : Truth
        The parameters that generated it.

    Examples
    --------
    >>> runs, truth = simulate_ladder(seed=0)
    >>> len(runs), truth["alpha"]
    (20, 0.34)
    """
    rng = np.random.default_rng(seed)
    population = dict(DEFAULT_TRUTH if truth is None else truth)
    names = [f"family{i}" for i in range(families)] if isinstance(families, int) else list(families)
    if len(names) == 1 and isinstance(families, int):
        names = ["default"]
    fam_params = {}
    for name in names:
        # Families differ by a few percent in each term *at a typical ladder point*
        # (N_REF, D_REF) and in their exponents; A and B follow from that.
        z = rng.standard_normal(5) * family_spread
        alpha = population["alpha"] * np.exp(z[3])
        beta = population["beta"] * np.exp(z[4])
        fam_params[name] = {
            "E": population["E"] * np.exp(0.5 * z[0]),
            "A": population["A"] * np.exp(z[1]) * N_REF ** (alpha - population["alpha"]),
            "B": population["B"] * np.exp(z[2]) * D_REF ** (beta - population["beta"]),
            "alpha": alpha,
            "beta": beta,
        }
    out = Truth(population=population, families=fam_params, noise=noise, ar1=ar1,
                anneal=anneal if schedule is not None else 0.0, tasks=tuple(tasks or ()),
                downstream_run_spread=downstream_run_spread)
    if spacing not in ("log", "linear"):
        raise ValueError(f"spacing={spacing!r} is not one of ('log', 'linear')")
    if drift_clock not in ("ln_tokens", "fraction"):
        raise ValueError(f"drift_clock={drift_clock!r} is not one of ('ln_tokens', 'fraction')")
    space = np.geomspace if spacing == "log" else np.linspace
    fractions = space(0.1, 1.0, checkpoints) if checkpoints > 1 else np.array([1.0])
    rows = []
    for fam in names:
        p = fam_params[fam]
        for N in sizes:
            for m in token_multipliers:
                for s in range(seeds):
                    run = f"{fam}-N{N:.3g}-x{m:g}-s{s}"
                    offset = seed_spread * rng.standard_normal()
                    out.run_offsets[run] = offset
                    # drawn only when asked for, so the default keeps every other draw unchanged
                    ds_offset = (downstream_run_spread * rng.standard_normal()
                                 if downstream_run_spread else 0.0)
                    if out.tasks:
                        out.downstream_offsets[run] = ds_offset
                    total = m * N
                    tokens = fractions * total
                    eps = _ar1_noise(rng, len(tokens), noise, ar1)
                    walk: float | np.ndarray = 0.0
                    if drift:
                        # drawn only when asked for, so the default keeps every other draw unchanged
                        clock = np.maximum(fractions, drift_start)
                        clock = clock if drift_clock == "fraction" else np.log(clock)
                        start = drift_start if drift_clock == "fraction" else np.log(drift_start)
                        steps = np.diff(clock, prepend=start)
                        walk = np.cumsum(drift * np.sqrt(steps) * rng.standard_normal(len(tokens)))
                        out.walks[run] = walk
                        eps = eps + walk
                    d_eff, unannealed = tokens, np.zeros(len(tokens))
                    if schedule is not None:
                        d_eff = tokens * schedule.lr_area(fractions) / schedule.lr_area(1.0)
                        unannealed = schedule.annealing(1.0) - schedule.annealing(fractions)
                    latent = (p["E"] + p["A"] * N ** -p["alpha"] + p["B"] * d_eff ** -p["beta"]
                              + anneal * unannealed)
                    loss = latent * np.exp(offset + eps)
                    base = dict(family=fam, run=run, seed=s, params=N, total_tokens=total)
                    if schedule is not None:
                        base.update(schedule=schedule.kind,
                                    warmup_fraction=schedule.warmup_fraction,
                                    final_lr_fraction=schedule.final_lr_fraction)
                    rows += [dict(base, tokens=t, metric="loss", value=v)
                             for t, v in zip(tokens, loss, strict=True)]
                    for task in out.tasks:
                        # the run's drift moves its tasks too
                        # (the AR(1) noise is the loss metric's own)
                        acc = task.accuracy(latent * np.exp(offset + walk + ds_offset), E=p["E"])
                        if task.phi is not None:
                            acc = rng.beta(acc * task.phi, (1 - acc) * task.phi)
                        hits = rng.binomial(task.n_items, acc)
                        rows += [
                            dict(base, tokens=t, metric=f"acc:{task.name}", value=h / task.n_items,
                                 n_items=task.n_items, chance=task.chance)
                            for t, h in zip(tokens, hits, strict=True)
                        ]
    return pd.DataFrame(rows), out


def _ar1_noise(rng: np.random.Generator, n: int, scale: float, rho: float) -> np.ndarray:
    """Stationary AR(1) series with marginal sd ``scale`` and lag-one correlation ``rho``."""
    eps = np.empty(n)
    eps[0] = rng.standard_normal() * scale
    innov = scale * np.sqrt(1 - rho**2)
    for i in range(1, n):
        eps[i] = rho * eps[i - 1] + innov * rng.standard_normal()
    return eps
