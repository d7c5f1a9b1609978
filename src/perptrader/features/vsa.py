"""Volume Spread Analysis (VSA): bar anatomy and Tom Williams' bar classes as features.

No well-kept library implements VSA, so it is written here by hand (DESIGN.md,
principle 5). The module is the public face of three small ones:
``vsa_params`` (VsaParams, VSA_CLASSES), ``vsa_anatomy`` (spread, volume, close
location, effort vs result, background trend and range) and ``vsa_classes`` (the 14
class rules). ``compute_vsa`` returns every measure and every class flag/strength for a
loader frame; ``FAMILIES`` wraps it in the feature-family contract; ``vsa_frequency``
is the report of how often each class fires and what followed (forward returns are
computed there only, never in features). docs/vsa.md states every rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perptrader.features.arrays import column_index
from perptrader.features.base import Family, FeatureContext, FeatureSpec
from perptrader.features.vsa_anatomy import VSA_INPUTS, compute_anatomy, safe_div
from perptrader.features.vsa_classes import classify
from perptrader.features.vsa_params import VSA_CLASSES, VsaParams

__all__ = ["FAMILIES", "VSA_CLASSES", "VsaParams", "compute_vsa", "vsa_columns",
           "vsa_frequency", "vsa_specs"]

#: anatomy columns, in output order, with the Anatomy field each comes from
_ANATOMY: tuple[tuple[str, str], ...] = (
    ("vsa_spread_rel", "spread_rel"),
    ("vsa_spread_z", "spread_z"),
    ("vsa_close_loc", "close_loc"),
    ("vsa_body", "body"),
    ("vsa_volume_rel", "volume_rel"),
    ("vsa_volume_z", "volume_z"),
    ("vsa_progress_rel", "progress_rel"),
    ("vsa_effort_result", "effort_result"),
    ("vsa_trend", "trend"),
    ("vsa_range_pos", "range_pos"),
    ("vsa_bar_dir", "bar_dir"),
)


def vsa_columns() -> list[str]:
    """Output columns of compute_vsa, in order."""
    cols = [name for name, _ in _ANATOMY]
    for c in VSA_CLASSES:
        cols += [f"vsa_{c}", f"vsa_{c}_strength"]
    return cols


def compute_vsa(frame: pd.DataFrame, params: VsaParams | None = None) -> pd.DataFrame:
    """VSA measures and class flags for every bar of ``frame`` (open high low close volume).

    Row t uses rows <= t only. Returns float64 columns ``vsa_columns()`` indexed like
    ``frame``; a missing input column is a KeyError.
    """
    p = params or VsaParams()
    anatomy = compute_anatomy(frame, p)
    columns = vsa_columns()
    # one (columns x rows) block, handed to pandas without a copy: building the frame
    # from a dict of 39 arrays would cost as much as all the arithmetic
    block = np.empty((len(columns), len(frame)))
    for i, (_, field) in enumerate(_ANATOMY):
        block[i] = getattr(anatomy, field)
    i = len(_ANATOMY)
    for flag, strength in classify(anatomy, p).values():
        block[i], block[i + 1] = flag, strength
        i += 2
    return pd.DataFrame(block.T, index=frame.index, columns=column_index(columns),
                        copy=False)


def _warmups(p: VsaParams) -> dict[str, int]:
    """Rows before each column's first value on a gap-free frame (checked by the tests)."""
    n, trend, rng = p.avg_window, p.trend_window + 1, p.range_window
    anatomy = {
        "vsa_spread_rel": n, "vsa_spread_z": n, "vsa_close_loc": 0, "vsa_body": 0,
        "vsa_volume_rel": n, "vsa_volume_z": n, "vsa_progress_rel": n + 1,
        "vsa_effort_result": n + 1, "vsa_trend": p.trend_window, "vsa_range_pos": rng,
        "vsa_bar_dir": 1,
    }
    classes = {
        "upthrust": max(rng, n), "buying_climax": max(trend, rng, n),
        "selling_climax": max(trend, rng, n), "stopping_volume": max(trend, n),
        "no_demand": max(trend, rng, n), "no_supply": max(trend, rng, n),
        "test": n + p.test_supply_window, "shakeout": max(rng, n), "ns_high_volume": n,
        "wide_spread_up": n, "wide_spread_down": n, "effort_to_rise": n + 1,
        "effort_to_fall": n + 1, "absorption": n + p.absorption_bars,
    }
    for c, w in classes.items():
        anatomy[f"vsa_{c}"] = anatomy[f"vsa_{c}_strength"] = w
    return anatomy


def _formulas(p: VsaParams) -> dict[str, str]:
    """One-line formulas for docs/features.md (prev_n = the n bars before t)."""
    n, tr, r, s, m = (p.avg_window, p.trend_window, p.range_window, p.test_supply_window,
                      p.absorption_bars)
    sr, vr, cl = "spread_rel", "volume_rel", "close_loc"
    hh, ll = f"max(high, prev_{r})", f"min(low, prev_{r})"
    up_ctx, dn_ctx = f"vsa_trend[t-1] >= {p.trend_min:g}", f"vsa_trend[t-1] <= {-p.trend_min:g}"
    lo, hi = f"{p.close_low:.3g}", f"{p.close_high:.3g}"
    rules = {
        "upthrust": f"high > {hh} & close <= {hh} & {cl} <= {lo} & {sr} >= "
                    f"{p.upthrust_spread:g} & {vr} >= {p.vol_high:g}",
        "buying_climax": f"{up_ctx} & high > {hh} & {vr} >= {p.vol_ultra:g} & {sr} >= "
                         f"{p.spread_wide:g} & {cl} < {hi}",
        "selling_climax": f"{dn_ctx} & low < {ll} & {vr} >= {p.vol_ultra:g} & {sr} >= "
                          f"{p.spread_wide:g} & {cl} > {lo}",
        "stopping_volume": f"{dn_ctx} & close < close[t-1] & {vr} >= {p.vol_high:g} & "
                           f"{cl} > {lo}",
        "no_demand": f"close > close[t-1] & {sr} <= {p.spread_narrow:g} & volume < "
                     f"min(volume[t-1], volume[t-2]) & ({up_ctx} | range_pos >= "
                     f"{p.range_zone:g})",
        "no_supply": f"close < close[t-1] & {sr} <= {p.spread_narrow:g} & volume < "
                     f"min(volume[t-1], volume[t-2]) & ({dn_ctx} | range_pos <= "
                     f"{-p.range_zone:g})",
        "test": f"any(close<close[-1] & {vr}>={p.vol_high:g}, prev_{s}) & close < "
                f"close[t-1] & low < low[t-1] & {cl} >= {hi} & {vr} <= {p.vol_low:g}",
        "shakeout": f"low < {ll} & close > {ll} & {sr} >= {p.spread_wide:g} & {cl} >= "
                    f"{hi} & {vr} >= {p.vol_high:g}",
        "ns_high_volume": f"{sr} <= {p.spread_narrow:g} & {vr} >= {p.vol_high:g}",
        "wide_spread_up": f"close > close[t-1] & {sr} >= {p.spread_wide:g} & {cl} >= {hi}",
        "wide_spread_down": f"close < close[t-1] & {sr} >= {p.spread_wide:g} & {cl} <= {lo}",
        "effort_to_rise": f"close > close[t-1] & volume > volume[t-1] & {vr} >= "
                          f"{p.vol_high:g} & progress_rel >= {p.effort_progress:g} & "
                          f"{cl} >= 0.5",
        "effort_to_fall": f"close < close[t-1] & volume > volume[t-1] & {vr} >= "
                          f"{p.vol_high:g} & progress_rel >= {p.effort_progress:g} & "
                          f"{cl} <= 0.5",
        "absorption": f"mean(volume, last {m}) / SMA(volume, prev_{n})[t-{m - 1}] >= "
                      f"{p.vol_high:g} & |close - close[t-{m}]| / (SMA(|dclose|, prev_{n})"
                      f"[t-{m - 1}] * sqrt({m})) <= {p.absorption_progress:g}",
    }
    out = {
        "vsa_spread_rel": f"(high - low) / SMA(high - low, prev_{n})",
        "vsa_spread_z": f"((high - low) - SMA(high - low, prev_{n})) / STD(high - low, prev_{n})",
        "vsa_close_loc": "(close - low) / (high - low); NaN when high == low",
        "vsa_body": "(close - open) / (high - low); NaN when high == low",
        "vsa_volume_rel": f"volume / SMA(volume, prev_{n})",
        "vsa_volume_z": f"(volume - SMA(volume, prev_{n})) / STD(volume, prev_{n})",
        "vsa_progress_rel": f"|close - close[t-1]| / SMA(|close - close[t-1]|, prev_{n})",
        "vsa_effort_result": "(volume_rel - progress_rel) / (volume_rel + progress_rel)",
        "vsa_trend": f"(close - close[t-{tr}]) / (SMA(high - low, {tr}) * sqrt({tr}))",
        "vsa_range_pos": f"2 * (close - {ll}) / ({hh} - {ll}) - 1",
        "vsa_bar_dir": "sign(close - close[t-1])",
    }
    for c, rule in rules.items():
        out[f"vsa_{c}"] = f"1 if {rule} else 0"
        out[f"vsa_{c}_strength"] = f"0 if not vsa_{c} else 1 + mean(excess past each "\
                                   f"threshold of vsa_{c})"
    return out


def vsa_specs(params: VsaParams | None = None) -> tuple[FeatureSpec, ...]:
    """The FeatureSpec of every compute_vsa column for ``params``."""
    p = params or VsaParams()
    warm, formula = _warmups(p), _formulas(p)
    inputs = {"vsa_close_loc": ("high", "low", "close"),
              "vsa_body": ("open", "high", "low", "close"),
              "vsa_bar_dir": ("close",)}
    return tuple(FeatureSpec(name=c, formula=formula[c], warmup=warm[c],
                             inputs=inputs.get(c, VSA_INPUTS))
                 for c in vsa_columns())


def _family_compute(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
    """The family runs with the default parameters (a strategy may call compute_vsa)."""
    return compute_vsa(frame)


FAMILIES: tuple[Family, ...] = (
    Family(
        name="vsa",
        description="Volume Spread Analysis: bar spread/volume/close anatomy, background "
                    "trend and Tom Williams' 14 bar classes (flag + strength).",
        requires=VSA_INPUTS,
        specs=vsa_specs(),
        compute=_family_compute,
        tags=("volume", "price-action"),
    ),
)


def _flag_frame(frame_or_vsa: pd.DataFrame) -> pd.DataFrame:
    """The class flags: taken from a compute_vsa output, or computed from OHLCV."""
    flags = [f"vsa_{c}" for c in VSA_CLASSES]
    if all(c in frame_or_vsa.columns for c in flags):
        return frame_or_vsa[flags]
    if all(c in frame_or_vsa.columns for c in VSA_INPUTS):
        return compute_vsa(frame_or_vsa)[flags]
    raise KeyError("vsa_frequency needs either the vsa_<class> flag columns or the "
                   f"columns {list(VSA_INPUTS)}")


def vsa_frequency(frame_or_vsa: pd.DataFrame,
                  horizons: tuple[int, ...] = (1, 4, 24)) -> pd.DataFrame:
    """How often each class fires and, when ``close`` is present, what followed.

    Rows: VSA_CLASSES. Columns: ``count`` (bars flagged), ``share_pct`` (flagged bars in
    % of the bars where the class could be judged, i.e. flag not NaN) and, only when the
    input has a ``close`` column, ``fwd_<h>_pct``: mean close-to-close return in % from
    the flagged bar's close to h bars later (the flag is known at that close), over
    flags whose horizon lies inside the data. ``attrs["baseline"]`` holds the same
    forward means over all bars, to compare against. Forward returns are a report of
    outcomes and are never used as features.
    """
    flags = _flag_frame(frame_or_vsa)
    judged = flags.notna().sum()
    hits = (flags == 1.0)
    out = pd.DataFrame({
        "count": hits.sum().to_numpy(dtype="int64"),
        "share_pct": (100.0 * hits.sum() / judged.where(judged > 0)).to_numpy(),
    }, index=pd.Index(VSA_CLASSES, name="class"))
    if "close" in frame_or_vsa.columns:
        close = frame_or_vsa["close"].to_numpy(dtype="float64")
        baseline = {}
        for h in horizons:
            fwd = 100.0 * safe_div(shift_back(close, h) - close, close)
            known = ~np.isnan(fwd)
            col = f"fwd_{h}_pct"
            out[col] = [_mean_where(fwd, hits[f"vsa_{c}"].to_numpy() & known)
                        for c in VSA_CLASSES]
            baseline[col] = _mean_where(fwd, known)
        out.attrs["baseline"] = baseline
    return out


def shift_back(x: np.ndarray, h: int) -> np.ndarray:
    """x[t + h] at row t (NaN past the end): the future, for the outcome report only."""
    out = np.full_like(x, np.nan)
    if h < len(x):
        out[: len(x) - h] = x[h:]
    return out


def _mean_where(x: np.ndarray, mask: np.ndarray) -> float:
    """Mean of x over mask; NaN (not a warning) when the mask is empty."""
    return float(x[mask].mean()) if mask.any() else float("nan")
