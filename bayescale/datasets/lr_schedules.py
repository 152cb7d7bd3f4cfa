"""Training-loss curves under seven learning-rate schedules (Luo et al. 2025, multi-power law)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._paths import locate
from ._table import read_csv, runs_table

SUB = "lr_schedules"
SOURCE = (
    "Luo et al. 2025, 'A Multi-Power Law for Loss Curve Prediction Across Learning Rate "
    "Schedules' (arXiv 2503.12811; github.com/thu-yao-01-luo/MultiPowerLaw, "
    "loss_curve_repo/, MIT)"
)
FAMILY = "luo2025"
#: Model sizes in millions of parameters (folder ``csv_<size>``); ``params`` is the nominal size.
SIZES = (25, 100, 400)
#: Every schedule, one CSV per size.
SCHEDULES = (
    "constant_24000",
    "cosine_24000",
    "wsd_20000_24000",
    "wsdld_20000_24000",
    "wsdcon_3",
    "wsdcon_9",
    "wsdcon_18",
)
#: The planned last step of each schedule (the runs' ``total_tokens`` / tokens_per_step).
PLANNED_STEPS = {s: (16_000 if s.startswith("wsdcon_") else 24_000) for s in SCHEDULES}
#: ASSUMPTION, not a fact of the source: 2**19 tokens per optimiser step.
TOKENS_PER_STEP = 2**19
PEAK_LR = 3.0e-4
WARMUP_STEPS = 2160
#: The curves Luo et al. fit their law to; the other four are their test curves.
LUO_TRAIN_SCHEDULES = ("cosine_24000", "constant_24000", "wsdcon_9")
#: The source's published mean relative error of its predicted test curves, by ``params``.
LUO_PUBLISHED_MRE = {25e6: 0.00110, 100e6: 0.00142, 400e6: 0.00168}
COLUMNS = ("step", "lr", "loss")


def _size(value) -> int:
    text = str(value).strip().lower().removesuffix("m")
    if not text.isdigit() or int(text) not in SIZES:
        raise ValueError(f"unknown size {value!r}; known sizes (millions of parameters): "
                         f"{list(SIZES)}")
    return int(text)


def _choose(value, known, name, parse=lambda v: v) -> list:
    if value is None:
        return list(known)
    if isinstance(value, (str, int)):
        value = [value]
    chosen = [parse(v) for v in value]
    unknown = [v for v in chosen if v not in known]
    if unknown:
        raise ValueError(f"unknown {name} {unknown}; known: {list(known)}")
    return list(dict.fromkeys(chosen))


def _read_curve(csv: Path) -> pd.DataFrame:
    """One CSV as float columns step, lr, loss; errors name the file, line and step."""
    raw = read_csv(csv, COLUMNS)
    if len(raw) == 0:
        raise ValueError(f"{csv}: no rows")
    df = pd.DataFrame({c: pd.to_numeric(raw[c], errors="coerce") for c in COLUMNS})

    def fail(mask, what):
        i = int(np.flatnonzero(mask)[0])
        where = f"line {i + 2} (data row {i}, step {raw['step'].astype(str).iloc[i]})"
        more = f"; {int(mask.sum()) - 1} more such row(s)" if mask.sum() > 1 else ""
        raise ValueError(f"{csv}: {where}: {what}{more}")

    for col in COLUMNS:
        bad = ~np.isfinite(df[col].to_numpy(dtype=float))
        if bad.any():
            fail(bad, f"'{col}' is missing or not a finite number")
    step = df["step"].to_numpy()
    if (step != np.round(step)).any() or (step <= 0).any():
        fail((step != np.round(step)) | (step <= 0), "'step' must be a positive whole number")
    if (df["loss"] <= 0).any():
        fail((df["loss"] <= 0).to_numpy(), "'loss' must be > 0")
    if (df["lr"] < 0).any():
        fail((df["lr"] < 0).to_numpy(), "'lr' must be >= 0")
    back = np.r_[False, np.diff(step) <= 0]
    if back.any():
        fail(back, "'step' does not increase (it must strictly increase down the file)")
    return df


def load_lr_schedules(
    path=None,
    *,
    sizes=None,
    schedules=None,
    tokens_per_step: float = TOKENS_PER_STEP,
) -> pd.DataFrame:
    """Load Luo et al.'s training-loss curves (3 sizes x 7 schedules) as a runs table.

    One row per (run, checkpoint), every 128 steps from just after warmup. Each size is
    its own ``family`` (``"luo2025-25m"``, ...): the sizes were not trained as a
    compute-optimal ladder (the same steps, batch and peak learning rate for every size),
    and their data terms differ -- fitted to the training curves only, leaving one schedule
    out at a time, one law for the three sizes missed the left-out curve by 0.23% (mean
    relative error), per-size data terms by 0.15% -- so a model pools the sizes' laws
    (:class:`~bayescale.parts.FamilyPooling`) instead of forcing one.  ``run`` =
    ``"<size>m-<schedule>"`` (e.g. ``"25m-cosine_24000"``); ``params`` = the source's nominal size
    (25e6, 100e6, 400e6); ``metric`` = ``"loss"`` (training loss, nats per token); ``value`` = the
    loss; ``n_items`` and ``chance`` NaN. ``tokens`` = step x ``tokens_per_step``; ``total_tokens``
    = the run's planned last step x ``tokens_per_step``, where the planned last step is 24,000 for
    the ``*_24000`` schedules and 16,000 for ``wsdcon_*``. Extra columns: ``size`` (``"25m"``...),
    ``lr_schedule`` (the schedule's name), ``step``, ``lr`` (the learning rate at that
    checkpoint, as the source gives it: the input of schedule-aware laws), ``lr_max``
    (3e-4), ``warmup_steps`` (2160) and ``warmup_tokens`` (``warmup_steps`` x
    ``tokens_per_step``). ``attrs`` also holds ``tokens_per_step``.

    Every schedule warms up linearly over 2160 steps to 3e-4, then: ``constant_24000``
    stays at 3e-4; ``cosine_24000`` decays by a cosine to 3e-5 at step 24000;
    ``wsd_20000_24000`` / ``wsdld_20000_24000`` stay constant to step 20000 then decay
    geometrically / linearly to 3e-5 at step 24000; ``wsdcon_<k>`` stays at 3e-4 to step
    8000 then drops to k x 1e-5 until step 16000. Luo et al. fit on
    :data:`LUO_TRAIN_SCHEDULES` and report the errors :data:`LUO_PUBLISHED_MRE` on the
    other curves.

    Known quirks (kept as is): ``cosine_24000`` rows sit at steps 2160, 2288, ... 23920,
    the others at 2176, 2304, ...; the 24000-step curves end at step 23936 (or 23904),
    so the cosine's last lr is 3.0009e-5, not 3e-5. The 25M ``wsdcon_*`` curves stop at
    step 14144 (planned 16000). Row gaps differ from 128 where a run was branched:
    ``wsdcon_*`` have a row at step 8000 (64 steps after 7936; its lr is already the
    dropped one), and the 25M/100M ``wsd*`` curves jump from 19840/19968 to 20064.
    Branched runs share their prefix: at 100M and 400M the rows of ``wsd*`` and
    ``wsdcon_*`` before the branch point are the very rows of ``constant_24000``
    (identical losses; the 400M ``wsd*`` drift apart slightly from step 16128 on);
    at 25M the ``wsd*`` and ``wsdcon_*`` curves share one prefix that is a different
    run from ``constant_24000``. The cosine runs share no rows with the others.

    Parameters
    ----------
    path : str or path, optional
        ``lr_schedules/`` (holding ``csv_25/`` ...) or its parent; default
        :func:`find_data_dir`.
    sizes : int, str or list, optional
        Model sizes in millions of parameters (``25``, ``"100m"``...); default all.
    schedules : str or list of str, optional
        Schedule names from :data:`SCHEDULES`; default all.
    tokens_per_step : float, default 2**19
        Tokens per optimiser step. The source does not give it: the default (524,288
        tokens, e.g. 256 sequences of 2048) is an ASSUMPTION. Steps are a consistent token
        axis across sizes (same data order and batch size), so only the data term's
        coefficient in raw tokens (``B`` of ``B / D^beta``) depends on this choice; laws in
        centred units (D / D0, D0 the geometric mean of ``tokens``) and every exponent do not.

    Returns
    -------
    pandas.DataFrame
        Runs table sorted by params, run and step: 21 runs, 2989 rows with every size and
        schedule.

    Raises
    ------
    FileNotFoundError
        If the folder or one of the requested CSV files is missing.
    ValueError
        Unknown size or schedule, non-positive ``tokens_per_step``, or a malformed CSV
        (missing column; a step, lr or loss that is missing or not finite; loss <= 0;
        lr < 0; steps not strictly increasing): the message names the file, its line and
        the step.

    Examples
    --------
    >>> runs = load_lr_schedules(sizes=[25], schedules=LUO_TRAIN_SCHEDULES)  # doctest: +SKIP
    >>> sorted(runs["run"].unique())  # doctest: +SKIP
    ['25m-constant_24000', '25m-cosine_24000', '25m-wsdcon_9']
    >>> runs.groupby("run")["lr"].last().round(7).tolist()  # doctest: +SKIP
    [0.0003, 3e-05, 9e-05]
    """
    if not (np.isfinite(tokens_per_step) and tokens_per_step > 0):
        raise ValueError(f"tokens_per_step must be a finite number > 0, got {tokens_per_step!r}")
    size_list = _choose(sizes, SIZES, "size(s)", _size)
    schedule_list = _choose(schedules, SCHEDULES, "schedule(s)")
    folder = locate(path, SUB)
    frames = []
    for size in size_list:
        for schedule in schedule_list:
            curve = _read_curve(folder / f"csv_{size}" / f"{schedule}.csv")
            step = curve["step"].to_numpy()
            frames.append(
                pd.DataFrame(
                    {
                        "family": f"{FAMILY}-{size}m",
                        "run": f"{size}m-{schedule}",
                        "params": size * 1e6,
                        "tokens": step * float(tokens_per_step),
                        "total_tokens": PLANNED_STEPS[schedule] * float(tokens_per_step),
                        "metric": "loss",
                        "value": curve["loss"].to_numpy(),
                        "size": f"{size}m",
                        "lr_schedule": schedule,
                        "step": step.astype(np.int64),
                        "lr": curve["lr"].to_numpy(),
                        "lr_max": PEAK_LR,
                        "warmup_steps": WARMUP_STEPS,
                        "warmup_tokens": WARMUP_STEPS * float(tokens_per_step),
                    }
                )
            )
    rows = pd.concat(frames, ignore_index=True).to_dict("records")
    df = runs_table(rows, dataset=SUB, source=SOURCE, param_count="total")
    df = df.sort_values(["params", "run", "step"], kind="stable").reset_index(drop=True)
    df.attrs["tokens_per_step"] = float(tokens_per_step)
    return df
