"""Named points where the crash tests kill the process (``kill -9`` from inside).

A random ``kill -9`` from outside rarely lands in the few microseconds between "the
venue has the order" and "the journal knows it", which is exactly where live trading
loses or duplicates orders. So the live engine names those moments, and a test sets
``PERPTRADER_CRASH_AT=<point>:<n>[,<point>:<n>...]``: the ``n``-th time the process
passes ``point`` it sends itself SIGKILL (no cleanup, no flush, no atexit), as a power
cut would. Unset (always, outside tests) the check is one dictionary lookup.

Points (see trading/live.py and trading/reconcile.py):
  ``before_send``      the order's intent is committed, the request not yet sent
  ``after_send``       the venue accepted (or filled) the order, its answer not stored
  ``after_fill``       fills were applied in memory, not yet committed
  ``reconcile``        in the middle of the startup reconciliation
"""

from __future__ import annotations

import os
import signal

ENV = "PERPTRADER_CRASH_AT"
POINTS = ("before_send", "after_send", "after_fill", "reconcile")


def _parse(text: str) -> dict[str, int]:
    plan: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, count = part.partition(":")
        if name not in POINTS:
            raise ValueError(f"{ENV}: unknown crash point {name!r} (one of {', '.join(POINTS)})")
        plan[name] = int(count or 1)
    return plan


_PLAN = _parse(os.environ.get(ENV, ""))
_SEEN: dict[str, int] = {}


def arm(plan: str) -> None:
    """Set the plan in this process (``trade drill`` children are forked from a process
    that imported this module before their plan was chosen)."""
    global _PLAN
    _PLAN = _parse(plan)
    _SEEN.clear()


def crash_point(name: str) -> None:
    """Die here (SIGKILL) when the crash plan says this is the moment."""
    if not _PLAN or name not in _PLAN:
        return
    _SEEN[name] = _SEEN.get(name, 0) + 1
    if _SEEN[name] == _PLAN[name]:
        os.kill(os.getpid(), signal.SIGKILL)
