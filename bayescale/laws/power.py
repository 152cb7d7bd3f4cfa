"""Power laws in model size and data: Chinchilla's form, its variants and the compute-only form."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..parts.base import Default, default
from .base import ScalingLaw

FLOP_PER_PARAM_TOKEN = 6.0


class Chinchilla(ScalingLaw):
    r"""Hoffmann et al. (2022), Approach 3.

    .. math:: L(N, D) = E + A N^{-\alpha} + B D^{-\beta}

    Sampled as ``L = E + a n^-alpha + b d^-beta`` with ``n = N/N0``, ``d = D/D0``, so
    ``A = a N0^alpha`` and ``B = b D0^beta``.

    References
    ----------
    Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", eq. (2).

    Examples
    --------
    >>> import numpy as np
    >>> law = Chinchilla()
    >>> theta = dict(E=1.69, a=0.5, b=0.4, alpha=0.34, beta=0.28)
    >>> float(np.round(law.mean(theta, 1.0, 1.0), 2))
    2.59
    """

    lookup_name = "chinchilla"
    equation = "L = E + A*N^-alpha + B*D^-beta"
    sampled = ("E", "a", "b", "alpha", "beta")
    published_names = ("E", "A", "B", "alpha", "beta")

    def priors(self) -> dict[str, Default]:
        """Default priors of ``E, a, b, alpha, beta``, each with its provenance."""
        return {
            "E": default("LogNormal",
                         "Irreducible loss in nats. Published fits: 1.69 (Hoffmann et al. 2022), "
                         "1.82 (Besiroglu et al. 2024). Median e^0.5 = 1.65 nats, 90% prior mass "
                         "in [0.48, 5.7] so other tokenisers and evaluation sets fit too.", mu=0.5,
                         sigma=0.75),
            "a": default("LogNormal",
                         "Size of the model-size term at the ladder's centre, nats. Ladders in the "
                         "literature span 0.05-2 nats between their smallest and largest models; "
                         "90% prior mass in [0.03, 4.3].", mu=-1.0, sigma=1.5),
            "b": default("LogNormal",
                         "Size of the data term at the ladder's centre, nats; same reasoning as "
                         "`a`.",
                         mu=-1.0, sigma=1.5),
            "alpha": default("LogNormal",
                             "Model-size exponent. Published values 0.28-0.37 for this form "
                             "(Hoffmann 2022: 0.34; Besiroglu 2024: 0.35); median 0.30, 90% prior "
                             "mass in [0.11, 0.81].",
                             mu=-1.2, sigma=0.6),
            "beta": default("LogNormal",
                            "Data exponent. Published values 0.28-0.37 (Hoffmann 2022: 0.28; "
                            "Besiroglu 2024: 0.37); same prior as alpha.", mu=-1.2, sigma=0.6),
        }

    def mean(self, theta: dict[str, Any], n: Any, d: Any) -> Any:
        """Expected loss (nats): ``E + a n^-alpha + b d^-beta`` at centred ``n``, ``d``."""
        return theta["E"] + theta["a"] * n ** (-theta["alpha"]) + theta["b"] * d ** (-theta["beta"])

    def to_published(self, theta: dict[str, Any], N0: float, D0: float) -> dict[str, Any]:
        """``E, A, B, alpha, beta`` with ``A = a N0^alpha`` and ``B = b D0^beta``."""
        return {
            "E": theta["E"],
            "A": theta["a"] * N0 ** theta["alpha"],
            "B": theta["b"] * D0 ** theta["beta"],
            "alpha": theta["alpha"],
            "beta": theta["beta"],
        }


class Gadre(ScalingLaw):
    r"""Chinchilla's law with one exponent for model size and data (Gadre et al. 2024).

    .. math:: L(N, D) = E + A N^{-\alpha} + B D^{-\alpha}

    Written in compute ``C = 6 N D`` and the token multiplier ``M = D / N`` this is Gadre
    et al.'s law for over-trained models, ``L = E + (A' M^{eta} + B' M^{-eta}) C^{-eta}``
    with ``eta = alpha / 2``: at a fixed multiplier the loss is a power law in compute, and
    over-training (a larger ``M``) shifts it without changing its slope.  One exponent fewer
    than Chinchilla's law, so a ladder that spans little of N or D pins it sooner.

    Sampled as ``L = E + a n^-alpha + b d^-alpha`` at centred ``n = N/N0``, ``d = D/D0``.

    References
    ----------
    Gadre et al. 2024, "Language models scale reliably with over-training and on downstream
    tasks", eq. (4).

    Examples
    --------
    >>> theta = dict(E=1.69, a=0.5, b=0.4, alpha=0.3)
    >>> float(np.round(Gadre().mean(theta, 2.0, 2.0), 3))  # both terms shrink by 2^-0.3
    2.421
    """

    lookup_name = "gadre"
    equation = "L = E + A*N^-alpha + B*D^-alpha"
    sampled = ("E", "a", "b", "alpha")
    published_names = ("E", "A", "B", "alpha")

    def priors(self) -> dict[str, Default]:
        """Chinchilla's priors of ``E, a, b, alpha`` (alpha is both exponents)."""
        priors = Chinchilla().priors()
        return {name: priors[name] for name in self.sampled}

    def mean(self, theta: dict[str, Any], n: Any, d: Any) -> Any:
        """Expected loss (nats): ``E + a n^-alpha + b d^-alpha`` at centred ``n``, ``d``."""
        alpha = theta["alpha"]
        return theta["E"] + theta["a"] * n ** (-alpha) + theta["b"] * d ** (-alpha)

    def to_published(self, theta: dict[str, Any], N0: float, D0: float) -> dict[str, Any]:
        """``E, A, B, alpha`` with ``A = a N0^alpha`` and ``B = b D0^alpha``."""
        return {"E": theta["E"], "A": theta["a"] * N0 ** theta["alpha"],
                "B": theta["b"] * D0 ** theta["alpha"], "alpha": theta["alpha"]}


def _backend(*values: Any):
    """``pytensor.tensor`` when any value is symbolic, else numpy."""
    if any(type(v).__module__.startswith("pytensor") for v in values):
        import pytensor.tensor as pt

        return pt
    return np


class Kaplan(ScalingLaw):
    r"""Chinchilla's two terms combined by a soft maximum, so small models saturate in data.

    .. math:: L(N, D) = E + \left[(A N^{-\alpha})^{1/q} + (B D^{-\beta})^{1/q}\right]^{q},
              \qquad 0 < q \le 1

    ``q = 1`` is Chinchilla's additive law; as ``q`` falls the larger of the two terms
    dominates, so more data helps a model only until its size term takes over (Kaplan et
    al. 2020, eq. 1.5, whose exponent ``alpha_D`` plays the part of ``q``; here with an
    irreducible ``E``).  Ladders with many checkpoints per run show this: the loss curves
    of small models flatten long before those of large ones.  ``q`` is a property of the
    functional form, one value shared by all families.

    Sampled as ``a n^-alpha`` and ``b d^-beta`` at centred ``n = N/N0``, ``d = D/D0``
    (``A = a N0^alpha``, ``B = b D0^beta``), combined in log space for stability.

    References
    ----------
    Kaplan et al. 2020, "Scaling Laws for Neural Language Models", eq. (1.5).

    Examples
    --------
    >>> theta = dict(E=1.7, a=0.5, b=0.4, alpha=0.34, beta=0.28, q=1.0)
    >>> float(np.round(Kaplan().mean(theta, 1.0, 1.0), 2))  # q = 1: Chinchilla
    2.6
    >>> float(np.round(Kaplan().mean({**theta, "q": 0.1}, 1.0, 1.0), 2))  # ~ the larger term
    2.21
    """

    lookup_name = "kaplan"
    equation = "L = E + ((A*N^-alpha)^(1/q) + (B*D^-beta)^(1/q))^q"
    sampled = ("E", "a", "b", "alpha", "beta", "q")
    published_names = ("E", "A", "B", "alpha", "beta", "q")
    shared = ("q",)

    def priors(self) -> dict[str, Default]:
        """Chinchilla's priors plus the sharpness ``q`` (Beta(2, 1.5))."""
        return {**Chinchilla().priors(), "q": default(
            "Beta", "Sharpness of the combination, 0 < q <= 1: q = 1 is Chinchilla's additive law, "
            "small q lets the larger term take over (Kaplan et al. 2020 fit 0.095 without an "
            "irreducible term). Beta(2, 1.5): mean 0.57, 90% in [0.16, 0.94], leaving both "
            "regimes open.", alpha=2.0, beta=1.5)}

    def mean(self, theta: dict[str, Any], n: Any, d: Any) -> Any:
        """Expected loss (nats): the soft maximum of the two terms above ``E``, in log space."""
        q = theta["q"]
        xp = _backend(q, n, d, theta["a"])
        ln_size = xp.log(theta["a"]) - theta["alpha"] * xp.log(n)
        ln_data = xp.log(theta["b"]) - theta["beta"] * xp.log(d)
        return theta["E"] + xp.exp(q * xp.logaddexp(ln_size / q, ln_data / q))

    def to_published(self, theta: dict[str, Any], N0: float, D0: float) -> dict[str, Any]:
        """Chinchilla's published coefficients plus ``q``."""
        return {**Chinchilla().to_published(theta, N0, D0), "q": theta["q"]}


class Compute(ScalingLaw):
    r"""Loss as a power law in training compute only.

    .. math:: L(C) = E + A C^{-\gamma}, \qquad C = 6 N D

    Sampled as ``L = E + a (n d)^-gamma`` (``C/C0 = n d``), so ``A = a (6 N0 D0)^gamma``.

    Examples
    --------
    >>> law = Compute()
    >>> float(law.mean(dict(E=1.7, a=1.0, gamma=0.05), 1.0, 1.0))
    2.7
    """

    lookup_name = "compute"
    equation = "L = E + A*C^-gamma, C = 6*N*D"
    sampled = ("E", "a", "gamma")
    published_names = ("E", "A", "gamma")

    def priors(self) -> dict[str, Default]:
        """Default priors of ``E, a, gamma``, each with its provenance."""
        return {
            "E": default("LogNormal",
                         "Irreducible loss in nats; as in the chinchilla law (published "
                         "1.69-1.82), 90% prior mass in [0.48, 5.7].", mu=0.5, sigma=0.75),
            "a": default("LogNormal",
                         "Reducible loss at the ladder's centre compute C0 = 6 N0 D0, nats; 90% "
                         "prior mass in [0.05, 7].", mu=-0.5, sigma=1.5),
            "gamma": default("LogNormal",
                             "Compute exponent. Kaplan et al. 2020 report 0.05 (no irreducible "
                             "term), fits with an irreducible term give 0.1-0.2; median 0.15, 90% "
                             "prior mass in [0.05, 0.40].",
                             mu=-1.9, sigma=0.6),
        }

    def mean(self, theta: dict[str, Any], n: Any, d: Any) -> Any:
        """Expected loss (nats): ``E + a (n d)^-gamma`` at centred ``n``, ``d``."""
        return theta["E"] + theta["a"] * (n * d) ** (-theta["gamma"])

    def to_published(self, theta: dict[str, Any], N0: float, D0: float) -> dict[str, Any]:
        """``E, A, gamma`` with ``A = a (6 N0 D0)^gamma``."""
        C0 = FLOP_PER_PARAM_TOKEN * N0 * D0
        return {"E": theta["E"], "A": theta["a"] * C0 ** theta["gamma"], "gamma": theta["gamma"]}
