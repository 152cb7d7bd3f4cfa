"""Validated global defaults of the plotting functions (in the spirit of ``arviz.rcParams``).

Every key has a validator; setting a bad value raises at once instead of failing inside
a plot.  Functions read these defaults when an argument is left as ``None``.

Examples
--------
>>> from bayescale.plotting import rcParams, rc_context
>>> rcParams["hdi_prob"]
0.9
>>> with rc_context({"hdi_prob": 0.5}):
...     rcParams["hdi_prob"]
0.5
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from matplotlib.colors import is_color_like, to_hex

#: Okabe & Ito (2008) colour-blind-safe palette, yellow left out (poor contrast on white).
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def _probability(value: Any) -> float:
    value = float(value)
    if not 0 < value < 1:
        raise ValueError(f"must lie in (0, 1), got {value}")
    return value


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"must be a positive integer, got {value!r}")
    return int(value)


def _positive_float(value: Any) -> float:
    value = float(value)
    if not value > 0:
        raise ValueError(f"must be > 0, got {value}")
    return value


def _color(value: Any) -> str:
    if not is_color_like(value):
        raise ValueError(f"{value!r} is not a matplotlib colour")
    return to_hex(value)


def _palette(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not len(value):
        raise ValueError("must be a non-empty sequence of colours")
    return tuple(_color(v) for v in value)


_SPEC: dict[str, tuple[Any, Callable[[Any], Any], str]] = {
    "hdi_prob": (0.9, _probability, "probability mass of every band and interval"),
    "max_draws": (400, _positive_int, "posterior draws behind a density curve (evenly thinned)"),
    "figure.width": (9.0, _positive_float, "figure width, inches"),
    "figure.dpi": (100, _positive_int, "dots per inch of saved PNG files"),
    "report.dpi": (100, _positive_int, "dots per inch of the PNGs inlined in the HTML report"),
    "palette": (OKABE_ITO, _palette, "family colours, in the sorted order of the family names"),
    "posterior_color": ("#334155", _color, "colour of a posterior shared by all families"),
    "prior_color": ("#9ca3af", _color, "colour of prior densities"),
}


class RcParams(MutableMapping):
    """A dict of plotting defaults whose keys are fixed and whose values are validated."""

    def __init__(self) -> None:
        self._data = {key: validate(default) for key, (default, validate, _) in _SPEC.items()}

    def __getitem__(self, key: str) -> Any:
        self._check_key(key)
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._check_key(key)
        try:
            self._data[key] = _SPEC[key][1](value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"rcParams[{key!r}]: {err}") from None

    def __delitem__(self, key: str) -> None:
        raise TypeError("rcParams keys cannot be deleted; set them instead")

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def _check_key(self, key: str) -> None:
        if key not in _SPEC:
            raise KeyError(f"{key!r} is not a bayescale plotting rcParam; valid keys: "
                           f"{sorted(_SPEC)}")

    def describe(self) -> dict[str, str]:
        """``{key: what it sets}``."""
        return {key: doc for key, (_, _, doc) in _SPEC.items()}

    def __repr__(self) -> str:
        return f"RcParams({self._data!r})"


rcParams = RcParams()


@contextmanager
def rc_context(rc: Mapping[str, Any]) -> Iterator[RcParams]:
    """Temporarily override some :data:`rcParams` (validated), restoring them on exit."""
    saved = dict(rcParams._data)
    try:
        for key, value in rc.items():
            rcParams[key] = value
        yield rcParams
    finally:
        rcParams._data = saved


def get(key: str, value: Any = None) -> Any:
    """``value`` validated as ``key`` would be, or the current default when it is None."""
    if value is None:
        return rcParams[key]
    rcParams._check_key(key)
    try:
        return _SPEC[key][1](value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{key}: {err}") from None
