"""Loaders of real public scaling data, each returning a runs table.

A runs table has one row per (run, checkpoint, metric) and the columns
``family, run, params, tokens, total_tokens, metric, value, n_items, chance``
(then data-set specific extras); ``attrs`` holds ``param_count``, ``source`` and
``dataset``. Data are read from a path, from ``$BAYESCALE_DATA`` or
``<project root>/../shared/data``, or downloaded with ``fetch=True``.

Examples
--------
>>> from bayescale.datasets import find_data_dir, load_pythia
>>> if find_data_dir("pythia") is not None:
...     runs = load_pythia(tasks=None)
"""

from ._fetch import fetch_dataset
from ._paths import find_data_dir, require_data_dir
from ._table import RUNS_COLUMNS
from .chinchilla import load_chinchilla
from .gadre import gadre_tasks, load_gadre
from .lr_schedules import LUO_PUBLISHED_MRE, LUO_TRAIN_SCHEDULES, load_lr_schedules
from .pythia import load_pythia

__all__ = [
    "LUO_PUBLISHED_MRE",
    "LUO_TRAIN_SCHEDULES",
    "RUNS_COLUMNS",
    "fetch_dataset",
    "find_data_dir",
    "gadre_tasks",
    "load_chinchilla",
    "load_gadre",
    "load_lr_schedules",
    "load_pythia",
    "require_data_dir",
]
