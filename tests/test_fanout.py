"""bayescale.fanout.fit_many: many independent fits on a Dask LocalCluster."""

from __future__ import annotations

import os
import warnings
from operator import methodcaller

import numpy as np
import pandas as pd
import pytest

import bayescale
from bayescale.fanout import FitJob, FitManyResult, fit_many, worker_cache
from bayescale.uncertainty_scaling import nested_subsets

distributed = pytest.importorskip("distributed")

#: Tiny fits: these tests check the fan-out, not the posteriors.
SETTINGS = {"draws": 100, "tune": 100, "chains": 2, "retry": False}
TARGET = {"params": 7e9, "tokens": 1.4e11}


def worker_seed(request, seed: int) -> int:
    """The seed a worker must be given to sample what ``bayescale.fit(random_seed=seed)`` samples
    in this process: under ``--seed-offset`` (flakiness check) conftest shifts the seeds of fits
    in the test process only, not in the Dask workers."""
    offset = int(request.config.getoption("--seed-offset"))
    return (seed + 104_729 * offset) % (2**31 - 1) if offset else seed


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0", host="127.0.0.1") as cluster, \
            Client(cluster, set_as_default=False) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def ladders():
    return [bayescale.simulate_ladder(seed=i)[0] for i in range(3)]


@pytest.fixture(scope="module")
def fanned(client, ladders, request):
    """Three good jobs and one whose runs table lacks its ``value`` column."""
    jobs = [FitJob(runs, "chinchilla", {**SETTINGS, "random_seed": worker_seed(request, 10 + i)},
                   label=f"seed{i}") for i, runs in enumerate(ladders)]
    jobs.insert(1, FitJob(ladders[0].drop(columns="value"), "chinchilla", dict(SETTINGS),
                          label="broken"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fit_many(jobs, client=client, returns="fit", progressbar=False)
    return out, [w for w in caught if "fit_many" in str(w.message)]


def test_failed_job_is_reported_and_the_others_kept(fanned):
    out, caught = fanned
    assert isinstance(out, FitManyResult)
    assert list(out.results) == ["seed0", "seed1", "seed2"]
    assert not out.ok
    assert list(out.failures["label"]) == ["broken"]
    row = out.failures.iloc[0]
    assert row["error"] == "RunsTableError"
    assert "'value' is required" in row["message"]
    assert "Traceback" in row["traceback"]
    assert len(caught) == 1 and "broken" in str(caught[0].message)
    assert "failed=['broken']" in repr(out)


def test_fits_match_a_local_fit_with_the_same_seed(fanned, ladders):
    out, _ = fanned
    remote = out.results["seed0"]
    assert isinstance(remote, bayescale.ScalingFit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = bayescale.fit(ladders[0], "chinchilla", **SETTINGS, random_seed=10, cores=1,
                              progressbar=False)
    np.testing.assert_array_equal(remote.posterior_draws("alpha"), local.posterior_draws("alpha"))
    # a shipped fit still predicts on the client
    assert np.isfinite(remote.predict(TARGET)["mean"]).all()


def test_table_and_worker_cache(fanned, client):
    out, _ = fanned
    table = out.table()
    assert list(table["label"]) == ["seed0", "broken", "seed1", "seed2"]
    assert list(table["ok"]) == [True, False, True, True]
    assert table["worker"].nunique() <= 2
    assert table.loc[table["ok"], "converged"].map(lambda v: isinstance(v, bool)).all()
    assert out.wall_seconds > 0
    # compiled models are reused per worker: each worker that fitted holds the compiled sampler
    cache = worker_cache(client)
    good = table[table["ok"]]
    for address in good["worker"].unique():
        assert len(cache[address]) == 1, cache
    # three fits on two workers: one worker ran two; its second skipped the compilation
    started = {r.label: r.started for r in out._records}
    good = good.assign(started=good["label"].map(started)).sort_values("started")
    repeats = [grp["seconds"].to_list() for _, grp in good.groupby("worker") if len(grp) > 1]
    assert repeats
    for seconds in repeats:
        assert max(seconds[1:]) < seconds[0], seconds


def test_summary_and_result(client, ladders, request):
    seed = worker_seed(request, 3)
    jobs = [{"runs": runs, "model": "chinchilla", "fit_kwargs": {**SETTINGS, "random_seed": seed},
             "label": f"s{i}"} for i, runs in enumerate(ladders[:2])]
    out = fit_many(jobs, client=client, returns="summary", progressbar=False)
    assert out.ok and list(out.results) == ["s0", "s1"]
    for table in out.results.values():
        assert isinstance(table, pd.DataFrame)
        assert {"E", "alpha", "beta"} <= set(table.index)
        assert "mean" in table.columns
        assert table.attrs["diagnostics"]

    jobs = [FitJob(runs, "chinchilla", {**SETTINGS, "random_seed": seed}, label=f"r{i}",
                   then=methodcaller("predict", TARGET)) for i, runs in enumerate(ladders[:2])]
    # a closure is shipped by value (cloudpickle)
    jobs.append(FitJob(ladders[2], "chinchilla", {**SETTINGS, "random_seed": seed}, label="mean",
                       then=lambda fit: float(fit.posterior_draws("alpha").mean())))
    out = fit_many(jobs, client=client, returns="result", progressbar=False)
    assert out.ok, out.failures
    assert isinstance(out.results["r0"], pd.DataFrame) and len(out.results["r0"]) == 1
    assert 0.1 < out.results["mean"] < 1.0


def test_thread_workers_share_one_compilation_of_a_structure(ladders, monkeypatch):
    """The default LocalCluster's workers are threads of this process: two NUTS jobs of one
    structure, one on each worker at once, compile the model once between them."""
    from bayescale import sampling

    compiled = []
    real = sampling.compile_pymc_model

    def counting(model, **kwargs):
        compiled.append(model)
        return real(model, **kwargs)

    monkeypatch.setattr(sampling, "compile_pymc_model", counting)
    monkeypatch.setattr(sampling, "_NUTPIE_CACHE", {})
    settings = {"draws": 50, "tune": 50, "chains": 2}
    jobs = [FitJob(runs, "chinchilla", {**settings, "random_seed": i}, label=f"t{i}")
            for i, runs in enumerate(ladders[:2])]
    out = fit_many(jobs, n_workers=2, returns="fit", progressbar=False)
    assert out.ok, out.failures
    assert len(compiled) == 1
    table = out.table()
    assert set(table["pid"]) == {os.getpid()} and table["worker"].nunique() == 2
    assert not np.array_equal(out.results["t0"].posterior_draws("alpha"),
                              out.results["t1"].posterior_draws("alpha"))


def test_starts_and_closes_its_own_cluster_of_processes(ladders, capsys):
    jobs = [FitJob(ladders[0], "chinchilla", {"method": "map"}, label="map")]
    out = fit_many(jobs, n_workers=1, processes=True, returns="fit", progressbar=True)
    assert out.ok, out.failures
    assert isinstance(out.results["map"], bayescale.ScalingFit)
    pid = int(out.table()["pid"].iloc[0])
    assert pid != os.getpid()
    with pytest.raises(ProcessLookupError):  # the worker process was closed with the cluster
        os.kill(pid, 0)
    assert "fit_many" in capsys.readouterr().err  # the progress bar


def test_input_errors(ladders):
    runs = ladders[0]
    with pytest.raises(ValueError, match="no jobs"):
        fit_many([])
    with pytest.raises(ValueError, match="duplicate job labels: \\['a'\\]"):
        fit_many([FitJob(runs, label="a"), FitJob(runs, label="a")])
    with pytest.raises(ValueError, match="returns must be one of"):
        fit_many([FitJob(runs)], returns="posterior")
    with pytest.raises(ValueError, match=r"not arguments of bayescale\.fit"):
        fit_many([FitJob(runs, fit_kwargs={"draw": 10})])
    with pytest.raises(ValueError, match="needs a `then` callable"):
        fit_many([FitJob(runs)], returns="result")
    with pytest.raises(ValueError, match="only returns='result' runs"):
        fit_many([FitJob(runs, then=len)], returns="summary")
    with pytest.raises(TypeError, match="list of FitJob"):
        fit_many(FitJob(runs))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown keys \\['seed'\\]"):
        fit_many([{"runs": runs, "seed": 1}])
    with pytest.raises(TypeError, match="expected a FitJob or a dict"):
        fit_many([runs])  # type: ignore[list-item]


def test_backtest_and_uncertainty_scaling_fan_out_on_a_client(client, ladders):
    """The backtest's (fold, candidate) fits and the nested refits run as fit_many jobs and give
    what the in-process loop gives (the same seeds: equal up to the sampler's floating point)."""
    runs = ladders[0]
    small = {"draws": 100, "tune": 100, "chains": 2, "random_seed": 4}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        remote = bayescale.backtest(runs, ["chinchilla", "compute"], client=client,
                                    progressbar=False, **small)
        local = bayescale.backtest(runs, ["chinchilla", "compute"], progressbar=False, **small)
    key = ["model", "fold", "run"]
    remote_rows = remote.rows.sort_values(key).reset_index(drop=True)
    local_rows = local.rows.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(remote_rows[key], local_rows[key])
    assert np.allclose(remote_rows["median"], local_rows["median"], rtol=0.02)
    assert set(remote.scores["model"]) == {"chinchilla", "compute"}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        three = runs[runs["params"] <= np.sort(runs["params"].unique())[2]]
        scaling = bayescale.uncertainty_scaling(three, TARGET, "chinchilla", client=client,
                                                progressbar=False, **small)
    assert list(scaling.table["step"]) == [label for label, _ in nested_subsets(three, "size")]
    assert (scaling.table["width"] > 0).all() and np.isfinite(scaling.kappa["median"])
