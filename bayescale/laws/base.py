"""Base class and registry of scaling laws.

A law maps model size N and tokens D to the expected metric.  Every law is written twice
over the same code path: on numpy arrays (prediction) and on PyTensor tensors (the PyMC
model), using only arithmetic and ``**`` so one function serves both.

Inputs are *centred*: ``n = N / N0`` and ``d = D / D0`` with N0, D0 the geometric means of
the fitted ladder, so the sampled coefficients (``a``, ``b``) are the size of each term at
the centre of the data, O(0.1-1) nats, whatever the scale of N and D.  The published
coefficients (``A``, ``B``) are recovered as deterministic transforms, see
:meth:`ScalingLaw.published`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    from ..parts.base import Default

_REGISTRY: dict[str, type[ScalingLaw]] = {}


class ScalingLaw:
    """A functional form L(N, D).

    Subclasses set ``lookup_name``, ``sampled`` (parameter names drawn by the sampler),
    ``published`` names, optionally ``shared`` (not pooled by family), and implement
    :meth:`mean` and :meth:`to_published`.
    """

    lookup_name: ClassVar[str]
    equation: ClassVar[str]
    sampled: ClassVar[tuple[str, ...]]
    published_names: ClassVar[tuple[str, ...]]
    #: Sampled parameters that stay one value for every family under family pooling
    #: (shape parameters of the functional form rather than properties of a family).
    shared: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "lookup_name", None):
            _REGISTRY[cls.lookup_name] = cls

    def priors(self) -> dict[str, Default]:
        """Default priors of the sampled parameters (``{name: Default(Prior, provenance)}``)."""
        raise NotImplementedError

    def mean(self, theta: dict[str, Any], n: Any, d: Any) -> Any:
        """Expected metric at centred size ``n = N/N0`` and tokens ``d = D/D0``."""
        raise NotImplementedError

    def to_published(self, theta: dict[str, Any], N0: float, D0: float) -> dict[str, Any]:
        """Coefficients in the paper's convention (uncentred N and D)."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self).__name__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.equation})"


def get_law(name: str | ScalingLaw) -> ScalingLaw:
    """Look a law up by name (``"chinchilla"``, ``"compute"``)."""
    if isinstance(name, ScalingLaw):
        return name
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"unknown law {name!r}; available: {sorted(_REGISTRY)}") from None


def available_laws() -> list[str]:
    """Names of the registered laws."""
    return sorted(_REGISTRY)
