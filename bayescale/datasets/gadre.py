"""Gadre et al. 2024 over-training testbed: final C4 loss and 46 downstream accuracies."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ._paths import locate
from ._table import check_param_count, read_csv, read_json, runs_table

SUB = "gadre_overtrain"
SOURCE = (
    "Gadre et al. 2024, 'Language models scale reliably with over-training and on "
    "downstream tasks' (github.com/mlfoundations/scaling, exp_data/, MIT license)"
)
FAMILIES = {"c4_original": "c4", "rpj": "redpajama", "rw_original": "refinedweb"}
META_COLUMNS = ["Eval Task", "Task Category", "#shots", "#datapoints", "Random baseline"]
#: eval_metadata.csv gives arc_challenge 2376 items (copied from arc_easy); every
#: arc_challenge accuracy in evals/ is a multiple of 1/1172, the ARC-Challenge test size.
N_ITEMS_FIXES = {"arc_challenge": 1172}


def _norm(task: str) -> str:
    return str(task).strip().lower().replace("-", "_").replace(" ", "_")


def gadre_tasks(path=None, *, fetch: bool = False, cache_dir=None) -> pd.DataFrame:
    """Metadata of the downstream tasks, from ``eval_metadata.csv``.

    Parameters
    ----------
    path : str or path, optional
        ``gadre_overtrain/`` or its parent; default :func:`find_data_dir`.
    fetch, cache_dir
        As in :func:`load_gadre`.

    Returns
    -------
    pandas.DataFrame
        Columns ``task``, ``category``, ``type``, ``shots``, ``n_items`` (benchmark size;
        arc_challenge corrected to 1172, see ``N_ITEMS_FIXES``), ``n_items_csv`` (as
        written), ``chance`` (random-guess accuracy, a fraction = ``Random baseline`` / 100).

    Examples
    --------
    >>> tasks = gadre_tasks()  # doctest: +SKIP
    >>> tasks.set_index("task").loc["piqa", ["n_items", "chance"]].tolist()  # doctest: +SKIP
    [1838.0, 0.5]
    """
    folder = locate(path, SUB, fetch=fetch, cache_dir=cache_dir)
    csv = folder / "eval_metadata.csv"
    meta = read_csv(csv, META_COLUMNS)
    out = pd.DataFrame(
        {
            "task": meta["Eval Task"].astype(str).str.strip(),
            "category": meta["Task Category"],
            "type": meta.get("Task Type"),
            "shots": meta["#shots"].astype(float),
            "n_items_csv": meta["#datapoints"].astype(float),
            "chance": meta["Random baseline"].astype(float) / 100.0,
        }
    )
    out.insert(4, "n_items",
               out["task"].map(N_ITEMS_FIXES).fillna(out["n_items_csv"]).astype(float))
    if out["task"].duplicated().any():
        raise ValueError(f"{csv}: duplicated task names "
                         f"{out['task'][out['task'].duplicated()].tolist()}")
    return out


def _pick_loss(results, key: str, file: Path) -> float:
    hits = [r for r in results if any(key in str(v) for v in np.atleast_1d(r.get("val_data", [])))]
    if len(hits) != 1:
        seen = [r.get("val_data") for r in results]
        raise ValueError(f"{file}: expected one 'results' entry whose val_data contains {key!r}, "
                         f"found {len(hits)}; val_data: {seen}")
    return float(hits[0]["loss"])


def load_gadre(
    path=None,
    *,
    param_count: str = "total",
    loss: str = "c4_val",
    tasks="all",
    fetch: bool = False,
    cache_dir=None,
) -> pd.DataFrame:
    """Load the Gadre et al. (2024) models: one run per model, final checkpoint only.

    Families from ``dataset_name``: ``c4_original`` -> ``"c4"``, ``rpj`` -> ``"redpajama"``,
    ``rw_original`` -> ``"refinedweb"``. ``run`` is the model name (e.g.
    ``"rw_original-d=96_l=8_h=4-1.0"``); ``tokens`` = ``total_tokens`` = D; extra columns
    ``multiplier`` (tokens / (20 N)), ``arch`` (``"d=96_l=8_h=4"`` or ``"open_lm_1b"``),
    ``lr_max``. The ``"loss"`` row is per-token cross-entropy (nats) on the validation
    set named by ``loss``; ``"acc:<task>"`` rows come from
    ``evals/evaluation_<name>_heavy.json`` (``eval_metrics.icl``), with ``n_items`` and
    ``chance`` from :func:`gadre_tasks`.

    Known quirks (kept as is): c4 has no 0.41B model at multiplier 32; the c4 0.41B
    model at multiplier 8 has a higher loss than at multiplier 4; the RefinedWeb 1.4B
    models are at multipliers 1 and 16. mmlu, bbq and jeopardy accuracies are averages
    over sub-tasks, so ``n_items`` overstates their precision a little.

    Parameters
    ----------
    path : str or path, optional
        ``gadre_overtrain/`` or its parent; default :func:`find_data_dir`.
    param_count : {"total", "non_embedding"}
        ``hyperparameters.params`` or ``hyperparameters.params_no_embed``.
    loss : str, default "c4_val"
        Substring of the ``val_data`` path selecting the upstream loss (e.g.
        ``"paloma_falcon-refinedweb"``).
    tasks : "all", None or list of str
        Downstream tasks to include; None gives loss rows only.
    fetch : bool, default False
        If no local copy is found, download the files (sha256-checked) into ``cache_dir``.
    cache_dir : str or path, optional
        Download cache; default the user cache folder.

    Returns
    -------
    pandas.DataFrame
        Runs table. Nothing is dropped: every model has been trained (tokens > 0).

    Raises
    ------
    FileNotFoundError
        Missing folder, model or eval file (named).
    ValueError
        Malformed file, unknown ``dataset_name``, no val_data matching ``loss``,
        or unknown task names.

    Examples
    --------
    >>> runs = load_gadre(tasks=["piqa"])  # doctest: +SKIP
    >>> sorted(runs["family"].unique())  # doctest: +SKIP
    ['c4', 'redpajama', 'refinedweb']
    """
    check_param_count(param_count)
    if isinstance(tasks, str) and tasks != "all":
        tasks = [tasks]
    folder = locate(path, SUB, fetch=fetch, cache_dir=cache_dir)
    files = sorted((folder / "models").glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no model files: {folder / 'models' / '*.json'}")
    meta = (gadre_tasks(folder).assign(key=lambda m: m["task"].map(_norm)).set_index("key")
            if tasks is not None else None)
    n_key = "params" if param_count == "total" else "params_no_embed"
    rows, unmatched, seen = [], set(), set()
    for file in files:
        m = read_json(file)
        try:
            name, hp = m["name"], m["hyperparameters"]
            family = FAMILIES[m["dataset_name"]]
            base = {
                "family": family,
                "run": name,
                "params": hp[n_key],
                "tokens": hp["tokens"],
                "total_tokens": hp["tokens"],
                "multiplier": float(hp["chinchilla_multiplier"]),
                "arch": Path(hp["model"]).stem,
                "lr_max": hp.get("lr", np.nan),
            }
            results = m["results"]
        except KeyError as err:
            raise ValueError(f"{file}: missing key or unknown dataset_name {err} (known: "
                             f"{sorted(FAMILIES)})") from None
        rows.append({**base, "metric": "loss", "value": _pick_loss(results, loss, file)})
        if tasks is None or meta is None:  # meta is None exactly when tasks is
            continue
        ev_file = folder / "evals" / f"evaluation_{name}_heavy.json"
        try:
            icl = read_json(ev_file)["eval_metrics"]["icl"]
        except KeyError:
            raise ValueError(f"{ev_file}: no eval_metrics.icl") from None
        for task, acc in icl.items():
            seen.add(task)
            if tasks != "all" and task not in tasks:
                continue
            key = _norm(task)
            if key not in meta.index:
                unmatched.add(task)
            info = meta.loc[key] if key in meta.index else {"n_items": np.nan, "chance": np.nan}
            rows.append({**base, "metric": f"acc:{task}", "value": acc, "n_items": info["n_items"],
                         "chance": info["chance"]})
    if tasks not in (None, "all") and set(tasks) - seen:
        raise ValueError(f"unknown Gadre task(s) {sorted(set(tasks) - seen)}; available: "
                         f"{sorted(seen)}")
    if unmatched:
        warnings.warn(
            f"tasks with no row in {folder / 'eval_metadata.csv'} (n_items and chance left NaN): "
            f"{sorted(unmatched)}",
            stacklevel=2,
        )
    return runs_table(rows, dataset="gadre_overtrain", source=SOURCE, param_count=param_count)
