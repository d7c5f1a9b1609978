"""Numba's on-disk cache, made to follow the sources a module compiles IN.

``@njit(cache=True)`` keys a function's cache on its own file only. ``rl/core.py``
compiles ``sim.kernel.step_bar`` (and the action/reward helpers, and their module-level
constants) into its own machine code, so after an edit of ``sim/kernel.py`` or a package
upgrade numba would happily serve core's OLD code, with the OLD kernel inside it, while
the backtester runs the new one.

``follow_sources(module_file, dependency_files)`` fixes that for one module: its cached
functions get a cache locator whose source stamp is the module's own stamp PLUS a hash of
every dependency's content, so any change to a dependency invalidates the index and the
functions are recompiled. It must be called before the module's ``@njit(cache=True)``
decorators run (numba picks the locator when the dispatcher is created).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from numba.core import caching
from numba.core.caching import _CacheLocator

#: the class holding numba's locator list (``CacheImpl`` since 0.60, ``_CacheImpl`` before)
_CacheImpl = getattr(caching, "CacheImpl", None) or caching._CacheImpl

#: module file (absolute) -> the files whose content its cached code depends on
_FOLLOWED: dict[str, tuple[str, ...]] = {}


def sources_digest(paths: Iterable[str]) -> str:
    """sha256 over the dependencies' names and contents (a missing file counts too)."""
    h = hashlib.sha256()
    for path in paths:
        h.update(os.path.basename(path).encode())
        try:
            h.update(Path(path).read_bytes())
        except OSError:
            h.update(b"<missing>")
    return h.hexdigest()


class FollowSourcesLocator(_CacheLocator):
    """Wraps the locator numba would have chosen; only the source stamp differs."""

    def __init__(self, inner: _CacheLocator, dependencies: tuple[str, ...]) -> None:
        self._inner = inner
        self._dependencies = dependencies

    def ensure_cache_path(self) -> None:
        self._inner.ensure_cache_path()

    def get_cache_path(self) -> str:
        return self._inner.get_cache_path()

    def get_source_stamp(self) -> Any:
        return (self._inner.get_source_stamp(), "follows", sources_digest(self._dependencies))

    def get_disambiguator(self) -> str:
        return self._inner.get_disambiguator()

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> FollowSourcesLocator | None:
        deps = _FOLLOWED.get(os.path.abspath(py_file))
        if deps is None:
            return None
        for other in _CacheImpl._locator_classes:
            if other is cls:
                continue
            inner = other.from_function(py_func, py_file)
            if inner is not None:
                return cls(inner, deps)
        return None


def follow_sources(module_file: str, dependencies: Iterable[str]) -> None:
    """Cached numba functions defined in ``module_file`` from now on are invalidated
    whenever the content of any of ``dependencies`` changes."""
    _FOLLOWED[os.path.abspath(module_file)] = tuple(os.path.abspath(d) for d in dependencies)
    if FollowSourcesLocator not in _CacheImpl._locator_classes:
        _CacheImpl._locator_classes.insert(0, FollowSourcesLocator)


__all__ = ["FollowSourcesLocator", "follow_sources", "sources_digest"]
