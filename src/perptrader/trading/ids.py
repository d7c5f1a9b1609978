"""Deterministic client order ids: ``pt-<run tag>-<seq in base 36>``.

The id is a pure function of (run_id, seq) so that after a crash the engine can recompute
the id of an order it may already have sent and ask the venue about it instead of sending
it twice (idempotent resubmission). It fits both Binance (``^[.A-Z:/a-z0-9_-]{1,36}$``)
and Bybit (orderLinkId: at most 36 letters, digits, ``-`` and ``_``), so only lowercase
letters, digits and ``-`` are used. Ids that do not parse are treated as external orders
(placed by hand or by another program) and are never touched by a run.
"""

from __future__ import annotations

import base64
import hashlib
import re

PREFIX = "pt"
#: Binance's rule; Bybit's alphabet is a subset of it minus ``.:/``, which we never use
BINANCE_ID_PATTERN = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
MAX_LEN = 36
TAG_LEN = 10  # 50 bits of the run id's hash: a collision needs ~2**25 runs
_MAX_SEQ_DIGITS = MAX_LEN - len(PREFIX) - TAG_LEN - 2  # 22 base-36 digits
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_OURS = re.compile(
    rf"^{PREFIX}-([a-z2-7]{{{TAG_LEN}}})-(0|[1-9a-z][0-9a-z]{{0,{_MAX_SEQ_DIGITS - 1}}})$"
)


def run_tag(run_id: str) -> str:
    """The 10-character lowercase base32 tag of a run id (stable across processes)."""
    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
    digest = hashlib.sha256(run_id.encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:TAG_LEN]


def _base36(n: int) -> str:
    if n == 0:
        return "0"
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_DIGITS[r])
    return "".join(reversed(out))


def client_order_id(run_id: str, seq: int) -> str:
    """The id of the ``seq``-th order (0, 1, 2, ...) of ``run_id``; at most 36 characters.

    Unique per (run_id, seq): seq is written exactly, and runs differ by their hash tag.
    A run must never reuse a seq, so the caller persists the next seq with its orders.
    """
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError(f"seq must be an integer >= 0, got {seq!r}")
    digits = _base36(seq)
    if len(digits) > _MAX_SEQ_DIGITS:
        raise ValueError(f"seq {seq} is too large for a {MAX_LEN}-character client order id")
    return f"{PREFIX}-{run_tag(run_id)}-{digits}"


def parse_client_order_id(text: str) -> tuple[str, int] | None:
    """(run tag, seq) of one of our ids; None for ids we did not make (external orders)."""
    if not isinstance(text, str):
        return None
    match = _OURS.match(text)
    if match is None:
        return None
    return match.group(1), int(match.group(2), 36)


def is_ours(text: str, run_id: str | None = None) -> bool:
    """True if ``text`` is one of our ids (and, given ``run_id``, one of that run's)."""
    parsed = parse_client_order_id(text)
    return parsed is not None and (run_id is None or parsed[0] == run_tag(run_id))


def fill_id(client_order_id: str, n: int) -> str:
    """Deterministic id of the ``n``-th fill (1-based) of an order, the key that
    deduplicates fills reported twice (a websocket event and a REST reconciliation).

    ``n`` is ``Order.fill_count`` right after the fill was applied. Venue trade ids, when
    there are any, are stored beside it; this id exists so paper fills have one too.
    """
    if not client_order_id:
        raise ValueError("client_order_id must be non-empty")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"fill number must be an integer >= 1, got {n!r}")
    return f"{client_order_id}.f{n}"
