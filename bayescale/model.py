"""A model is data: a scaling law plus parts, with priors and sampler defaults.

``Model(law, parts)`` describes a whole generative model; the package ships presets as
TOML files in ``models/`` (``bayescale.available_models()`` lists them), which name the
law, the parts with their options, prior overrides with provenance, and sampler defaults,
and may ``extends`` another preset.  A model's priors are its law's and its parts'
defaults (each documented where it is defined) with the preset's or the user's overrides
on top.  :func:`bayescale.fit` takes a preset name, a TOML path or a ``Model``.

Preset file format (``format = 2``)::

    format = 2
    name = "checkpoints"
    extends = "chinchilla"            # optional: start from another preset
    description = "one line"
    law = "chinchilla"
    drop = ["drift"]                  # optional: parts of the parent to leave out
    [parts.checkpoints]               # one table per part, keyed by its lookup_name
    min_fraction = 0.05
    [parts.run_effect]
    [priors.E]                        # prior overrides, each with its provenance
    dist = "LogNormal"
    kwargs = { mu = -0.7, sigma = 0.5 }
    provenance = "why"
    [sampler]
    target_accept = 0.95

Example
-------
>>> from bayescale.model import Model, load_model
>>> from bayescale.parts import Checkpoints, RunEffect
>>> model = Model("chinchilla", parts=[Checkpoints(), RunEffect()])
>>> [p.lookup_name for p in model.parts]
['checkpoints', 'noise', 'run_effect']
>>> load_model("chinchilla").law.lookup_name
'chinchilla'
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, cast

import pandas as pd
from pymc_extras.prior import Prior

from .laws import get_law
from .parts import ModelError, Noise, Part, get_part

FORMAT = 2
SAMPLER_KEYS = ("draws", "tune", "chains", "target_accept", "mass_matrix", "low_rank_cutoff")


@dataclass(frozen=True)
class Model:
    """A scaling law plus model parts (see the module docstring).

    Parameters
    ----------
    law
        A registered law's name (``"chinchilla"``, ``"kaplan"``, ``"gadre"``, ``"compute"``) or a
        :class:`~bayescale.laws.ScalingLaw`.
    parts
        :class:`~bayescale.parts.Part` objects (or their dicts / lookup names).  A
        :class:`~bayescale.parts.Noise` part is added when none is given.
    prior_overrides
        ``{name: {"dist": ..., "kwargs": {...}, "provenance": ...}}`` or ``{name: Prior}``,
        replacing the law's or a part's default prior of ``name``.
    sampler
        Default sampler settings (``draws``, ``tune``, ``chains``, ``target_accept``,
        ``mass_matrix``, ``low_rank_cutoff``).
    """

    law: Any = "chinchilla"
    parts: tuple = ()
    prior_overrides: dict = field(default_factory=dict)
    sampler: dict = field(default_factory=dict)
    name: str = "custom"
    description: str = ""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "law", get_law(self.law))
        except ValueError as err:
            raise ModelError(f"model {self.name!r}: {err}") from None
        parts = [get_part(p) for p in self.parts]
        if not any(p.lookup_name == "noise" for p in parts):
            parts.append(Noise())
        seen: dict[str, str] = {}
        for p in parts:
            for key in {p.lookup_name, p.slot}:
                if key is not None and key in seen:
                    raise ModelError(f"model {self.name!r}: two parts fill {key!r} ({seen[key]} "
                                     f"and {p.lookup_name})")
                if key is not None:
                    seen[key] = p.lookup_name
        object.__setattr__(self, "parts", tuple(sorted(parts, key=lambda p: p.order)))
        overrides = {k: (v.to_dict() if isinstance(v, Prior) else dict(v))
                     for k, v in dict(self.prior_overrides).items()}
        object.__setattr__(self, "prior_overrides", overrides)
        object.__setattr__(self, "sampler", dict(self.sampler))
        unknown = sorted(set(self.sampler) - set(SAMPLER_KEYS))
        if unknown:
            raise ModelError(f"model {self.name!r}: unknown sampler setting(s) {unknown}; known: "
                             f"{list(SAMPLER_KEYS)}")
        defaults = self._defaults()
        for name, entry in overrides.items():
            if name not in defaults:
                raise ModelError(f"model {self.name!r}: a prior for {name!r}, which no part of the "
                                 f"model has; its parameters are {sorted(defaults)}")
            try:
                _prior(entry)
            except Exception as err:  # noqa: BLE001 - pymc_extras raises several kinds
                raise ModelError(f"model {self.name!r}: prior {name!r} is invalid: {err}") from None
        for p in self.parts:
            p.check(self)

    # ------------------------------------------------------------------ parts
    def part(self, name: str) -> Part | None:
        """The part with this lookup name or slot (e.g. ``"schedule"``), or None."""
        for p in self.parts:
            if name in (p.lookup_name, p.slot):
                return p
        return None

    @property
    def noise(self) -> Noise:
        """The model's :class:`~bayescale.parts.Noise` part (every model has one)."""
        return cast(Noise, self.part("noise"))  # __post_init__ adds one when none is given

    def with_parts(self, *parts: Part, drop: tuple[str, ...] = ()) -> Model:
        """A copy with ``parts`` added (replacing those of the same name or slot), less ``drop``."""
        new = [get_part(p) for p in parts]
        names = {n for p in new for n in (p.lookup_name, p.slot) if n} | set(drop)
        kept = [p for p in self.parts if p.lookup_name not in names
                and (p.slot is None or p.slot not in names)]
        return replace(self, parts=tuple(kept + new), name=f"{self.name} (modified)")

    def with_priors(self, overrides: dict[str, Any] | None) -> Model:
        """A copy with some priors replaced (``{name: dict or Prior}``)."""
        if not overrides:
            return self
        entries = {}
        for name, prior in overrides.items():
            entry = prior.to_dict() if isinstance(prior, Prior) else dict(prior)
            entry.setdefault("provenance", "set by the user")
            entries[name] = entry
        return replace(self, prior_overrides={**self.prior_overrides, **entries})

    def resolve(self, rows: pd.DataFrame) -> Model:
        """The model with data-dependent choices made (e.g. a schedule term's ``source="auto"``)."""
        parts = tuple(p.resolve(rows) for p in self.parts)
        return self if parts == self.parts else replace(self, parts=parts)

    # ------------------------------------------------------------------ priors
    def _defaults(self) -> dict:
        out = dict(self.law.priors())
        for p in self.parts:
            out.update(p.priors())
        return out

    @property
    def priors(self) -> dict[str, Prior]:
        """``{parameter: Prior}`` for every parameter of the law and the parts."""
        out = {k: d.prior for k, d in self._defaults().items()}
        out.update({k: _prior(v) for k, v in self.prior_overrides.items()})
        return out

    @property
    def provenance(self) -> dict[str, str]:
        """``{parameter: where its prior comes from}``."""
        out = {k: d.provenance for k, d in self._defaults().items()}
        out.update({k: v.get("provenance", "set by the user")
                    for k, v in self.prior_overrides.items()})
        return out

    def variables(self) -> list[str]:
        """Posterior variables diagnostics watch: the law's parameters and each part's."""
        names = list(self.law.sampled)
        for p in self.parts:
            names += [n for n in p.variables(self) if n not in names]
        return names

    # ------------------------------------------------------------------ data form
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (what a saved fit stores)."""
        return {
            "format": FORMAT,
            "name": self.name,
            "description": self.description,
            "law": self.law.lookup_name,
            "parts": {p.lookup_name: {k: v for k, v in p.to_dict().items() if k != "part"}
                      for p in self.parts},
            "priors": copy.deepcopy(self.prior_overrides),
            "sampler": dict(self.sampler),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Model:
        """Rebuild a model from :meth:`to_dict` (or a preset file's table, ``extends`` resolved)."""
        if data.get("format") != FORMAT:
            raise ModelError(f"{source}: model description format {data.get('format')!r}; this "
                             f"version of bayescale reads format {FORMAT}")
        unknown = sorted(set(data) - {"format", "name", "description", "law", "parts", "priors",
                                      "sampler", "extends",
                                      "drop"})
        if unknown:
            raise ModelError(f"{source}: unknown key(s) {unknown}")
        parts = [get_part({"part": name, **(options or {})})
                 for name, options in data.get("parts", {}).items()]
        return cls(law=data.get("law", "chinchilla"), parts=tuple(parts),
                   prior_overrides=data.get("priors", {}),
                   sampler=data.get("sampler", {}), name=data.get("name", Path(source).stem),
                   description=data.get("description", ""))

    def to_json(self) -> str:
        """The canonical JSON of :meth:`to_dict` (sorted keys): what :meth:`hash` hashes."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def hash(self) -> str:
        """Short SHA-256 of the canonical JSON description."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def __str__(self) -> str:
        lines = [f"model {self.name!r}: {self.description}".rstrip(": "),
                 f"  law    {self.law.lookup_name}: {self.law.equation}"]
        for p in self.parts:
            options = ", ".join(f"{k}={v!r}" for k, v in p.to_dict().items() if k != "part")
            lines.append(f"  part   {p.lookup_name}({options})")
        for name, entry in self.prior_overrides.items():
            lines.append(f"  prior  {name} ~ {entry.get('dist')}({entry.get('kwargs', {})})")
        return "\n".join(lines)


def _prior(entry: dict[str, Any]) -> Prior:
    return Prior(entry["dist"], **dict(entry.get("kwargs", {})))


# ============================================================================ presets
def model_dirs() -> list[Path]:
    """Folders searched for ``<name>.toml``: the wheel's copy, then the source tree's."""
    dirs = []
    shipped = resources.files("bayescale") / "_models"
    if shipped.is_dir():
        dirs.append(Path(str(shipped)))
    source = Path(__file__).resolve().parent.parent / "models"
    if source.is_dir():
        dirs.append(source)
    return dirs


def _preset_path(name: str) -> Path:
    for d in model_dirs():
        path = d / f"{name}.toml"
        if path.is_file():
            return path
    raise ModelError(f"unknown model {name!r}; presets: {available_models()} (or give a path to a "
                     ".toml file)")


def _read_preset(path: Path, chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """A preset file's table with ``extends`` merged in (parts, priors and sampler by key)."""
    if str(path) in chain:
        raise ModelError(f"{path}: 'extends' loops back to itself ({' -> '.join(chain)})")
    with open(path, "rb") as fh:
        try:
            raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise ModelError(f"{path}: not valid TOML: {err}") from None
    parent_name = raw.pop("extends", None)
    if parent_name is None:
        raw.pop("drop", None)
        return raw
    parent = _read_preset(_preset_path(parent_name), (*chain, str(path)))
    merged = {**parent,
              **{k: v for k, v in raw.items() if k not in ("parts", "priors", "sampler", "drop")}}
    for key in ("parts", "priors", "sampler"):
        merged[key] = {**parent.get(key, {}), **raw.get(key, {})}
    for name in raw.get("drop", []):
        if name not in merged["parts"]:
            raise ModelError(f"{path}: drop = [{name!r}], but {parent_name!r} has no such part")
        del merged["parts"][name]
    return merged


def load_model(model: str | os.PathLike | Model) -> Model:
    """A model from a preset name (``"chinchilla"``, ``"checkpoints"`` ...), TOML path or Model."""
    if isinstance(model, Model):
        return model
    text = str(model)
    path = Path(text)
    if text.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise ModelError(f"no model file at {path}")
        return Model.from_dict(_read_preset(path), source=str(path))
    return Model.from_dict(_read_preset(_preset_path(text)), source=text)


def available_models() -> dict[str, str]:
    """``{preset name: one-line description}`` of the shipped presets."""
    names = sorted({p.stem for d in model_dirs() for p in d.glob("*.toml")})
    return {name: load_model(name).description for name in names}


def auto_model(table: pd.DataFrame, law: str = "chinchilla") -> Model:
    """The shape default for ``table``: the first candidate of ``fit(runs)`` (``model="auto"``).

    * A table with an ``lr`` column (the learning rate at each checkpoint) whose runs have
      several checkpoints: ``"multi_power"``, the only preset that reads the schedule from
      the rows (without family pooling when there is one family).
    * Otherwise the final-loss preset named ``law`` (``"chinchilla"``, ``"kaplan"`` or
      ``"compute"``), with :class:`~bayescale.parts.FamilyPooling` when the table has
      several families and a :class:`~bayescale.parts.RunEffect` when some configuration
      (family, params, total tokens) has several runs (seeds).

    :mod:`bayescale.model_choice` compares this model with the other candidates.

    Example
    -------
    >>> import bayescale
    >>> runs, _ = bayescale.simulate_ladder(seed=0)
    >>> auto_model(bayescale.read_runs(runs)).name
    'chinchilla'
    >>> auto_model(bayescale.read_runs(runs), law="kaplan").name
    'kaplan'
    """
    from .parts import FamilyPooling, RunEffect

    if "lr" in table and table.groupby("run")["tokens"].nunique().max() > 1:
        model = load_model("multi_power")
        if table["family"].nunique() > 1:
            return model
        return replace(model.with_parts(drop=("family_pooling",)),
                       name="multi_power - family_pooling")
    model = load_model(law)
    extra: list[Part] = []
    if table["family"].nunique() > 1:
        extra.append(FamilyPooling())
    if (table.groupby(["family", "params", "total_tokens"])["run"].nunique() > 1).any():
        extra.append(RunEffect())
    if not extra:
        return model
    named = " + ".join(p.lookup_name for p in extra)
    return replace(model.with_parts(*extra), name=f"{law} + {named}")
