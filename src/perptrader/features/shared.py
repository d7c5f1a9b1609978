"""Inputs the families of ONE computation share: the frame's columns as arrays and its
higher-timeframe bars, read once instead of once per family.

``compute_features`` (the batch path) opens ``shared_frame(frame)`` and hands every
family that frame; the live path (``incremental``) opens it on its buffer and
``register``s each tail it hands out (a suffix of the buffer). Inside, ``arrays.col``
on a registered frame is a slice of the buffer's column read once, and
``features.mtf`` resamples the buffer once per higher timeframe and slices the bars
for each copy's tail.

The contexts are per thread (two threads computing features do not see each other's).
Frames are recognised by identity, never by value: a frame a family builds for itself
(even with the same index) is read the ordinary way. The owner of the context
guarantees that a registered frame holds the buffer's last ``len(frame)`` rows and is
not modified while the context is open (families never modify their input).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass(eq=False)
class _Shared:
    base: pd.DataFrame
    #: id(frame) -> (that frame, kept alive so the id stays its own; rows it holds)
    frames: dict[int, tuple[pd.DataFrame, int]] = field(default_factory=dict)
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    #: anything derived from the whole base (e.g. resampled bars), by key
    derived: dict[Any, Any] = field(default_factory=dict)


_LOCAL = threading.local()


def _stack() -> list[_Shared]:
    stack = getattr(_LOCAL, "stack", None)
    if stack is None:
        stack = _LOCAL.stack = []
    return stack


def _top() -> _Shared | None:
    stack = _stack()
    return stack[-1] if stack else None


@contextmanager
def shared_frame(base: pd.DataFrame) -> Iterator[None]:
    """Share ``base``'s inputs with the frames registered inside (``base`` itself is)."""
    shared = _Shared(base)
    shared.frames[id(base)] = (base, len(base))
    stack = _stack()
    stack.append(shared)
    try:
        yield
    finally:
        del stack[next(i for i, s in enumerate(stack) if s is shared)]


@contextmanager
def derived_frame(key: Any, make: Callable[[pd.DataFrame], pd.DataFrame]
                  ) -> Iterator[pd.DataFrame | None]:
    """Inside the open context: a context on ``make(base)`` (a frame derived from the
    base, e.g. its higher-timeframe bars), made once per ``key`` and kept with the open
    context, so that the suffixes of it registered inside read its columns once for
    all of them. Yields that frame; without an open context, yields None and shares
    nothing."""
    top = _top()
    if top is None:
        yield None
        return
    sub = top.derived.get(("frame", key))
    if sub is None:
        sub = _Shared(make(top.base))
        sub.frames[id(sub.base)] = (sub.base, len(sub.base))
        top.derived[("frame", key)] = sub
    stack = _stack()
    stack.append(sub)
    try:
        yield sub.base
    finally:
        del stack[next(i for i, s in enumerate(stack) if s is sub)]


def register(frame: pd.DataFrame) -> pd.DataFrame:
    """Declare ``frame`` (the last ``len(frame)`` rows of the open context's base,
    unmodified) a suffix of the base; returns it. A no-op without a context."""
    top = _top()
    if top is not None:
        if len(frame) > len(top.base):
            raise ValueError(f"a suffix of {len(frame)} rows of a {len(top.base)}-row base")
        top.frames[id(frame)] = (frame, len(frame))
    return frame


def suffix_rows(frame: pd.DataFrame) -> int | None:
    """Rows of the open base that ``frame`` is a registered suffix of; None if it is
    not one (or no context is open)."""
    return _rows_in(_top(), frame)


def _rows_in(top: _Shared | None, frame: pd.DataFrame) -> int | None:
    if top is None:
        return None
    entry = top.frames.get(id(frame))
    return entry[1] if entry is not None and entry[0] is frame else None


def column(frame: pd.DataFrame, name: str,
           read: Callable[[pd.DataFrame, str], np.ndarray]) -> np.ndarray:
    """``read(frame, name)``, from the base's column when ``frame`` is a registered
    suffix (the arrays are read-only: one family cannot change another's input)."""
    top = _top()
    rows = _rows_in(top, frame)
    if rows is None:
        return read(frame, name)
    values = top.columns.get(name)
    if values is None:
        values = read(top.base, name)
        if values.flags.writeable:
            values = values.view()
            values.flags.writeable = False
        top.columns[name] = values
    return values[len(values) - rows:]


def derived(key: Any, make: Callable[[pd.DataFrame], Any]) -> Any:
    """``make(base)`` of the open context, computed once per ``key``."""
    top = _top()
    if top is None:
        raise RuntimeError("no shared_frame context is open")
    if key not in top.derived:
        top.derived[key] = make(top.base)
    return top.derived[key]
