"""Family pooling: each family's law parameters partially pooled toward a population.

Without this part one law serves every family.  With it, every law parameter except the
law's ``shared`` ones (shape parameters of the functional form) gets dims ``family``:
``theta_f = exp(mu + delta_f)``, pooled on the log scale toward ``mu = ln_<name>_pop``
(the law's LogNormal prior), so a family with one or two runs borrows strength from the
others.  A family the fit never saw is predicted with a fresh draw from the population.

Example
-------
>>> FamilyPooling(prior="student_t").to_dict()
{'part': 'family_pooling', 'prior': 'student_t'}
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import scipy.linalg
from pymc_extras.prior import Prior

from .base import BuildContext, Default, ModelError, Part, PredictContext, Remedy, choice, default

PRIORS = ("half_normal", "student_t")


@dataclass(frozen=True)
class FamilyPooling(Part):
    """Family-level law parameters partially pooled toward a population (log scale).

    Parameters
    ----------
    prior
        The prior of the families' deviations: ``"half_normal"`` (``delta_f = s z_f``,
        non-centred, spread ``s = <name>_sd ~`` the ``family_sd`` prior) or ``"student_t"``
        (``s^2 ~`` the ``family_var`` InverseGamma, integrated out: the deviations are
        multivariate Student-t, with no spread to sample and no funnel; see
        :func:`pooled_parameter`).  With few families the data hardly pin the spread: when a
        half-normal spread mixes worst, :func:`bayescale.fit`'s automatic retry refits with
        ``"student_t"`` (:meth:`convergence_remedy`) and keeps the better attempt.
    parameters
        The law parameters that differ between families (default: all but the law's
        ``shared`` ones); the others are one value for every family.  For example
        ``("b", "beta")`` when families differ only in their data term.
    """

    lookup_name = "family_pooling"
    sources = ("family",)
    order = 0
    prior: str = "half_normal"
    parameters: tuple[str, ...] | None = None

    def __post_init__(self):
        choice(self.lookup_name, "prior", self.prior, PRIORS)
        if self.parameters is not None and not self.parameters:
            raise ModelError("family_pooling: parameters=() pools nothing; leave the part out "
                             "instead")

    def priors(self) -> dict[str, Default]:
        """The prior of the families' spread: ``family_sd`` or ``family_var``."""
        if self.prior == "half_normal":
            return {"family_sd": default(
                "HalfNormal",
                "Spread between families of each law parameter on the log scale. Architectures and "
                "data mixes in Gadre et al. 2024 and the OLMo ladder differ by 5-30% in fitted "
                "coefficients and exponents; half-normal 0.2 allows that and shrinks families with "
                "few runs toward the population.",
                sigma=0.2)}
        return {"family_var": default(
            "InverseGamma",
            "Square of the spread between families on the log scale (integrated out: the families' "
            "deviations become Student-t with 4 degrees of freedom and scale 0.1). Median spread "
            "0.11, 90% of its mass in [0.065, 0.24]: the scale of family_sd's half-normal 0.2, "
            "kept away from zero, where few families leave a funnel, with a lighter upper tail.",
            alpha=2.0, beta=0.02)}

    def pooled(self, model) -> list[str]:
        """The law parameters that differ between families."""
        if self.parameters is not None:
            return list(self.parameters)
        return [p for p in model.law.sampled if p not in model.law.shared]

    def variables(self, model) -> list[str]:
        """``<p>_pop`` and ``<p>_sd`` of every pooled parameter ``p``."""
        pooled = self.pooled(model)
        return [f"{p}_pop" for p in pooled] + [f"{p}_sd" for p in pooled]

    def convergence_remedy(self, model, worst: tuple[str, ...]) -> Remedy | None:
        """The spread integrated out when a family spread or population mixes worst.

        With ``prior="half_normal"`` only: ``prior="student_t"`` (no spread to sample, no
        funnel) and the low-rank mass matrix (the law's E-coefficient ridge, per family).
        """
        if self.prior != "half_normal" or not set(worst) & set(self.variables(model)):
            return None
        integrated = replace(model.with_parts(replace(self, prior="student_t")),
                             name=f"{model.name} + family_pooling(prior='student_t')")
        return Remedy(
            hint="the families' spreads and populations mix worst, the funnel of a sampled "
                 "spread; refit with FamilyPooling(prior='student_t') (spread integrated out) "
                 "and mass_matrix='low_rank' (on a 5-family, 10,000-row ladder this took R-hat "
                 "1.105 to 1.007 at a third of the time, benchmarks/README.md)",
            model=integrated, sampler={"mass_matrix": "low_rank"})

    def check(self, model) -> None:
        """Require pooled parameters of the law with LogNormal priors."""
        unknown = sorted(set(self.pooled(model)) - set(model.law.sampled))
        if unknown:
            raise ModelError(f"family_pooling: parameters {unknown} are not parameters of the "
                             f"{model.law.lookup_name} law ({', '.join(model.law.sampled)})")
        for p in self.pooled(model):
            if model.priors[p].distribution != "LogNormal":
                raise ModelError("family_pooling: pools on the log scale and needs a LogNormal "
                                 f"prior for {p!r}, got {model.priors[p].distribution}")

    # ------------------------------------------------------------------ PyMC
    def build(self, ctx: BuildContext) -> None:
        """Create the per-family law parameters and index them by row into ``ctx.theta``."""
        model = ctx.model
        law = model.law
        pooled = self.pooled(model)
        theta_f = {p: pooled_parameter(model.priors, p, len(ctx.families), self.prior)
                   if p in pooled
                   else model.priors[p].create_variable(p) for p in law.sampled}
        ctx.theta_family = theta_f
        for where in ctx.wheres:
            fam = ctx.data("family_index", where)
            ctx.theta[where] = {p: v[fam] if p in pooled else v for p, v in theta_f.items()}
        every = pt.ones(len(ctx.families))
        for p, value in law.to_published(theta_f, ctx.scale.N0, ctx.scale.D0).items():
            if p not in theta_f:
                pm.Deterministic(p, value * every, dims="family")

    # ------------------------------------------------------------------ numpy
    def predict(self, ctx: PredictContext) -> None:
        """Set ``ctx.theta`` per draw and target; new families draw from the population."""
        law = ctx.fit.model.law
        index = {f: i for i, f in enumerate(ctx.fit.families)}
        new = sorted({f for f in ctx.family_labels if f not in index})
        lookup = {**index, **{f: len(index) + i for i, f in enumerate(new)}}
        columns = [lookup[f] for f in ctx.family_labels]
        pooled = self.pooled(ctx.fit.model)
        for p in law.sampled:
            if p not in pooled:
                ctx.theta[p] = ctx.draws(p)[:, None]
                continue
            per_family = ctx.draws(p)  # (S, F)
            if new:
                ln_pop = np.log(ctx.draws(f"{p}_pop"))[:, None]
                sd = ctx.draws(f"{p}_sd")[:, None]
                z = ctx.random("family", lambda rng, n: rng.standard_normal((n, len(new))))
                fresh = np.exp(ln_pop + sd * z)
                per_family = np.concatenate([per_family, fresh], axis=1)
            ctx.theta[p] = per_family[:, columns]


def pooled_parameter(priors: dict[str, Prior], name: str, n_families: int,
                     family_prior: str = "half_normal") -> pt.TensorVariable:
    """Family-level parameter ``theta_f = exp(mu + delta_f)`` (dims ``family``), log-pooled.

    Pooled on the log scale toward a population ``mu = ln_<name>_pop ~ Normal(m0, s0)`` (the
    LogNormal prior ``priors[name]``).

    ``family_prior="half_normal"``: ``delta_f = s z_f``, non-centred, with ``z_f ~ Normal(0, 1)``
    and the spread ``s = <name>_sd`` from the ``family_sd`` prior.

    ``family_prior="student_t"``: the spread's square has the ``family_var`` prior,
    ``s^2 ~ InverseGamma(a, b)``, and is integrated out.  Given ``s`` the F deviations are
    ``Normal(0, s^2 I)``, so without it they are jointly ``MvStudentT(nu=2a, scale=(b/a) I)``.
    With few families the data hardly pin ``s``, and sampling it leaves the funnel between
    ``s`` and the ``z`` where NUTS diverges; this form has none.  It is sampled in the
    coordinates the data see: ``dev_<name>_rot``, the deviations in an orthonormal (Helmert)
    basis (the first coordinate is ``sqrt(F)`` times their mean, the others their sum-zero
    part), and ``ln_<name>_mean``, the families' mean of ``ln theta_f``, drawn as
    ``Normal(m0 + mean deviation, s0)`` so that ``mu`` keeps its prior exactly.
    ``<name>_sd`` is still reported, drawn from its exact conditional given the deviations,
    ``s^2 | delta ~ InverseGamma(a + F/2, b + |delta|^2 / 2)`` through ``w_<name> ~ Gamma(a +
    F/2, 1)``, so a new family's draws ``exp(mu + s z)`` come from the same model.

    Example
    -------
    >>> import pymc as pm
    >>> from bayescale.model import Model
    >>> model = Model("chinchilla", parts=[FamilyPooling(prior="student_t")])
    >>> with pm.Model(coords={"family": ["a", "b", "c"]}):
    ...     alpha = pooled_parameter(model.priors, "alpha", 3, "student_t")
    >>> alpha.name
    'alpha'
    """
    prior = priors[name]
    mu, sigma = prior.parameters["mu"], prior.parameters["sigma"]
    if family_prior == "half_normal":
        log_pop = pm.Normal(f"ln_{name}_pop", mu=mu, sigma=sigma)
        pm.Deterministic(f"{name}_pop", pt.exp(log_pop))
        spread = priors["family_sd"].create_variable(f"{name}_sd")
        z = pm.Normal(f"z_{name}", 0.0, 1.0, dims="family")
        return pm.Deterministic(name, pt.exp(log_pop + spread * z), dims="family")
    var = priors["family_var"]
    if var.distribution != "InverseGamma" or set(var.parameters) != {"alpha", "beta"}:
        raise ModelError("family_pooling: prior='student_t' needs family_var ~ "
                         "InverseGamma(alpha, beta), got "
                         f"{var.distribution}({', '.join(sorted(var.parameters))})")
    a, b = float(var.parameters["alpha"]), float(var.parameters["beta"])
    # F x F orthonormal; row 0 is the mean direction
    basis = scipy.linalg.helmert(n_families, full=True)
    rotated = pm.MvStudentT(f"dev_{name}_rot", nu=2 * a, mu=np.zeros(n_families),
                            scale=(b / a) * np.eye(n_families))
    mean_deviation = rotated[0] / np.sqrt(n_families)
    # sum-zero: each family's deviation from the families' mean
    within = pt.dot(basis[1:].T, rotated[1:])
    ln_mean = pm.Normal(f"ln_{name}_mean", mu=mu + mean_deviation, sigma=sigma)
    log_pop = pm.Deterministic(f"ln_{name}_pop", ln_mean - mean_deviation)
    pm.Deterministic(f"{name}_pop", pt.exp(log_pop))
    pm.Deterministic(f"dev_{name}", mean_deviation + within, dims="family")
    w = pm.Gamma(f"w_{name}", alpha=a + n_families / 2, beta=1.0)
    pm.Deterministic(f"{name}_sd", pt.sqrt((b + 0.5 * pt.sum(rotated**2)) / w))
    return pm.Deterministic(name, pt.exp(ln_mean + within), dims="family")
