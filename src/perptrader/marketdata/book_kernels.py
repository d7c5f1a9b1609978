"""numba kernels behind :class:`~perptrader.marketdata.orderbook.L2Book`: the sorted level
arrays and a byte-level reader of Binance ``depthUpdate`` messages.

**Book side.** A side is two float64 arrays, ``keys`` and ``qtys``, of which the first
``n`` entries are live, sorted ascending by key, with the BEST level LAST: a bid's key is
its price, an ask's key is minus its price. Activity concentrates at the top of the book,
so inserting or deleting a level there moves only the few entries after it; finding a
level is a binary search. ``apply_levels`` takes a diff's levels as an (m, 2) float64
array (price, qty; qty 0 deletes) for both sides in one call.

**Message reader.** ``scan_depth`` reads one websocket message (bytes as a uint8 array)
without building Python objects: the ``e``, ``E``, ``U``, ``u``, ``pu`` fields and the
``b``/``a`` level arrays, bare or inside a combined-stream ``{"stream":..,"data":{..}}``
wrapper. Decimal strings are converted with the exact fast path (Clinger): when the digits
form an integer ``m <= 2**53`` and there are at most 22 decimals, ``m / 10**k`` is one
correctly rounded IEEE division of two exact numbers, i.e. the same double as Python's
``float(text)``. Anything else (exponents, signs, more digits, escapes, unknown nested
values, a zero price) makes the reader answer ``FALLBACK`` and the caller parses that
message with orjson and ``float`` instead, so the result never depends on the shortcut.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: scan_depth answers
DEPTH = 1  # a depthUpdate with every field, levels in the output arrays
OTHER = 0  # a well-formed message that is not a depthUpdate (ignored)
FALLBACK = -1  # not understood here: parse it with orjson

#: header slots written by scan_depth
H_E, H_U, H_LU, H_PU, H_NB, H_NA = range(6)
HEADER_SIZE = 8

_POW10 = np.array([float(10**k) for k in range(23)], dtype=np.float64)
_DEPTH_UPDATE = np.frombuffer(b"depthUpdate", dtype=np.uint8).copy()
_TWO53 = 2**53

# field flags
_F_E, _F_U, _F_LU, _F_PU, _F_B, _F_A, _F_EV, _F_DEPTH = 1, 2, 4, 8, 16, 32, 64, 128
_F_ALL = _F_E | _F_U | _F_LU | _F_PU | _F_B | _F_A | _F_EV | _F_DEPTH


@njit(cache=True, nogil=True)
def _ws(buf, i, n):  # pragma: no cover - jitted
    while i < n:
        c = buf[i]
        if c == 32 or c == 10 or c == 13 or c == 9:
            i += 1
        else:
            break
    return i


@njit(cache=True, nogil=True)
def _decimal(buf, i, n):  # pragma: no cover - jitted
    """buf[i] is the opening quote of "123.45": (value, index after the closing quote,
    ok). ok is False for anything but plain digits with at most one dot."""
    i += 1
    m = 0
    frac = 0
    digits = 0
    dot = False
    while i < n:
        c = buf[i]
        if 48 <= c <= 57:
            m = m * 10 + (c - 48)
            if m > _TWO53:
                return 0.0, i, False
            digits += 1
            if dot:
                frac += 1
        elif c == 46 and not dot:
            dot = True
        elif c == 34:
            break
        else:
            return 0.0, i, False
        i += 1
    if i >= n or digits == 0 or frac > 22:
        return 0.0, i, False
    return m / _POW10[frac], i + 1, True


@njit(cache=True, nogil=True)
def _integer(buf, i, n):  # pragma: no cover - jitted
    neg = False
    if i < n and buf[i] == 45:
        neg = True
        i += 1
    v = 0
    digits = 0
    while i < n and 48 <= buf[i] <= 57:
        v = v * 10 + (buf[i] - 48)
        digits += 1
        i += 1
    if digits == 0 or digits > 18:
        return 0, i, False
    if i < n and (buf[i] == 46 or buf[i] == 101 or buf[i] == 69):
        return 0, i, False  # a float: not an id
    return (-v if neg else v), i, True


@njit(cache=True, nogil=True)
def _levels(buf, i, n, out):  # pragma: no cover - jitted
    """buf[i] is the '[' of [["p","q"],...]: (count, index after ']', ok)."""
    i = _ws(buf, i + 1, n)
    k = 0
    if i < n and buf[i] == 93:
        return 0, i + 1, True
    cap = out.shape[0]
    while i < n:
        if buf[i] != 91 or k >= cap:
            return k, i, False
        i = _ws(buf, i + 1, n)
        if i >= n or buf[i] != 34:
            return k, i, False
        p, i, ok = _decimal(buf, i, n)
        if not ok or p <= 0.0:
            return k, i, False
        i = _ws(buf, i, n)
        if i >= n or buf[i] != 44:
            return k, i, False
        i = _ws(buf, i + 1, n)
        if i >= n or buf[i] != 34:
            return k, i, False
        q, i, ok = _decimal(buf, i, n)
        if not ok:
            return k, i, False
        i = _ws(buf, i, n)
        if i >= n or buf[i] != 93:
            return k, i, False
        out[k, 0] = p
        out[k, 1] = q
        k += 1
        i = _ws(buf, i + 1, n)
        if i < n and buf[i] == 44:
            i = _ws(buf, i + 1, n)
            continue
        if i < n and buf[i] == 93:
            return k, i + 1, True
        return k, i, False
    return k, i, False


@njit(cache=True, nogil=True, inline="always")
def _plain(buf, i, n):  # pragma: no cover - jitted
    """buf[i] is the first character inside a quoted "123.45": (integer digits as an
    int, fraction digits as an int, number of each, index after them)."""
    ip = 0
    ki = 0
    while i < n:
        c = buf[i] - 48
        if c > 9 or c < 0:
            break
        ip = ip * 10 + c
        ki += 1
        i += 1
    fp = 0
    kf = 0
    if i < n and buf[i] == 46:
        i += 1
        while i < n:
            c = buf[i] - 48
            if c > 9 or c < 0:
                break
            fp = fp * 10 + c
            kf += 1
            i += 1
    return ip, fp, ki, kf, i


@njit(cache=True, nogil=True, inline="always")
def _levels_compact(buf, i, n, out):  # pragma: no cover - jitted
    """The exchange's own layout, no spaces: [["p","q"],...] from buf[i] == '['.
    (count, index after ']', ok); not ok: use _levels, which takes any layout.

    A number is taken when it has 1..15 digits in all, at least one before the dot: the
    integer they form is exact in a double, so ``(ip * 10**kf + fp) / 10**kf`` is one
    correctly rounded division of exact values: the double float() gives."""
    i += 1
    k = 0
    cap = out.shape[0]
    if i < n and buf[i] == 93:
        return 0, i + 1, True
    while i + 2 < n and buf[i] == 91 and buf[i + 1] == 34 and k < cap:
        ip, fp, ki, kf, i = _plain(buf, i + 2, n)
        if ki == 0 or ki + kf > 15 or i + 2 >= n:
            return k, i, False
        if buf[i] != 34 or buf[i + 1] != 44 or buf[i + 2] != 34:
            return k, i, False
        s = _POW10[kf]
        p = (ip * s + fp) / s
        if p <= 0.0:
            return k, i, False
        ip, fp, ki, kf, i = _plain(buf, i + 3, n)
        if ki == 0 or ki + kf > 15 or i + 2 >= n or buf[i] != 34 or buf[i + 1] != 93:
            return k, i, False
        s = _POW10[kf]
        out[k, 0] = p
        out[k, 1] = (ip * s + fp) / s
        k += 1
        c = buf[i + 2]
        i += 3
        if c == 93:
            return k, i, True
        if c != 44:
            return k, i, False
    return k, i, False


@njit(cache=True, nogil=True)
def _skip_scalar(buf, i, n):  # pragma: no cover - jitted
    """Skip a string, number, true/false/null; -1 for an array/object or bad input."""
    c = buf[i]
    if c == 34:
        i += 1
        while i < n:
            c = buf[i]
            if c == 92:
                i += 2
                continue
            if c == 34:
                return i + 1
            i += 1
        return -1
    if c == 123 or c == 91:
        return -1
    start = i
    while i < n:
        c = buf[i]
        if c == 44 or c == 125 or c == 93 or c == 32 or c == 10 or c == 13 or c == 9:
            break
        i += 1
    return i if i > start else -1


@njit(cache=True, nogil=True)
def scan_depth(buf, bids, asks, hdr):  # pragma: no cover - jitted
    """Read one depth message (see the module docstring): DEPTH, OTHER or FALLBACK.

    ``bids``/``asks`` are (cap, 2) float64 scratch arrays (cap >= len(buf) // 9 + 1
    always suffices); ``hdr`` gets E, U, u, pu and the level counts (H_* slots).
    """
    n = buf.shape[0]
    for k in range(hdr.shape[0]):
        hdr[k] = 0
    flags = 0
    outer = 0  # fields met in the outer object (not allowed next to "data")
    wrapped = False
    i = _ws(buf, 0, n)
    if i >= n or buf[i] != 123:
        return FALLBACK
    i = _ws(buf, i + 1, n)
    depth = 1
    if i < n and buf[i] == 125:
        return OTHER if _ws(buf, i + 1, n) == n else FALLBACK
    while True:
        # a key
        if i >= n or buf[i] != 34:
            return FALLBACK
        ks = i + 1
        i = ks
        while i < n and buf[i] != 34:
            if buf[i] == 92:
                return FALLBACK
            i += 1
        if i >= n:
            return FALLBACK
        klen = i - ks
        k0 = buf[ks]
        i = _ws(buf, i + 1, n)
        if i >= n or buf[i] != 58:
            return FALLBACK
        i = _ws(buf, i + 1, n)
        if i >= n:
            return FALLBACK
        c = buf[i]
        field = 0
        if klen == 1 and (k0 == 98 or k0 == 97):  # b / a
            if c != 91:
                return FALLBACK
            out = bids if k0 == 98 else asks
            start = i
            cnt, i, ok = _levels_compact(buf, start, n, out)
            if not ok:
                cnt, i, ok = _levels(buf, start, n, out)
            if k0 == 98:
                hdr[H_NB] = cnt
                field = _F_B
            else:
                hdr[H_NA] = cnt
                field = _F_A
            if not ok:
                return FALLBACK
        elif klen == 1 and (k0 == 69 or k0 == 85 or k0 == 117):  # E / U / u
            v, i, ok = _integer(buf, i, n)
            if not ok:
                return FALLBACK
            if k0 == 69:
                hdr[H_E] = v
                field = _F_E
            elif k0 == 85:
                hdr[H_U] = v
                field = _F_U
            else:
                hdr[H_LU] = v
                field = _F_LU
        elif klen == 2 and k0 == 112 and buf[ks + 1] == 117:  # pu
            v, i, ok = _integer(buf, i, n)
            if not ok:
                return FALLBACK
            hdr[H_PU] = v
            field = _F_PU
        elif klen == 1 and k0 == 101:  # e
            if c != 34:
                return FALLBACK
            field = _F_EV
            j = i + 1
            same = True
            for t in range(_DEPTH_UPDATE.shape[0]):
                if j + t >= n or buf[j + t] != _DEPTH_UPDATE[t]:
                    same = False
                    break
            end = _skip_scalar(buf, i, n)
            if end < 0:
                return FALLBACK
            for t in range(j, end):
                if buf[t] == 92:
                    return FALLBACK  # an escape: let orjson decode the name
            if same and end == j + _DEPTH_UPDATE.shape[0] + 1:
                field |= _F_DEPTH
            i = end
        elif (
            klen == 4
            and depth == 1
            and c == 123
            and k0 == 100
            and buf[ks + 1] == 97
            and buf[ks + 2] == 116
            and buf[ks + 3] == 97
        ):  # "data": {...}: the combined-stream wrapper
            if wrapped or outer:
                return FALLBACK
            wrapped = True
            flags = 0
            for k in range(hdr.shape[0]):
                hdr[k] = 0
            depth = 2
            i = _ws(buf, i + 1, n)
            if i < n and buf[i] == 125:
                return FALLBACK
            continue
        else:
            i = _skip_scalar(buf, i, n)
            if i < 0:
                return FALLBACK
        if field:
            if depth == 1:
                if wrapped:
                    return FALLBACK  # the wrapper has fields of its own
                outer |= field
            if field & _F_EV and not field & _F_DEPTH:
                flags &= ~_F_DEPTH
            flags |= field
        # after a value: ',' or '}' (closing the wrapper's data closes one more)
        while True:
            i = _ws(buf, i, n)
            if i >= n:
                return FALLBACK
            if buf[i] == 44:
                i = _ws(buf, i + 1, n)
                break
            if buf[i] == 125:
                depth -= 1
                i += 1
                if depth == 0:
                    if _ws(buf, i, n) != n:
                        return FALLBACK
                    if flags & _F_DEPTH:
                        return DEPTH if flags & _F_ALL == _F_ALL else FALLBACK
                    return OTHER
                continue
            return FALLBACK


#: side state slots (an int64[4] per side)
S_LO, S_HI, S_LIVE, S_DEAD = range(4)
ROOM = -1  # apply_levels: a side needs relayout() first (nothing was changed)


@njit(cache=True, nogil=True, inline="always")
def _find(keys, lo, hi, key):  # pragma: no cover - jitted
    """First index in [lo, hi) whose key is >= key (branch-free halving)."""
    n = hi - lo
    base = lo
    while n > 1:
        half = n >> 1
        if keys[base + half - 1] < key:
            base += half
        n -= half
    if n == 1 and keys[base] < key:
        base += 1
    return base


@njit(cache=True, nogil=True)
def _apply_side(keys, qtys, st, levels, m, sign):  # pragma: no cover - jitted
    lo = st[S_LO]
    hi = st[S_HI]
    live = st[S_LIVE]
    dead = st[S_DEAD]
    for j in range(m):
        key = sign * levels[j, 0]
        q = levels[j, 1]
        i = _find(keys, lo, hi, key)
        if i < hi and keys[i] == key:
            old = qtys[i]
            if q == 0.0:
                if old != 0.0:
                    live -= 1
                    qtys[i] = 0.0
                    if i == hi - 1:  # the best level went: drop it and dead ones below
                        hi -= 1
                        while hi > lo and qtys[hi - 1] == 0.0:
                            hi -= 1
                            dead -= 1
                    elif i == lo:  # the deepest went
                        lo += 1
                        while lo < hi and qtys[lo] == 0.0:
                            lo += 1
                            dead -= 1
                    else:
                        dead += 1  # a tombstone: the price often comes back
            else:
                if old == 0.0:
                    live += 1
                    dead -= 1
                qtys[i] = q
        elif q != 0.0:
            live += 1
            if i - lo < hi - i:  # fewer entries below: move those down one
                for t in range(lo, i):
                    keys[t - 1] = keys[t]
                    qtys[t - 1] = qtys[t]
                lo -= 1
                keys[i - 1] = key
                qtys[i - 1] = q
            else:
                for t in range(hi, i, -1):
                    keys[t] = keys[t - 1]
                    qtys[t] = qtys[t - 1]
                hi += 1
                keys[i] = key
                qtys[i] = q
    st[S_LO] = lo
    st[S_HI] = hi
    st[S_LIVE] = live
    st[S_DEAD] = dead


@njit(cache=True, nogil=True)
def _needs_room(keys, st, m):  # pragma: no cover - jitted
    return (
        st[S_LO] < m
        or keys.shape[0] - st[S_HI] < m
        or st[S_DEAD] > st[S_LIVE] + 256
    )


@njit(cache=True, nogil=True)
def apply_levels(bk, bq, bst, bids, mb, ak, aq, ast, asks, ma):  # pragma: no cover - jitted
    """Apply mb bid and ma ask levels (price, qty; qty 0 deletes) to the two sides.

    Returns ROOM, having changed nothing, when a side must be relaid out first (too
    little free room at an end for m inserts, or too many tombstones); else 0."""
    if _needs_room(bk, bst, mb) or _needs_room(ak, ast, ma):
        return ROOM
    _apply_side(bk, bq, bst, bids, mb, 1.0)
    _apply_side(ak, aq, ast, asks, ma, -1.0)
    return 0


@njit(cache=True, nogil=True)
def relayout(keys, qtys, st, m):  # pragma: no cover - jitted
    """The live levels of a side copied, centred, into new arrays with room for m
    inserts at either end (tombstones dropped); st is updated. Returns (keys, qtys)."""
    live = st[S_LIVE]
    size = max(1024, 2 * live + 2 * m + 512)
    nk = np.empty(size, dtype=np.float64)
    nq = np.empty(size, dtype=np.float64)
    lo = (size - live) // 2
    w = lo
    for t in range(st[S_LO], st[S_HI]):
        if qtys[t] != 0.0:
            nk[w] = keys[t]
            nq[w] = qtys[t]
            w += 1
    st[S_LO] = lo
    st[S_HI] = w
    st[S_DEAD] = 0
    return nk, nq


@njit(cache=True, nogil=True)
def top_levels(keys, qtys, st, k, sign, out):  # pragma: no cover - jitted
    """The k best live levels into out[:, 0:2] (price, qty), best first; the count."""
    c = 0
    t = st[S_HI] - 1
    lo = st[S_LO]
    while t >= lo and c < k:
        if qtys[t] != 0.0:
            out[c, 0] = sign * keys[t]
            out[c, 1] = qtys[t]
            c += 1
        t -= 1
    return c

