"""Numba's on-disk cache for the libraries that compile on every first call in a process.

umap-learn and pynndescent decorate most of their numba functions without `cache=True`, so every
new process compiles them again: 12-14 s of a UMAP fit of 300 points, ~37 s before pynndescent's
first NN-descent search, for milliseconds to seconds of work. A Snakemake run starts a process per
job (a SLURM run one per job too), so the test config alone compiled UMAP five times.

`enable_cache("umap", "pynndescent")` turns on numba's own cache for every numba function those
packages define at module level (`Dispatcher.enable_caching`, the mechanism behind
`cache=True`): the first process compiles and writes the machine code beside the package
(`__pycache__`, or numba's user-wide cache folder where that is read-only; `NUMBA_CACHE_DIR`
overrides both), later ones load it. Numba keys an entry on the function's source file and its
time stamp, the argument types and the CPU, so an upgraded package or another CPU compiles
afresh; results are those of freshly compiled code (the same machine code). Functions that numba
cannot cache (closures that pynndescent builds per metric) keep compiling as before.
"""

from __future__ import annotations

import importlib
import sys
import warnings

_DONE: set[str] = set()


def enable_cache(*packages: str) -> int:
    """Import `packages` and enable numba's disk cache on their module-level numba functions.

    Returns how many functions it enabled (0 on later calls, or without numba).
    """
    try:
        from numba.core.caching import NullCache
        from numba.core.dispatcher import Dispatcher
        from numba.core.errors import NumbaWarning
    except ImportError:  # numba's layout changed: leave the libraries as they are
        return 0
    enabled = 0
    for package in packages:
        if package in _DONE:
            continue
        importlib.import_module(package)
        for name, module in list(sys.modules.items()):
            if module is None or not (name == package or name.startswith(package + ".")):
                continue
            for value in list(vars(module).values()):
                if isinstance(value, Dispatcher) and isinstance(getattr(value, "_cache", None), NullCache):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        value.enable_caching()
                    enabled += 1
        _DONE.add(package)
    # Numba says so for each function it cannot cache, at every compilation; it compiles as before.
    warnings.filterwarnings("ignore", message="Cannot cache compiled function", category=NumbaWarning)
    return enabled
