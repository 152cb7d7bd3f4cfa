"""Which rows of a run the model fits: every checkpoint (this part) or the final one.

Without this part a model fits each run's last checkpoint only.  With it, every
checkpoint from ``min_fraction`` of its run on is fitted jointly; the parts that describe a
run's course (drift, AR(1) residuals, run slopes) need it.

Example
-------
>>> Checkpoints(min_fraction=0.02).to_dict()
{'part': 'checkpoints', 'min_fraction': 0.02}
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .base import ModelError, Part


@dataclass(frozen=True)
class Checkpoints(Part):
    """Fit every checkpoint of every run from ``min_fraction`` of the run on.

    Parameters
    ----------
    min_fraction
        Drop checkpoints before this fraction of their run (warmup and untrained models;
        tokens / total_tokens), in [0, 1); default 0.05.
    """

    lookup_name = "checkpoints"
    order = -1
    min_fraction: float = 0.05

    def __post_init__(self):
        if not 0 <= self.min_fraction < 1:
            raise ModelError("checkpoints: min_fraction must lie in [0, 1), got "
                             f"{self.min_fraction}")

    def variables(self, model) -> list[str]:
        """An empty list: the part adds no parameters."""
        return []


def select_rows(runs: pd.DataFrame, checkpoints: Checkpoints | None) -> tuple[pd.DataFrame, dict]:
    """Rows the model fits, and a report of the rows left out.

    Each run's last checkpoint without a :class:`Checkpoints` part, else every checkpoint from
    ``min_fraction`` of the run on.

    Returns the rows (index reset, sorted by family, run, tokens) and a report of what was
    dropped (``dropped_rows``, ``reason``).
    """
    if checkpoints is None:
        keep = runs["tokens"] == runs.groupby("run")["tokens"].transform("max")
        reason = "not the run's last checkpoint (the model has no checkpoints part)"
    else:
        keep = runs["tokens"] / runs["total_tokens"] >= checkpoints.min_fraction
        reason = f"before {checkpoints.min_fraction:.0%} of the run (checkpoints.min_fraction)"
    rows = runs[keep].sort_values(["family", "run", "tokens"], kind="stable").reset_index(drop=True)
    return rows, {"dropped_rows": int((~keep).sum()), "reason": reason}
