"""Pythia training checkpoints: LAMBADA loss and zero-shot accuracies along each run."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ._paths import locate
from ._table import check_param_count, read_json, runs_table

SUB = "pythia"
SOURCE = (
    "Biderman et al. 2023, 'Pythia: A Suite for Analyzing Large Language Models Across "
    "Training and Scaling' (github.com/EleutherAI/pythia, evals/pythia-v1/*/zero-shot, Apache-2.0)"
)
TOKENS_PER_STEP = 2_097_152  # 1024 sequences x 2048 tokens
TOTAL_STEPS = 143_000
WARMUP_FRACTION = 0.01
FINAL_LR_FRACTION = 0.1
DEFAULT_TASKS = ("lambada_openai", "arc_easy", "arc_challenge", "piqa", "sciq", "winogrande",
                 "logiqa", "wsc")
#: Test-set sizes; each agrees with acc_stderr = sqrt(p (1 - p) / (n - 1)) in every file.
N_ITEMS = {"lambada_openai": 5153, "arc_easy": 2376, "arc_challenge": 1172, "piqa": 1838,
           "sciq": 1000, "winogrande": 1267, "logiqa": 651, "wsc": 104}
CHANCE = {"lambada_openai": 0.0, "arc_easy": 0.25, "arc_challenge": 0.25, "piqa": 0.5,
          "sciq": 0.25, "winogrande": 0.5, "logiqa": 0.25, "wsc": 0.5}
#: Used when the folder has no models.csv (e.g. after fetch=True): Biderman et al. 2023, Table 1.
MODELS = pd.DataFrame(
    {
        "size": ["70m", "160m", "410m", "1b", "1.4b", "2.8b"],
        "total_params": [70426624, 162322944, 405334016, 1011781632, 1414647808, 2775208960],
        "non_embedding_params": [18915328, 85056000, 302311424, 805736448, 1208602624, 2517652480],
        "max_lr": [1.0e-3, 6.0e-4, 3.0e-4, 3.0e-4, 2.0e-4, 1.6e-4],
    }
)
_RUN = re.compile(r"^pythia-(?P<size>\d+(?:\.\d+)?[mb])(?P<tags>(?:-[\w.]+)*)$")
_STEP = re.compile(r"_step(\d+)\.json$")


def _chance(task: str) -> float:
    return CHANCE.get(task, 0.25 if task.startswith("hendrycksTest-") else np.nan)


def _models(folder: Path) -> pd.DataFrame:
    csv = folder / "models.csv"
    if not csv.is_file():
        return MODELS.set_index("size")
    df = pd.read_csv(csv, dtype={"size": str})
    missing = {"size", "total_params", "non_embedding_params", "max_lr"} - set(df.columns)
    if missing:
        raise ValueError(f"{csv}: missing column(s) {sorted(missing)}")
    return df.set_index("size")


def load_pythia(
    path=None,
    *,
    param_count: str = "total",
    tasks="default",
    min_step: int = 1,
    fetch: bool = False,
    cache_dir=None,
) -> pd.DataFrame:
    """Load the Pythia zero-shot evaluations at every checkpoint as a runs table.

    Families: ``"pile"`` (standard) and ``"deduped"``. ``run`` is the folder name
    (``"pythia-70m"``, ``"pythia-1b-bf16"``, ``"pythia-70m-deduped"``...); extra columns
    ``size`` (``"70m"``...), ``step``, ``stderr`` (the harness's acc_stderr), ``lr_max``,
    ``warmup_fraction`` (0.01), ``final_lr_fraction`` (0.1), ``schedule`` (``"cosine"``:
    decay from lr_max to 0.1 lr_max over 143,000 steps after 1 % warmup).
    ``tokens`` = step x 2,097,152; ``total_tokens`` = 143,000 x 2,097,152.
    ``"loss"`` = ln(LAMBADA perplexity): mean negative log-likelihood (nats) of the last
    word of each passage, not a per-token validation loss. ``"acc:<task>"`` from
    ``results.<task>.acc``, with ``n_items`` (test-set size; for tasks outside
    :data:`N_ITEMS` inferred from acc_stderr) and ``chance`` (MMLU subjects 0.25).

    Known quirks (kept as is): ``pythia-2.8b`` and ``pythia-2.8b-deduped`` agree to
    about 1e-4 at every checkpoint through step 43000, unlike other size pairs, so one
    folder may hold the other family's results: treat 2.8b-deduped with caution. The
    LAMBADA loss of small models rises late (70m bottoms near step 53000 at about 4.55
    and ends at 4.96; 160m-deduped jumps at step 123000): curves are not monotone.
    Checkpoints up to step ~64 are essentially untrained (loss ~15). In
    ``pythia-1b-bf16`` the steps 128-1000 files are named ``*-5shot_*`` but are
    zero-shot (their config says num_fewshot = 0); files whose config has
    num_fewshot != 0 are skipped with a warning. models.csv gives the 1b max_lr as
    3e-4 (paper); the GPT-NeoX config of pythia-1b says 2.5e-4.

    Parameters
    ----------
    path : str or path, optional
        ``pythia/`` (holding ``pythia-v1/`` and ``models.csv``) or its parent;
        default :func:`find_data_dir`.
    param_count : {"total", "non_embedding"}
        ``total_params`` or ``non_embedding_params`` of models.csv.
    tasks : "default", "all", None or list of str
        ``"default"``: :data:`DEFAULT_TASKS`; ``"all"``: every task with an ``acc``
        (the 8 defaults and 57 MMLU subjects); None: loss rows only.
    min_step : int, default 1
        Checkpoints with step < min_step are dropped; the default drops step 0
        (tokens = 0). Use 0 to keep it.
    fetch : bool, default False
        If no local copy is found, download the files (sha256-checked) into ``cache_dir``.
    cache_dir : str or path, optional
        Download cache; default the user cache folder.

    Returns
    -------
    pandas.DataFrame
        Runs table sorted by family, params, run and step.

    Raises
    ------
    FileNotFoundError
        Missing folder or evaluation files.
    ValueError
        Malformed file, unknown model size, duplicated step, or unknown task names.

    Examples
    --------
    >>> runs = load_pythia(tasks=None)  # doctest: +SKIP
    >>> runs.groupby("run")["step"].nunique().unique()  # doctest: +SKIP
    array([26])
    """
    check_param_count(param_count)
    if isinstance(tasks, str) and tasks not in ("default", "all"):
        tasks = [tasks]
    wanted = DEFAULT_TASKS if tasks == "default" else tasks
    folder = locate(path, SUB, fetch=fetch, cache_dir=cache_dir)
    models = _models(folder)
    run_dirs = sorted(d for d in (folder / "pythia-v1").glob("pythia-*") if d.is_dir())
    if not run_dirs:
        raise FileNotFoundError(f"no run folders: {folder / 'pythia-v1' / 'pythia-*'}")
    n_col = "total_params" if param_count == "total" else "non_embedding_params"
    rows, seen = [], set()
    for run_dir in run_dirs:
        match = _RUN.match(run_dir.name)
        if match is None or match["size"] not in models.index:
            raise ValueError(f"{run_dir}: unknown Pythia model size (known: {list(models.index)})")
        size = match["size"]
        base = {
            "family": "deduped" if "-deduped" in match["tags"] else "pile",
            "run": run_dir.name,
            "params": models.loc[size, n_col],
            "total_tokens": float(TOTAL_STEPS * TOKENS_PER_STEP),
            "size": size,
            "lr_max": float(models["max_lr"][size]),
            "warmup_fraction": WARMUP_FRACTION,
            "final_lr_fraction": FINAL_LR_FRACTION,
            "schedule": "cosine",
        }
        files = sorted((run_dir / "zero-shot").glob("*.json"))
        if not files:
            raise FileNotFoundError(f"no evaluation files: {run_dir / 'zero-shot' / '*.json'}")
        steps: dict[int, Path] = {}
        for file in files:
            m = _STEP.search(file.name)
            if m is None:
                raise ValueError(f"{file}: cannot read the step from the file name")
            step = int(m[1])
            if step < min_step:
                continue
            data = read_json(file)
            if data.get("config", {}).get("num_fewshot", 0) != 0:
                warnings.warn(f"skipping {file}: not a zero-shot evaluation", stacklevel=2)
                continue
            if step in steps:
                raise ValueError(f"{run_dir}: step {step} appears twice ({steps[step].name}, "
                                 f"{file.name})")
            steps[step] = file
            try:
                results = data["results"]
                loss = math.log(results["lambada_openai"]["ppl"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{file}: no valid results.lambada_openai.ppl") from None
            point = {**base, "step": step, "tokens": float(step * TOKENS_PER_STEP)}
            rows.append({**point, "metric": "loss", "value": loss, "stderr": np.nan})
            if wanted is None:
                continue
            for task, res in results.items():
                if "acc" not in res:
                    continue
                seen.add(task)
                if wanted == "all" or task in wanted:
                    rows.append({**point, "metric": f"acc:{task}", "value": res["acc"],
                                 "stderr": res.get("acc_stderr", np.nan), "chance": _chance(task)})
    if wanted not in (None, "all") and set(wanted) - seen:
        raise ValueError(f"unknown Pythia task(s) {sorted(set(wanted) - seen)}; available: "
                         f"{sorted(seen)}")
    if not rows:
        raise ValueError(f"{folder}: no checkpoints with step >= {min_step}")
    df = runs_table(rows, dataset="pythia", source=SOURCE, param_count=param_count)
    df["n_items"] = df["metric"].str.removeprefix("acc:").map(N_ITEMS).fillna(_infer_n_items(df))
    extras = ["size", "step", "stderr", "lr_max", "warmup_fraction", "final_lr_fraction",
              "schedule"]
    df = df[[c for c in df.columns if c not in extras] + [c for c in extras if c in df]]
    return df.sort_values(["family", "params", "run", "step"], kind="stable").reset_index(drop=True)


def _infer_n_items(df: pd.DataFrame) -> pd.Series:
    """Per row, n = median over the task's rows of p (1 - p) / stderr^2 + 1 (0 < p < 1)."""
    p, se = df["value"], df["stderr"]
    ok = (p > 0) & (p < 1) & (se > 0) & df["metric"].str.startswith("acc:")
    n = (p * (1 - p) / se**2 + 1).where(ok).round()
    return n.groupby(df["metric"]).transform("median")
