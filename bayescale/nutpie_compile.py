"""Compile a PyMC model for nutpie with a wrapper that is quick to compile and cached on disk.

nutpie samples a model through two C callbacks compiled with numba: the log-density with
its gradient, and the expansion of a draw into the model's variables.  Each callback wraps
PyTensor's compiled function (which PyTensor caches on disk, see
:mod:`bayescale.numba_cache`) and hands it the model's data arrays, read from a record that
holds their addresses and shapes.  nutpie 0.16 builds that wrapper with ``literal_unroll``
over the data arrays, which numba is slow to type (most of a cached process's compile time,
see ``benchmarks/README.md``), for every model and in every process: its callback cannot
be cached.

:func:`compile_pymc_model` builds the same model (nutpie's own graph, record layout and
``CompiledPyMCModel``, so ``with_data`` and sampling work unchanged) with callbacks written
out as straight-line source, one line per data array, which numba types quickly.  When
PyTensor cached the log-density, the callbacks are cached too, under a key of the cached
function and the callback's source, so that the next process loads them instead of
compiling them.  Both give the same draws as ``nutpie.compile_pymc_model``, bit for bit
(``tests/test_nutpie_compile.py``).

Example
-------
>>> import pymc as pm
>>> with pm.Model() as model:
...     x = pm.Normal("x")
>>> compiled = compile_pymc_model(model)  # doctest: +SKIP
>>> compiled.n_dim  # doctest: +SKIP
1
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

#: Signatures of nutpie's callbacks (nuts-rs calls them through these C types).
_LOGP_ARGS = "dim, x_, out_, logp_, user_data_"
_EXPAND_ARGS = "dim, expanded, x_, out_, user_data_"


def compile_pymc_model(model) -> Any:
    """``nutpie.compile_pymc_model(model)`` (numba backend) with quick, cached callbacks.

    Returns nutpie's ``CompiledPyMCModel``: pass it to ``nutpie.sample``; its
    ``with_data`` swaps the model's data arrays without compiling again.
    """
    from nutpie import compile_pymc as nutpie_compile
    from pymc.initial_point import make_initial_point_fn

    initial_point_fn = make_initial_point_fn(
        model=model, default_strategy="support_point", jitter_rvs=set(model.free_RVs),
        return_transformed=True)
    n_dim, n_expanded, logp_fn_pt, expand_fn_pt, initial_point, shape_info = (
        nutpie_compile._make_functions(
            model, mode="NUMBA", compute_grad=True, join_expanded=True,
            pymc_initial_point_fn=nutpie_compile._wrap_with_lock(initial_point_fn)))
    shared_data: dict[str, np.ndarray] = {}
    shared_vars: dict[str, Any] = {}
    for var in [*logp_fn_pt.get_shared(), *expand_fn_pt.get_shared()]:
        if var.name in shared_vars and shared_vars[var.name] is not var:
            raise ValueError(f"nutpie needs unique names of shared variables: {var.name!r} "
                             "names two")
        shared_data[var.name] = np.array(var.get_value(), order="C", copy=True)
        shared_vars[var.name] = var
    for value in shared_data.values():
        value.flags.writeable = False
    user_data = nutpie_compile.make_user_data(shared_vars, shared_data)

    logp = _callback("logp", logp_fn_pt, shared_data, user_data.dtype, n_dim=n_dim)
    expand = _callback("expand", expand_fn_pt, shared_data, user_data.dtype, n_dim=n_dim,
                       n_expanded=n_expanded)
    dims, coords = nutpie_compile._prepare_dims_and_coords(model, shape_info)
    return nutpie_compile.CompiledPyMCModel(
        _n_dim=n_dim, dims=dims, _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=logp, compiled_expand_func=expand, initial_point_func=initial_point,
        shared_data=shared_data, user_data=user_data, n_expanded=n_expanded,
        shape_info=shape_info, logp_func=logp_fn_pt, expand_func=expand_fn_pt)


def callback_source(kind: str, shared: dict[str, np.ndarray], n_dim: int,
                    n_expanded: int = 0) -> str:
    """Source of nutpie's ``kind`` callback (``"logp"`` or ``"expand"``) for these data arrays.

    ``shared`` maps the names of the arrays the compiled function takes after the draw, in
    its order, to arrays of their dtype and number of dimensions.  The source defines
    ``extract`` (the arrays from the record, then the compiled function ``inner``) and
    ``<kind>_callback``.  Return codes as nutpie's: 0 success, -1 wrong dimension, 1 (logp)
    or -2 (expand) an error in the function, 3 a non-finite gradient, 4 a non-finite
    log-density.
    """
    if kind not in ("logp", "expand"):
        raise ValueError(f"kind must be 'logp' or 'expand', got {kind!r}")
    # straight-line code, one array a line, outside the callback's try block: numba's
    # liveness analysis of a try block grows with the square of its statements
    lines = ["def extract(x, user_data_):",
             "    shared = carray(user_data_, (), record_dtype)['shared']"]
    for i, (name, value) in enumerate(shared.items()):
        size = f"int(shared['size'][{name!r}][()])"
        flat = f"carray(address_as_void_pointer(shared['data'][{name!r}][()]), {size}, dtype_{i})"
        if value.ndim == 1:
            lines.append(f"    a{i} = {flat}")
        else:
            lines.append(f"    shape{i} = shared['shape'][{name!r}]")
            shape = "".join(f"int(shape{i}[{k}]), " for k in range(value.ndim))
            lines.append(f"    a{i} = {flat}.reshape(({shape}))")
    lines.append(f"    return inner(x{''.join(f', a{i}' for i in range(len(shared)))})")
    lines += ["", "",
              f"def {kind}_callback({_LOGP_ARGS if kind == 'logp' else _EXPAND_ARGS}):",
              f"    if dim != {n_dim}:",
              "        return -1"]
    if kind == "logp":
        lines += ["    try:",
                  f"        logp_value, grad = extract(carray(x_, ({n_dim},)), user_data_)",
                  "    except Exception:  # noqa: BLE001",
                  "        return 1",
                  "    carray(logp_, (1,))[0] = logp_value",
                  f"    out = carray(out_, ({n_dim},))",
                  "    finite = True",
                  f"    for i in range({n_dim}):",
                  "        out[i] = grad[i]",
                  "        finite = finite and np.isfinite(grad[i])",
                  "    if not finite:",
                  "        return 3",
                  "    if not np.isfinite(logp_value):",
                  "        return 4",
                  "    return 0"]
    else:
        lines += [f"    if expanded != {n_expanded}:",
                  "        return -1",
                  "    try:",
                  f"        (values,) = extract(carray(x_, ({n_dim},)), user_data_)",
                  "    except Exception:  # noqa: BLE001",
                  "        return -2",
                  f"    out = carray(out_, ({n_expanded},))",
                  f"    for i in range({n_expanded}):",
                  "        out[i] = values[i]",
                  "    return 0"]
    return "\n".join(lines) + "\n"


def _callback(kind: str, function, shared_data: dict[str, np.ndarray], record_dtype: np.dtype,
              *, n_dim: int, n_expanded: int = 0):
    """Compile (or load) the ``kind`` callback of the PyTensor ``function``."""
    import numba
    from numba import types
    from nutpie.compile_pymc import address_as_void_pointer
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src

    double = types.CPointer(types.double)
    signature = (types.int64(types.uint64, double, double, double, types.voidptr)
                 if kind == "logp" else
                 types.int64(types.uint64, types.uint64, double, double, types.voidptr))
    inner = function.vm.jit_fn
    shared = {var.name: shared_data[var.name] for var in function.get_shared()}
    source = callback_source(kind, shared, n_dim, n_expanded)
    # __name__: numba rebuilds a cached callback's environment from the module it names
    scope = {"__name__": __name__, "carray": numba.carray, "np": np, "inner": inner,
             "record_dtype": record_dtype, "address_as_void_pointer": address_as_void_pointer,
             **{f"dtype_{i}": value.dtype for i, value in enumerate(shared.values())}}
    inner_key = CACHED_SRC_FUNCTIONS.get(inner.py_func)
    key = None
    if inner_key is not None:
        # the record's layout (every shared array's name, dtype and rank) is part of the code
        key = hashlib.sha256("\n".join(
            [inner_key, source, str(record_dtype), numba.__version__]).encode()).hexdigest()
    scope["extract"] = numba.njit(compile_numba_function_src(source, "extract", dict(scope)))
    python_function = compile_numba_function_src(source, f"{kind}_callback", scope, cache_key=key)
    return numba.cfunc(signature, cache=key is not None)(python_function)


__all__ = ["callback_source", "compile_pymc_model"]
