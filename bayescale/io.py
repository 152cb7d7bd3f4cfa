"""Save a fit to one NetCDF file and load it back, ready to predict.

The file is the fit's InferenceData plus a ``runs`` group (the fitted rows) and JSON attrs
on the posterior: the model spec, centring constants, sampler settings and provenance.
Loading rebuilds the spec from the stored JSON, so predictions do not depend on the specs
installed at load time, and refuses files written by an incompatible format version.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import arviz as az
import xarray as xr

from .design import ModelOptions
from .result import ScalingFit
from .schedules import Schedule
from .runs import Scale
from .sampling import SamplerConfig
from .spec import parse_spec

FORMAT_VERSION = 1
ATTR = "bayescale"


def save_fit(fit: ScalingFit, path) -> Path:
    """Write ``fit`` to ``path`` (NetCDF4). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    idata = fit.idata.copy()
    meta = {
        "format_version": FORMAT_VERSION,
        "spec": fit.spec.to_dict(),
        "spec_hash": fit.spec.hash(),
        "scale": {"N0": fit.scale.N0, "D0": fit.scale.D0},
        "sampler": fit.sampler_config.to_dict(),
        "metric": fit.metric,
        "info": fit.info,
        "options": fit.options.to_dict(),
        "families": fit.families,
        "run_names": fit.run_names,
        "schedule": fit.schedule.to_dict() if fit.schedule else None,
    }
    idata.posterior.attrs[ATTR] = json.dumps(meta, default=str)
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
        raise ValueError(f"{path} is an InferenceData file but was not written by bayescale (no '{ATTR}' attribute)")
    meta = json.loads(raw)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has bayescale format {meta.get('format_version')}, this version reads {FORMAT_VERSION}")
    spec = parse_spec(meta["spec"], source=str(path))
    if spec.hash() != meta["spec_hash"]:
        raise ValueError(f"{path}: the stored model spec does not match its hash; the file may be corrupt")
    runs = _table(idata, "runs")
    acc_rows = _table(idata, "acc_runs") if "acc_runs" in idata.groups() else None
    idata_clean = az.InferenceData(**{g: idata[g] for g in idata.groups() if g not in ("runs", "acc_runs")})
    return ScalingFit(
        idata=idata_clean,
        spec=spec,
        scale=Scale(**meta["scale"]),
        runs=runs,
        sampler_config=SamplerConfig(**meta["sampler"]),
        metric=meta["metric"],
        info=meta["info"],
        options=ModelOptions(**meta["options"]),
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
