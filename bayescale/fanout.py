"""Many independent fits on Dask distributed: backtest folds, candidate models, refits.

:func:`fit_many` sends one task per :class:`FitJob` to a Dask cluster (a given
``dask.distributed.Client`` on any cluster, or a ``LocalCluster`` it starts and closes) and
collects what each job returns: the whole :class:`~bayescale.ScalingFit`, its summary table,
or the result of a function run on the worker (predictions, a score), so that large
posteriors need not travel back.  A job that raises is reported in
:attr:`FitManyResult.failures` with its traceback; the other jobs are kept.

Needs the ``parallel`` extra (``pip install "bayescale[parallel]"``: ``distributed``, and
``tqdm`` for the progress bar).  On a remote cluster every worker needs bayescale (and the
same models) installed, and a job's ``runs`` given as a path must be readable there.

Compiled models are reused per worker
-------------------------------------
Compiling a model for nutpie takes 10-40 s; sampling a small ladder takes about a second.
:func:`bayescale.fit` keeps each compiled sampler in a per-process cache
(``bayescale.sampling._NUTPIE_CACHE``, keyed by the model's structure,
:meth:`bayescale.fitting.Prepared.cache_key`) and gives the cached sampler the next data
set of the same structure.  A Dask worker is a long-lived process that runs job after job,
so the second and later jobs of one model structure on a worker skip the compilation: with
``W`` workers and ``S`` model structures, at most ``W x S`` compilations happen, whatever
the number of jobs.  (PyTensor's own C compilation cache, ``~/.pytensor``, is moreover
shared on disk by all processes of one machine.)  :func:`worker_cache` lists what each
worker holds.  A ``LocalCluster`` started by :func:`fit_many` lives for one call only;
its workers are threads of the calling process by default (``processes=False``), which
share that process's cache, so each structure is compiled once; pass a ``client`` to keep
warm worker processes across calls.

Parallelism: each job runs its chains in one worker (``cores=cores_per_fit`` threads of
nutpie), and the cluster runs ``n_workers x threads_per_worker`` jobs at once; keep
``n_workers x threads_per_worker x cores_per_fit`` at or below the number of cores.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import pickle
import sys
import tempfile
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from distributed import Client

    from .model import Model
    from .result import ScalingFit

RETURNS = ("fit", "summary", "result")
_PAYLOAD_PICKLE = "pickle"
_PAYLOAD_NETCDF = "netcdf"


@dataclass
class FitJob:
    """One independent fit: the arguments of :func:`bayescale.fit` and what to send back.

    Parameters
    ----------
    runs
        Runs table (DataFrame, or a CSV path readable on the worker).
    model
        A preset name, a path to a model TOML file (readable on the worker), or a
        :class:`~bayescale.Model`.
    fit_kwargs
        Keyword arguments of :func:`bayescale.fit` (``draws``, ``tune``, ``chains``,
        ``random_seed``, ``priors``, ``retry`` ...).  ``progressbar`` is always ``False``
        on the worker; ``cores`` defaults to ``fit_many``'s ``cores_per_fit``.
    label
        Unique name of the job: the key of its result.  ``None``: ``"job<i>"`` by position.
    then
        With ``fit_many(..., returns="result")``: a picklable callable ``f(fit) -> Any``
        run on the worker; only its return value travels back.  A function importable on
        the workers, a ``functools.partial`` or ``operator.methodcaller`` of one, or a
        lambda / closure (cloudpickle ships those by value).
    """

    runs: pd.DataFrame | str | os.PathLike
    model: str | os.PathLike | Model = "auto"
    fit_kwargs: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    then: Callable[[ScalingFit], Any] | None = None


@dataclass
class _Outcome:
    """What a worker sends back for one job (success or failure)."""

    label: str
    ok: bool
    seconds: float
    worker: str
    pid: int
    started: float
    payload: Any = None
    payload_kind: str | None = None
    converged: bool | None = None
    diagnostics: str | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    message: str | None = None
    traceback: str | None = None


@dataclass
class FitManyResult:
    """What :func:`fit_many` returns.

    Attributes
    ----------
    results
        Label -> the job's fit (``returns="fit"``), summary table (``"summary"``: the
        DataFrame of :meth:`ScalingFit.summary`, with the convergence verdict in
        ``.attrs["diagnostics"]``) or ``then(fit)`` (``"result"``), for the jobs that
        succeeded, in the order the jobs were given.
    failures
        One row per failed job: ``label``, ``error`` (the exception's type), ``message``,
        ``traceback`` (the worker's traceback text).  Empty when every job succeeded.
    wall_seconds
        Wall time of the whole call, including starting and closing a cluster.
    returns
        What ``results`` holds: ``"fit"``, ``"summary"`` or ``"result"``.
    """

    results: dict[str, Any]
    failures: pd.DataFrame
    wall_seconds: float
    returns: str
    _records: list[_Outcome] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """Whether every job succeeded."""
        return self.failures.empty

    def raise_on_failure(self, what: str) -> None:
        """Raise ``RuntimeError`` naming the first failed job (``what``: the caller's name).

        For callers that need every job: a backtest or a refit series with a hole in it
        compares nothing.
        """
        if not self.ok:
            first = self.failures.iloc[0]
            raise RuntimeError(f"{what}: {len(self.failures)} fit(s) failed on the cluster, first "
                               f"{first['label']}: {first['error']}: {first['message']}")

    def table(self) -> pd.DataFrame:
        """One row per job, in the order given.

        Columns: ``label``, ``ok``, ``seconds`` (on the worker: the fit and ``then``),
        ``worker`` (its address), ``pid``, ``converged`` (the fit's convergence verdict;
        None for a failed job or a preview without checks), ``diagnostics`` (its message),
        ``warnings`` (the messages of the warnings the job raised; with several threads per
        worker, those of jobs running at the same time may be mixed up), ``error``.
        """
        rows = [{
            "label": r.label, "ok": r.ok, "seconds": r.seconds, "worker": r.worker,
            "pid": r.pid, "converged": r.converged, "diagnostics": r.diagnostics,
            "warnings": "; ".join(r.warnings), "error": r.error,
        } for r in self._records]
        columns = ["label", "ok", "seconds", "worker", "pid", "converged", "diagnostics",
                   "warnings", "error"]
        return pd.DataFrame(rows, columns=columns)

    def __repr__(self) -> str:
        n = len(self._records)
        failed = list(self.failures["label"]) if not self.failures.empty else []
        note = f", failed={failed}" if failed else ""
        return (f"FitManyResult(jobs={n}, ok={n - len(failed)}, returns={self.returns!r}, "
                f"wall_seconds={self.wall_seconds:.1f}{note})")


# --------------------------------------------------------------------------- worker side
def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):  # not inside a Dask worker (e.g. called directly)
        return "local"


def _pack_fit(fit: ScalingFit) -> tuple[Any, str]:
    """The fit as bytes: pickled, or (if the fit does not pickle) its NetCDF file."""
    try:
        return pickle.dumps(fit, protocol=pickle.HIGHEST_PROTOCOL), _PAYLOAD_PICKLE
    except Exception:  # noqa: BLE001 - any pickling error: fall back to the NetCDF format
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fit.nc"
            fit.save(path)
            return path.read_bytes(), _PAYLOAD_NETCDF


def _unpack_fit(data: bytes, kind: str) -> ScalingFit:
    if kind == _PAYLOAD_PICKLE:
        return pickle.loads(data)
    from .io import load_fit

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fit.nc"
        path.write_bytes(data)
        return load_fit(path)


def _run_job(job: FitJob, returns: str, cores_per_fit: int | None) -> _Outcome:
    """Fit one job on a worker; never raises (an exception becomes a failure record)."""
    from .fitting import fit as fit_fn

    assert job.label is not None  # labels are filled in by fit_many
    start_wall = time.time()
    start = time.perf_counter()
    outcome = _Outcome(label=job.label, ok=False, seconds=0.0, worker=_worker_name(),
                       pid=os.getpid(), started=start_wall)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            kwargs = dict(job.fit_kwargs)
            kwargs["progressbar"] = False
            if cores_per_fit is not None and kwargs.get("method", "nuts") == "nuts":
                kwargs.setdefault("cores", cores_per_fit)  # a preview takes no `cores`
            runs = job.runs if isinstance(job.runs, pd.DataFrame) else os.fspath(job.runs)
            fitted = fit_fn(runs, job.model, **kwargs)
            diag = fitted.diagnostics()
            outcome.converged = diag.passed
            outcome.diagnostics = diag.message()
            if returns == "fit":
                outcome.payload, outcome.payload_kind = _pack_fit(fitted)
            elif returns == "summary":
                table = fitted.summary()
                table.attrs["diagnostics"] = diag.message()
                outcome.payload = table
            else:
                assert job.then is not None
                outcome.payload = job.then(fitted)
            outcome.ok = True
        except Exception as err:  # noqa: BLE001 - one job's failure must not lose the others
            outcome.error = type(err).__name__
            outcome.message = str(err)
            outcome.traceback = traceback.format_exc()
            outcome.payload = None
    outcome.warnings = list(dict.fromkeys(str(w.message) for w in caught))
    outcome.seconds = time.perf_counter() - start
    return outcome


def _cache_keys() -> list[str]:
    from . import sampling

    return list(getattr(sampling, "_NUTPIE_CACHE", {}))


def worker_cache(client: Client) -> dict[str, list[str]]:
    """Worker address -> keys of the compiled nutpie samplers it holds.

    Each key identifies a model structure (see the module docstring): a job of that
    structure on that worker skips the compilation.

    Examples
    --------
    >>> from distributed import Client                        # doctest: +SKIP
    >>> client = Client(n_workers=2, threads_per_worker=1)     # doctest: +SKIP
    >>> bayescale.fanout.fit_many(jobs, client=client)         # doctest: +SKIP
    >>> bayescale.fanout.worker_cache(client)                  # doctest: +SKIP
    {'tcp://127.0.0.1:40123': ['chinchilla|...'], 'tcp://127.0.0.1:40125': ['chinchilla|...']}
    """
    return dict(client.run(_cache_keys))


# --------------------------------------------------------------------------- client side
def _as_job(job: FitJob | Mapping[str, Any], i: int) -> FitJob:
    if isinstance(job, FitJob):
        out = FitJob(runs=job.runs, model=job.model, fit_kwargs=dict(job.fit_kwargs or {}),
                     label=job.label, then=job.then)
    elif isinstance(job, Mapping):
        known = {f.name for f in fields(FitJob)}
        unknown = sorted(set(job) - known)
        if unknown:
            raise ValueError(f"job {i}: unknown keys {unknown}; a job has {sorted(known)}")
        if "runs" not in job:
            raise ValueError(f"job {i}: missing 'runs'")
        out = FitJob(**dict(job))
        out.fit_kwargs = dict(out.fit_kwargs or {})
    else:
        raise TypeError(f"job {i}: expected a FitJob or a dict, got {type(job).__name__}")
    if out.label is None:
        out.label = f"job{i}"
    if not isinstance(out.label, str) or not out.label:
        raise ValueError(f"job {i}: label must be a non-empty string, got {out.label!r}")
    if out.then is not None and not callable(out.then):
        raise TypeError(f"job {out.label!r}: then must be callable, got {type(out.then).__name__}")
    return out


def _check_jobs(jobs: Iterable[FitJob | Mapping[str, Any]], returns: str) -> list[FitJob]:
    from .fitting import fit as fit_fn

    if returns not in RETURNS:
        raise ValueError(f"returns must be one of {RETURNS}, got {returns!r}")
    if isinstance(jobs, FitJob | Mapping):
        raise TypeError("jobs must be a list of FitJob (or dicts), not a single job")
    checked = [_as_job(job, i) for i, job in enumerate(jobs)]
    if not checked:
        raise ValueError("no jobs given")
    labels = [j.label for j in checked]
    dupes = sorted({str(lab) for lab in labels if labels.count(lab) > 1})
    if dupes:
        raise ValueError(f"duplicate job labels: {dupes}; each job needs its own label")
    allowed = set(inspect.signature(fit_fn).parameters) - {"runs", "model"}
    for job in checked:
        bad = sorted(set(job.fit_kwargs) - allowed)
        if bad:
            raise ValueError(f"job {job.label!r}: {bad} are not arguments of bayescale.fit "
                             f"(runs and model are the job's own fields)")
        if returns == "result" and job.then is None:
            raise ValueError(f"job {job.label!r}: returns='result' needs a `then` callable on "
                             "every job")
        if returns != "result" and job.then is not None:
            raise ValueError(f"job {job.label!r} has a `then` callable, which only "
                             f"returns='result' runs (got returns={returns!r})")
    return checked


class _Progress:
    """tqdm when installed, else a counter printed to stderr."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.failed = total, 0, 0
        self.enabled = enabled
        self.bar: Any = None
        if enabled:
            try:
                tqdm = importlib.import_module("tqdm.auto").tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc="fit_many", unit="fit")

    def update(self, label: str, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed, last=label, refresh=False)
            self.bar.update(1)
        else:
            note = "" if ok else " FAILED"
            print(f"fit_many: {self.done}/{self.total} done ({self.failed} failed); "
                  f"{label}{note}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _lost(label: str, err: BaseException) -> _Outcome:
    """A failure record for a task Dask itself lost (worker died, cancelled, unpicklable)."""
    return _Outcome(label=label, ok=False, seconds=float("nan"), worker="unknown", pid=-1,
                    started=float("nan"), error=type(err).__name__, message=str(err),
                    traceback="".join(traceback.format_exception(err)))


def fit_many(
    jobs: Iterable[FitJob | Mapping[str, Any]],
    client: Client | None = None,
    *,
    n_workers: int = 2,
    threads_per_worker: int = 1,
    returns: str = "fit",
    progressbar: bool = True,
    cores_per_fit: int | None = 1,
    processes: bool = False,
    cluster_kwargs: dict[str, Any] | None = None,
) -> FitManyResult:
    """Run many independent fits on Dask distributed.

    Parameters
    ----------
    jobs
        :class:`FitJob` objects, or dicts with the same keys (``runs``, ``model``,
        ``fit_kwargs``, ``label``, ``then``).  Labels must be unique.
    client
        A ``dask.distributed.Client`` of any cluster: used and left open (its workers
        keep their compiled models for the next call).  ``None`` (default): start a
        ``LocalCluster`` of ``n_workers`` workers and close it when done.
    n_workers, threads_per_worker
        The LocalCluster started when ``client`` is None (ignored with a client).
    returns
        ``"fit"`` (default): the :class:`~bayescale.ScalingFit` of each job;
        ``"summary"``: its :meth:`~bayescale.ScalingFit.summary` table (the convergence
        verdict in ``.attrs["diagnostics"]``), so the posterior stays on the worker;
        ``"result"``: ``job.then(fit)`` only.
    progressbar
        Show a progress bar (tqdm when installed, else one line per finished job).
    cores_per_fit
        ``cores`` of each NUTS fit (threads sampling its chains in the worker's process)
        unless the job's ``fit_kwargs`` set it; ``None`` leaves :func:`bayescale.fit`'s
        default (all cores, up to the number of chains).
    processes
        The LocalCluster's workers: threads of this process (``False``, default) or worker
        processes (``True``).  Threads share this process's compiled models, so a structure
        is compiled once for all of them (see above), and nutpie samples without holding the
        GIL, so on a few cores they finish many small fits sooner than processes do
        (``benchmarks/fanout.py``).  Processes keep a fit that crashes the interpreter from
        taking the others (and this session) down.
    cluster_kwargs
        More keyword arguments of ``LocalCluster`` (e.g. ``memory_limit``).

    Returns
    -------
    FitManyResult
        ``.results`` (label -> fit / summary / result of each successful job),
        ``.failures`` (a table of the failed jobs), ``.table()``, ``.wall_seconds``.
        Warns (``UserWarning``) once, naming them, when any job failed.

    Raises
    ------
    ValueError
        No jobs, duplicate labels, an unknown ``returns``, ``fit_kwargs`` that are not
        arguments of :func:`bayescale.fit`, ``returns="result"`` with a job lacking
        ``then`` (or ``then`` with another ``returns``).
    ImportError
        When ``distributed`` is not installed.

    Examples
    --------
    >>> import bayescale
    >>> from bayescale.fanout import FitJob, fit_many
    >>> settings = dict(draws=500, tune=500, chains=2)
    >>> jobs = [FitJob(bayescale.simulate_ladder(seed=s)[0], "chinchilla", settings,
    ...                label=f"seed{s}") for s in range(4)]
    >>> out = fit_many(jobs, n_workers=2, returns="summary")  # doctest: +SKIP
    >>> out.results["seed0"].loc["alpha"]                       # doctest: +SKIP
    >>> out.table()                                             # doctest: +SKIP

    Predictions instead of posteriors, on a cluster kept open across calls:

    >>> from operator import methodcaller
    >>> from distributed import Client                          # doctest: +SKIP
    >>> client = Client(n_workers=2, threads_per_worker=1)       # doctest: +SKIP
    >>> predict = methodcaller("predict", {"params": 7e9, "tokens": 1.4e11})
    >>> jobs = [FitJob(bayescale.simulate_ladder(seed=s)[0], "chinchilla", settings,
    ...                label=f"seed{s}", then=predict) for s in range(4)]
    >>> out = fit_many(jobs, client=client, returns="result")   # doctest: +SKIP
    """
    checked = _check_jobs(jobs, returns)
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as err:
        raise ImportError("fit_many needs Dask distributed: pip install 'bayescale[parallel]' "
                          "(or pip install distributed)") from err
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if client is None:
            options: dict[str, Any] = {"dashboard_address": ":0"}
            if processes:  # threads talk in-process, without a host
                options["host"] = "127.0.0.1"
            options.update(cluster_kwargs or {})
            cluster = stack.enter_context(LocalCluster(
                n_workers=n_workers, threads_per_worker=threads_per_worker,
                processes=processes, **options))
            client = stack.enter_context(Client(cluster, set_as_default=False))
        run_id = uuid.uuid4().hex[:8]
        futures = {
            client.submit(_run_job, job, returns, cores_per_fit, pure=False,
                          key=f"bayescale-fit_many-{run_id}-{i}-{job.label}"): str(job.label)
            for i, job in enumerate(checked)
        }
        outcomes: dict[str, _Outcome] = {}
        progress = _Progress(len(checked), progressbar)
        try:
            for future in as_completed(futures, loop=client.loop):
                label = futures[future]
                try:
                    outcome = future.result()
                except Exception as err:  # noqa: BLE001 - a lost task is one job's failure
                    outcome = _lost(label, err)
                outcomes[label] = outcome
                progress.update(label, outcome.ok)
                future.release()
        finally:
            progress.close()
            pending = [f for f in futures if not f.done()]
            if pending:  # interrupted: do not leave the jobs running on a given client
                client.cancel(pending)
    records = [outcomes[str(job.label)] for job in checked]
    results: dict[str, Any] = {}
    for rec in records:
        if not rec.ok:
            continue
        if returns == "fit":
            try:
                results[rec.label] = _unpack_fit(rec.payload, rec.payload_kind or "")
            except Exception as err:  # noqa: BLE001 - a fit that cannot be rebuilt has failed
                lost = _lost(rec.label, err)
                rec.ok, rec.error, rec.message = False, lost.error, lost.message
                rec.traceback = lost.traceback
                continue
        else:
            results[rec.label] = rec.payload
        rec.payload = None
    failed = [r for r in records if not r.ok]
    failures = pd.DataFrame(
        [{"label": r.label, "error": r.error, "message": r.message, "traceback": r.traceback}
         for r in failed],
        columns=["label", "error", "message", "traceback"])
    if failed:
        warnings.warn(f"fit_many: {len(failed)} of {len(records)} jobs failed: "
                      f"{[r.label for r in failed]} (see .failures)", UserWarning, stacklevel=2)
    return FitManyResult(results=results, failures=failures,
                         wall_seconds=time.perf_counter() - start, returns=returns,
                         _records=records)
