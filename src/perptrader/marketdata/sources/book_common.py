"""Small helpers shared by the order-book file readers (nautilus, Tardis).

Values are read as text and parsed here, so that a bad value is reported with its file
row and column instead of turning into a silent NaN or an anonymous pandas error.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from perptrader.core.errors import DataFormatError
from perptrader.marketdata.sources.files import open_bytes


def read_text_csv(path: Path) -> pd.DataFrame:
    """A headed CSV with every value as text (``None`` where empty); the index is the
    1-based file line number (the header is line 1)."""
    try:
        with open_bytes(path) as fh:
            frame = pd.read_csv(fh, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"cannot read CSV: {exc}", path=path) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame.index = pd.RangeIndex(2, len(frame) + 2)
    return frame


def _first_bad(
    values: pd.Series, bad: np.ndarray, path: Path, field: str, what: str
) -> DataFormatError:
    i = int(np.flatnonzero(bad)[0])
    return DataFormatError(
        f"{what}: {values.iloc[i]!r}", path=path, row=int(values.index[i]), field=field
    )


def numeric(
    values: pd.Series, path: Path, field: str, *, required: bool = True, integer: bool = False
) -> np.ndarray:
    """Parse a text column to float64 (or int64 with ``integer``). An unparseable value
    is an error naming its row; an empty one is too when ``required``, else NaN."""
    parsed = pd.to_numeric(values, errors="coerce")
    empty = values.isna().to_numpy()
    nan = parsed.isna().to_numpy()
    if (nan & ~empty).any():
        raise _first_bad(values, nan & ~empty, path, field, "not a number")
    if required and empty.any():
        raise _first_bad(values, empty, path, field, "empty value")
    out = parsed.to_numpy(dtype="float64", na_value=np.nan)
    if np.isinf(out).any():
        raise _first_bad(values, np.isinf(out), path, field, "infinite value")
    if integer:
        frac = ~np.isnan(out) & (out % 1 != 0)
        if frac.any():
            raise _first_bad(values, frac, path, field, "not an integer")
        # re-parse exactly: float64 cannot hold every int64 id
        ints = pd.to_numeric(values.fillna("0"), errors="coerce")
        return ints.to_numpy(dtype="int64")
    return out


def boolean(values: pd.Series, path: Path, field: str) -> np.ndarray:
    """'true'/'false' in any case (also 1/0) -> bool array; anything else is an error."""
    text = values.fillna("").astype(str).str.strip().str.lower()
    truth = text.isin(["true", "1"]).to_numpy()
    ok = truth | text.isin(["false", "0"]).to_numpy()
    if not ok.all():
        raise _first_bad(values, ~ok, path, field, "expected true/false")
    return truth


def stable_id(text: str) -> int:
    """A non-negative int64 derived from a string id (e.g. a BitMEX trade UUID): the same
    string always gives the same number, so re-imports merge instead of duplicating."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


def keep_last_per_ts(frame: pd.DataFrame, ts: str = "ts") -> tuple[pd.DataFrame, int]:
    """Top-of-book rows sharing a timestamp: keep the last (the state at the end of that
    instant). Returns the frame and how many rows were dropped."""
    dup = frame.duplicated(subset=[ts], keep="last").to_numpy()
    return frame[~dup], int(dup.sum())
