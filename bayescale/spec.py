"""Declarative model specifications (``models/*.toml``), loaded by name.

A spec names the law, the likelihood, the priors (each with its provenance) and default
sampler settings.  The package ships the specs inside its wheel (``bayescale/_models``);
in a source checkout they are read from the repository's top-level ``models/``.

Example
-------
>>> from bayescale.spec import load_spec
>>> spec = load_spec("chinchilla")
>>> spec.law.lookup_name, sorted(spec.priors)[:2]
('chinchilla', ['E', 'a'])
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pymc_extras.prior import Prior

from .laws import ScalingLaw, get_law
from .likelihoods import LIKELIHOODS

SCHEMA_VERSION = 1
NOISE_PARAMS = {"student_t_log": ("sigma", "nu"), "normal_log": ("sigma",)}


class SpecError(ValueError):
    """A model spec is invalid; the message lists every problem."""


def spec_dirs() -> list[Path]:
    """Folders searched for ``<name>.toml``: the wheel's copy, then the source tree's."""
    dirs = []
    shipped = resources.files("bayescale") / "_models"
    if shipped.is_dir():
        dirs.append(Path(str(shipped)))
    source = Path(__file__).resolve().parent.parent / "models"
    if source.is_dir():
        dirs.append(source)
    return dirs


def available_specs() -> list[str]:
    """Names of the shipped specs."""
    return sorted({p.stem for d in spec_dirs() for p in d.glob("*.toml")})


@dataclass
class ModelSpec:
    """A validated model specification.

    Attributes
    ----------
    name, law, likelihood
        Spec name, the :class:`~bayescale.laws.ScalingLaw`, and the likelihood key.
    priors
        ``{parameter: pymc_extras.prior.Prior}`` for every sampled parameter.
    provenance
        ``{parameter: str}`` where each prior's default comes from.
    sampler
        Default sampler settings (draws, tune, chains, target_accept).
    """

    name: str
    law: ScalingLaw
    likelihood: str
    priors: dict[str, Prior]
    provenance: dict[str, str] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (what a saved fit stores)."""
        return self.raw

    def to_json(self) -> str:
        return json.dumps(self.raw, sort_keys=True)

    def hash(self) -> str:
        """Short SHA-256 of the canonical JSON form."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def with_priors(self, overrides: dict[str, dict[str, Any] | Prior] | None) -> "ModelSpec":
        """A copy with some priors replaced (``default | user``)."""
        if not overrides:
            return self
        raw = copy.deepcopy(self.raw)
        for name, prior in overrides.items():
            entry = prior.to_dict() if isinstance(prior, Prior) else dict(prior)
            entry.setdefault("provenance", "set by the user")
            raw["priors"][name] = entry
        return parse_spec(raw, source=f"{self.name} with user priors")


def _prior_from_entry(entry: dict[str, Any]) -> Prior:
    kwargs = dict(entry.get("kwargs", {}))
    return Prior(entry["dist"], **kwargs)


def parse_spec(raw: dict[str, Any], source: str = "<dict>") -> ModelSpec:
    """Validate a spec dictionary, gathering every problem into one :class:`SpecError`."""
    problems: list[str] = []
    if raw.get("schema_version") != SCHEMA_VERSION:
        problems.append(f"schema_version must be {SCHEMA_VERSION}, got {raw.get('schema_version')!r}")
    law = None
    try:
        law = get_law(raw.get("law", "<missing>"))
    except ValueError as err:
        problems.append(str(err))
    likelihood = raw.get("likelihood", "student_t_log")
    if likelihood not in LIKELIHOODS:
        problems.append(f"likelihood {likelihood!r} is not one of {sorted(LIKELIHOODS)}")
    entries = raw.get("priors", {})
    if not isinstance(entries, dict):
        problems.append("priors must be a table of parameter -> {dist, kwargs, provenance}")
        entries = {}
    needed = list(law.sampled if law else ()) + list(NOISE_PARAMS.get(likelihood, ()))
    for name in needed:
        if name not in entries:
            problems.append(f"priors.{name} is missing")
    priors, provenance = {}, {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or "dist" not in entry:
            problems.append(f"priors.{name} needs a 'dist' key")
            continue
        try:
            priors[name] = _prior_from_entry(entry)
        except Exception as err:  # pymc_extras raises several types for bad distributions
            problems.append(f"priors.{name}: {err}")
        provenance[name] = entry.get("provenance", "")
        if not provenance[name]:
            problems.append(f"priors.{name} has no provenance (say where the default comes from)")
    if problems:
        raise SpecError(f"invalid model spec {source}:\n" + "\n".join(f"  - {p}" for p in problems))
    return ModelSpec(
        name=raw.get("name", source),
        law=law,
        likelihood=likelihood,
        priors=priors,
        provenance=provenance,
        sampler=dict(raw.get("sampler", {})),
        description=raw.get("description", ""),
        raw=raw,
    )


def load_spec(name_or_path: str | Path) -> ModelSpec:
    """Load a spec by name (``"chinchilla"``) or from a TOML file path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        for folder in spec_dirs():
            candidate = folder / f"{name_or_path}.toml"
            if candidate.is_file():
                path = candidate
                break
        else:
            raise SpecError(f"no model spec named {name_or_path!r}; shipped specs: {available_specs()}")
    if not path.is_file():
        raise SpecError(f"model spec file {path} does not exist")
    with open(path, "rb") as fh:
        try:
            raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise SpecError(f"model spec {path} is not valid TOML: {err}") from None
    if "extends" in raw:
        raw = _merged(load_spec(raw.pop("extends")).raw, raw)
    return parse_spec(raw, source=str(path))


def _merged(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``extends = "<spec>"``: the child's keys over the base's, table by table for
    ``priors`` and ``sampler`` (so a spec states only what it changes)."""
    out = {**copy.deepcopy(base), **{k: v for k, v in child.items() if k not in ("priors", "sampler")}}
    for table in ("priors", "sampler"):
        out[table] = {**base.get(table, {}), **child.get(table, {})}
    return out
