"""Save a fit to one NetCDF file and load it back, ready to predict.

The file is the fit's InferenceData plus a ``runs`` group (the fitted rows) and JSON attrs
on the posterior: the model tree (law, parts by ``lookup_name`` with their options, prior
overrides; see :meth:`bayescale.model.Model.to_dict`), centring constants, sampler settings
and provenance.  Loading rebuilds the model from the stored tree, so predictions do not
depend on the presets installed at load time, and refuses a file written by another format
version, naming the bayescale version that wrote it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import arviz as az
import xarray as xr

from .model import Model
from .parts import ModelError
from .result import ScalingFit
from .runs import Scale
from .sampling import SamplerConfig
from .schedules import Schedule

#: 2: models built from parts (``model``); 1: structure options and a spec (bayescale 0.1).
FORMAT_VERSION = 2
ATTR = "bayescale"


def save_fit(fit: ScalingFit, path) -> Path:
    """Write ``fit`` to ``path`` (NetCDF4). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    idata = fit.idata.copy()
    meta = {
        "format_version": FORMAT_VERSION,
        "written_by": fit.info.get("versions", {}).get("bayescale", "unknown"),
        "model": fit.model.to_dict(),
        "model_hash": fit.model.hash(),
        "scale": {"N0": fit.scale.N0, "D0": fit.scale.D0},
        "sampler": fit.sampler_config.to_dict(),
        "metric": fit.metric,
        "info": fit.info,
        "families": fit.families,
        "run_names": fit.run_names,
        "schedule": fit.schedule.to_dict() if fit.schedule else None,
    }
    idata["posterior"].attrs[ATTR] = json.dumps(meta, default=str)
    runs = fit.runs.reset_index(drop=True).copy()
    runs.index.name = "row"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # arviz warns about the non-standard group
        groups = {"runs": xr.Dataset.from_dataframe(runs)}
        if fit.acc_rows is not None:
            acc = fit.acc_rows.reset_index(drop=True).copy()
            acc.index.name = "row"
            groups["acc_runs"] = xr.Dataset.from_dataframe(acc)
        idata.add_groups(groups)
        idata.to_netcdf(str(path))
    return path


def load_fit(path) -> ScalingFit:
    """Load a fit written by :meth:`ScalingFit.save`.

    Example
    -------
    >>> fit = bayescale.load_fit("fit.nc")  # doctest: +SKIP
    >>> fit.predict({"params": 7e9, "tokens": 1.4e11})  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no fit file at {path}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        idata = az.from_netcdf(str(path))
    raw = idata.posterior.attrs.get(ATTR)
    if raw is None:
        raise ValueError(f"{path} is an InferenceData file but was not written by bayescale (no "
                         f"'{ATTR}' attribute)")
    meta = json.loads(raw)
    if meta.get("format_version") != FORMAT_VERSION:
        writer = (meta.get("written_by")
                  or meta.get("info", {}).get("versions", {}).get("bayescale", "unknown"))
        raise ValueError(f"{path} was written by bayescale {writer} in file format "
                         f"{meta.get('format_version')}; this version reads format "
                         f"{FORMAT_VERSION}: refit the model, or load the file with the version "
                         "that wrote it")
    try:
        model = Model.from_dict(meta["model"], source=str(path))
    except ModelError as err:
        raise ValueError(f"{path}: the stored model cannot be rebuilt: {err}") from None
    if model.hash() != meta["model_hash"]:
        raise ValueError(f"{path}: the stored model does not match its hash; the file may be "
                         "corrupt")
    runs = _table(idata, "runs")
    acc_rows = _table(idata, "acc_runs") if "acc_runs" in idata.groups() else None
    idata_clean = az.InferenceData(**{g: idata[g] for g in idata.groups()
                                      if g not in ("runs", "acc_runs")})
    return ScalingFit(
        idata=idata_clean,
        model=model,
        scale=Scale(**meta["scale"]),
        runs=runs,
        sampler_config=SamplerConfig(**meta["sampler"]),
        metric=meta["metric"],
        info=meta["info"],
        families=list(meta["families"]),
        run_names=list(meta["run_names"]),
        schedule=Schedule(**meta["schedule"]) if meta["schedule"] else None,
        acc_rows=acc_rows,
    )


def _table(idata: az.InferenceData, group: str):
    table = idata[group].to_dataframe().reset_index(drop=True)
    for col in table.columns:
        if table[col].dtype == object:
            table[col] = table[col].astype(str)
    return table
