"""Derivatives features: funding, basis, open interest, long/short and taker ratios,
liquidations.

Each family reads only the loader columns it names in ``requires`` and is absent from a
build when any of them is missing (``Family.is_available``); a row whose input is NaN
gives NaN (for example BTCUSDT has mark bars only from 2023-12, so ``basis`` is NaN
before that). Windows are in bars, except the funding family (``derivatives_funding``),
whose windows are physical time because funding is paid by the clock.

Open interest, long/short and taker ratios arrive as-of joined at the bar close and
their step may be coarser than the bar (Binance open interest every 4h on 1h bars):
changes over h bars are then 0 on bars where no new value was published. That is still
honest, since it is exactly what was known at each close.

``FAMILIES`` here holds every derivatives family, the funding one included.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perptrader.features.arrays import col, div, safe_log, shift
from perptrader.features.base import Family, FeatureContext, FeatureSpec
from perptrader.features.derivatives_common import (
    frame_of,
    rolling_corr,
    rolling_mean,
    rolling_sum,
    zscore,
)
from perptrader.features.derivatives_funding import FUNDING

# --------------------------------------------------------------------------- basis

BASIS_MEAN = 24
BASIS_Z = 168


def compute_basis(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
    close = col(frame, "close")
    basis = div(col(frame, "mark_close") - close, close) * 1e4
    mean = rolling_mean(basis, BASIS_MEAN)
    return frame_of(frame, {
        "basis_mark_bps": basis,
        f"basis_mark_mean_{BASIS_MEAN}": mean,
        f"basis_mark_dev_{BASIS_MEAN}": basis - mean,
        f"basis_mark_z_{BASIS_Z}": zscore(basis, BASIS_Z),
    })


BASIS = Family(
    name="basis",
    description="Mark price against the traded price (perp basis to the mark) in bps, "
                "its rolling mean, deviation and z-score.",
    requires=("close", "mark_close"),
    specs=(
        FeatureSpec("basis_mark_bps", "1e4 * (mark_close - close) / close",
                    ("close", "mark_close"), 0),
        FeatureSpec(f"basis_mark_mean_{BASIS_MEAN}", f"SMA(basis_mark_bps, {BASIS_MEAN})",
                    ("close", "mark_close"), BASIS_MEAN - 1),
        FeatureSpec(f"basis_mark_dev_{BASIS_MEAN}",
                    f"basis_mark_bps - SMA(basis_mark_bps, {BASIS_MEAN})",
                    ("close", "mark_close"), BASIS_MEAN - 1),
        FeatureSpec(f"basis_mark_z_{BASIS_Z}",
                    f"(basis - SMA(basis, {BASIS_Z})) / STD(basis, {BASIS_Z})",
                    ("close", "mark_close"), BASIS_Z - 1),
    ),
    compute=compute_basis,
    tags=("derivatives",),
)


def compute_premium(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
    index = col(frame, "index_close")
    mark_prem = div(col(frame, "mark_close") - index, index) * 1e4
    trade_prem = div(col(frame, "close") - index, index) * 1e4
    return frame_of(frame, {
        "premium_mark_bps": mark_prem,
        "premium_trade_bps": trade_prem,
        f"premium_mark_mean_{BASIS_MEAN}": rolling_mean(mark_prem, BASIS_MEAN),
        f"premium_mark_z_{BASIS_Z}": zscore(mark_prem, BASIS_Z),
    })


_PREM_IN = ("close", "mark_close", "index_close")
PREMIUM = Family(
    name="premium",
    description="Premium of the mark and of the traded price over the index price, in bps.",
    requires=_PREM_IN,
    specs=(
        FeatureSpec("premium_mark_bps", "1e4 * (mark_close - index_close) / index_close",
                    _PREM_IN, 0),
        FeatureSpec("premium_trade_bps", "1e4 * (close - index_close) / index_close",
                    _PREM_IN, 0),
        FeatureSpec(f"premium_mark_mean_{BASIS_MEAN}", f"SMA(premium_mark_bps, {BASIS_MEAN})",
                    _PREM_IN, BASIS_MEAN - 1),
        FeatureSpec(f"premium_mark_z_{BASIS_Z}",
                    f"(premium - SMA(premium, {BASIS_Z})) / STD(premium, {BASIS_Z})",
                    _PREM_IN, BASIS_Z - 1),
    ),
    compute=compute_premium,
    tags=("derivatives",),
)

# --------------------------------------------------------------------------- open interest

OI_HORIZONS = (1, 4, 24)
OI_Z = 168
OI_DIV_H = 4
OI_CORR = 24
OI_VOL = 24
_OI_IN = ("oi_contracts", "oi_value", "close", "volume")


def compute_oi(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
    oi = col(frame, "oi_contracts")
    close = col(frame, "close")
    log_oi = safe_log(oi)
    log_px = safe_log(close)
    out: dict[str, np.ndarray] = {}
    for h in OI_HORIZONS:
        out[f"oi_chg_{h}"] = div(oi, shift(oi, h)) - 1.0
    vel_4 = (log_oi - shift(log_oi, 4)) / 4.0
    vel_24 = (log_oi - shift(log_oi, 24)) / 24.0
    out["oi_vel_4"] = vel_4
    out["oi_vel_24"] = vel_24
    out["oi_accel"] = vel_4 - vel_24
    out[f"oi_z_{OI_Z}"] = zscore(log_oi, OI_Z)
    d_oi = log_oi - shift(log_oi, OI_DIV_H)
    d_px = log_px - shift(log_px, OI_DIV_H)
    known = ~(np.isnan(d_oi) | np.isnan(d_px))
    classes = {  # sign(dOI) x sign(dprice): the usual reading of each quadrant
        "long_build": (d_oi > 0) & (d_px > 0),  # new longs push price up
        "short_build": (d_oi > 0) & (d_px < 0),  # new shorts push price down
        "short_cover": (d_oi < 0) & (d_px > 0),  # shorts closing lift price
        "long_unwind": (d_oi < 0) & (d_px < 0),  # longs closing drop price
    }
    for name, flag in classes.items():
        out[f"oi_div_{name}"] = np.where(known, flag.astype("float64"), np.nan)
    r_oi = log_oi - shift(log_oi, 1)
    r_px = log_px - shift(log_px, 1)
    out[f"oi_price_corr_{OI_CORR}"] = rolling_corr(r_oi, r_px, OI_CORR)
    notional_vol = col(frame, "volume") * close
    out[f"oi_to_volume_{OI_VOL}"] = div(col(frame, "oi_value"),
                                       rolling_mean(notional_vol, OI_VOL))
    return frame_of(frame, out)


def _oi_specs() -> tuple[FeatureSpec, ...]:
    specs = [FeatureSpec(f"oi_chg_{h}", f"oi_contracts / oi_contracts[t-{h}] - 1",
                         ("oi_contracts",), h) for h in OI_HORIZONS]
    specs += [
        FeatureSpec("oi_vel_4", "(ln oi - ln oi[t-4]) / 4 (log change per bar)",
                    ("oi_contracts",), 4),
        FeatureSpec("oi_vel_24", "(ln oi - ln oi[t-24]) / 24", ("oi_contracts",), 24),
        FeatureSpec("oi_accel", "oi_vel_4 - oi_vel_24", ("oi_contracts",), 24),
        FeatureSpec(f"oi_z_{OI_Z}", f"z-score of ln oi_contracts over {OI_Z} bars",
                    ("oi_contracts",), OI_Z - 1),
    ]
    words = {"long_build": "dOI > 0 and dP > 0", "short_build": "dOI > 0 and dP < 0",
             "short_cover": "dOI < 0 and dP > 0", "long_unwind": "dOI < 0 and dP < 0"}
    for name, rule in words.items():
        specs.append(FeatureSpec(
            f"oi_div_{name}", f"1 if {rule} (d = ln x - ln x[t-{OI_DIV_H}]) else 0",
            ("oi_contracts", "close"), OI_DIV_H))
    specs += [
        FeatureSpec(f"oi_price_corr_{OI_CORR}",
                    f"corr(d ln oi, d ln close) over {OI_CORR} bars (1-bar log changes)",
                    ("oi_contracts", "close"), OI_CORR),
        FeatureSpec(f"oi_to_volume_{OI_VOL}",
                    f"oi_value / SMA(volume * close, {OI_VOL}) (OI in bars of notional volume)",
                    ("oi_value", "volume", "close"), OI_VOL - 1),
    ]
    return tuple(specs)


OI = Family(
    name="oi",
    description="Open interest: % change and log velocity over several horizons, z-score, "
                "OI/price quadrant flags and correlation, OI relative to traded notional.",
    requires=_OI_IN,
    specs=_oi_specs(),
    compute=compute_oi,
    tags=("derivatives",),
)

# --------------------------------------------------------------------------- long/short

LS_Z = 168
LS_RATIOS = {
    "global": "ls_global_account_ratio",
    "top_account": "ls_top_account_ratio",
    "top_position": "ls_top_position_ratio",
}


def _ls_family(key: str, column: str) -> Family:
    """One family per long/short ratio: Binance publishes them from separate endpoints,
    so a store may hold one without the others; each is absent on its own."""
    name = f"ratio_{key}"

    def compute(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
        r = col(frame, column)
        lr = safe_log(r)
        return frame_of(frame, {
            f"{name}_level": np.where(r > 0, r, np.nan),
            f"{name}_long_share": div(r, 1.0 + r),
            f"{name}_log": lr,
            f"{name}_z_{LS_Z}": zscore(lr, LS_Z),
            f"{name}_chg_1": lr - shift(lr, 1),
            f"{name}_chg_24": lr - shift(lr, 24),
        })

    inp = (column,)
    return Family(
        name=name,
        description=f"Long/short ratio {column}: level, long share, log, z-score, change.",
        requires=inp,
        specs=(
            FeatureSpec(f"{name}_level", f"{column} (longs / shorts)", inp, 0),
            FeatureSpec(f"{name}_long_share", "R / (1 + R) (share of longs)", inp, 0),
            FeatureSpec(f"{name}_log", "ln R", inp, 0),
            FeatureSpec(f"{name}_z_{LS_Z}", f"z-score of ln R over {LS_Z} bars", inp, LS_Z - 1),
            FeatureSpec(f"{name}_chg_1", "ln R - ln R[t-1]", inp, 1),
            FeatureSpec(f"{name}_chg_24", "ln R - ln R[t-24]", inp, 24),
        ),
        compute=compute,
        tags=("derivatives",),
    )


RATIO_FAMILIES = tuple(_ls_family(k, c) for k, c in LS_RATIOS.items())

# --------------------------------------------------------------------------- taker flow

TAKER_WINDOWS = (4, 24)
TAKER_Z = 168


def compute_taker(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
    vol = col(frame, "volume")
    buy = col(frame, "taker_buy_base")
    signed = 2.0 * buy - vol
    imb = div(signed, vol)
    out = {"taker_buy_share": div(buy, vol), "taker_imbalance": imb}
    for w in TAKER_WINDOWS:
        out[f"taker_imb_vw_{w}"] = div(rolling_sum(signed, w), rolling_sum(vol, w))
    out[f"taker_imb_z_{TAKER_Z}"] = zscore(imb, TAKER_Z)
    return frame_of(frame, out)


_TK_IN = ("volume", "taker_buy_base")
TAKER = Family(
    name="taker",
    description="Aggressor flow inside each bar from the bars' taker buy volume: buy share, "
                "imbalance, volume-weighted imbalance over windows, z-score.",
    requires=_TK_IN,
    specs=(
        FeatureSpec("taker_buy_share", "taker_buy_base / volume", _TK_IN, 0),
        FeatureSpec("taker_imbalance", "2 * taker_buy_base / volume - 1", _TK_IN, 0),
        *(FeatureSpec(f"taker_imb_vw_{w}",
                      f"sum(2 * taker_buy_base - volume, {w}) / sum(volume, {w})", _TK_IN, w - 1)
          for w in TAKER_WINDOWS),
        FeatureSpec(f"taker_imb_z_{TAKER_Z}", f"z-score of taker_imbalance over {TAKER_Z} bars",
                    _TK_IN, TAKER_Z - 1),
    ),
    compute=compute_taker,
    tags=("derivatives", "flow"),
)


def compute_takerratio(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
    r = col(frame, "taker_buy_sell_ratio")
    r = np.where(r > 0, r, np.nan)
    imb = div(r - 1.0, r + 1.0)  # = 2 * buy share - 1 with share = R / (1 + R)
    lr = safe_log(r)
    return frame_of(frame, {
        "takerratio_log": lr,
        "takerratio_imbalance": imb,
        "takerratio_imb_mean_24": rolling_mean(imb, 24),
        f"takerratio_imb_z_{TAKER_Z}": zscore(imb, TAKER_Z),
        "takerratio_chg_24": lr - shift(lr, 24),
    })


_TR_IN = ("taker_buy_sell_ratio",)
TAKERRATIO = Family(
    name="takerratio",
    description="The exchange's published taker buy/sell volume ratio (its own period, "
                "joined as of the bar close): log, imbalance, mean, z-score, change.",
    requires=_TR_IN,
    specs=(
        FeatureSpec("takerratio_log", "ln taker_buy_sell_ratio", _TR_IN, 0),
        FeatureSpec("takerratio_imbalance", "(R - 1) / (R + 1) = 2 * buy share - 1", _TR_IN, 0),
        FeatureSpec("takerratio_imb_mean_24", "SMA(takerratio_imbalance, 24)", _TR_IN, 23),
        FeatureSpec(f"takerratio_imb_z_{TAKER_Z}",
                    f"z-score of takerratio_imbalance over {TAKER_Z} bars", _TR_IN, TAKER_Z - 1),
        FeatureSpec("takerratio_chg_24", "ln R - ln R[t-24]", _TR_IN, 24),
    ),
    compute=compute_takerratio,
    tags=("derivatives", "flow"),
)

# --------------------------------------------------------------------------- liquidations

LIQ_REL = 168
LIQ_SUMS = (4, 24)
_LQ_IN = ("liq_count", "liq_buy_notional", "liq_sell_notional", "volume", "close")


def compute_liquidation(frame: pd.DataFrame, ctx: FeatureContext) -> pd.DataFrame:
    count = col(frame, "liq_count")
    buy = col(frame, "liq_buy_notional")
    sell = col(frame, "liq_sell_notional")
    total = buy + sell
    net = buy - sell
    notional_vol = col(frame, "volume") * col(frame, "close")
    out = {
        f"liquidation_count_rel_{LIQ_REL}": div(count, rolling_mean(count, LIQ_REL)),
        f"liquidation_notional_rel_{LIQ_REL}": div(total, rolling_mean(total, LIQ_REL)),
        "liquidation_imbalance": div(net, total),
        "liquidation_to_volume": div(total, notional_vol),
    }
    for w in LIQ_SUMS:
        s_total = rolling_sum(total, w)
        out[f"liquidation_imb_{w}"] = div(rolling_sum(net, w), s_total)
        out[f"liquidation_to_volume_{w}"] = div(s_total, rolling_sum(notional_vol, w))
        out[f"liquidation_count_sum_{w}_rel"] = div(rolling_sum(count, w),
                                                    w * rolling_mean(count, LIQ_REL))
    return frame_of(frame, out)


def _liq_specs() -> tuple[FeatureSpec, ...]:
    tot = "liq_buy_notional + liq_sell_notional"
    specs = [
        FeatureSpec(f"liquidation_count_rel_{LIQ_REL}",
                    f"liq_count / SMA(liq_count, {LIQ_REL}) (NaN when no liquidation in "
                    f"{LIQ_REL} bars)", _LQ_IN[:1], LIQ_REL - 1),
        FeatureSpec(f"liquidation_notional_rel_{LIQ_REL}", f"N / SMA(N, {LIQ_REL}), N = {tot}",
                    _LQ_IN[:3], LIQ_REL - 1),
        FeatureSpec("liquidation_imbalance",
                    "(buy - sell) / (buy + sell) notional; +1 = only shorts liquidated; NaN "
                    "when none", _LQ_IN[1:3], 0),
        FeatureSpec("liquidation_to_volume", f"({tot}) / (volume * close)", _LQ_IN[1:], 0),
    ]
    for w in LIQ_SUMS:
        specs += [
            FeatureSpec(f"liquidation_imb_{w}", f"sum(buy - sell, {w}) / sum(buy + sell, {w})",
                        _LQ_IN[1:3], w - 1),
            FeatureSpec(f"liquidation_to_volume_{w}",
                        f"sum({tot}, {w}) / sum(volume * close, {w})", _LQ_IN[1:], w - 1),
            FeatureSpec(f"liquidation_count_sum_{w}_rel",
                        f"sum(liq_count, {w}) / ({w} * SMA(liq_count, {LIQ_REL}))", _LQ_IN[:1],
                        LIQ_REL - 1),
        ]
    return tuple(specs)


LIQUIDATION = Family(
    name="liquidation",
    description="Forced liquidations per bar: count and notional relative to their "
                "average, long/short imbalance, rolling sums, share of traded notional.",
    requires=_LQ_IN,
    specs=_liq_specs(),
    compute=compute_liquidation,
    tags=("derivatives",),
)

FAMILIES: tuple[Family, ...] = (FUNDING, BASIS, PREMIUM, OI, *RATIO_FAMILIES, TAKER,
                                TAKERRATIO, LIQUIDATION)

__all__ = ["BASIS", "FAMILIES", "FUNDING", "LIQUIDATION", "OI", "PREMIUM", "RATIO_FAMILIES",
           "TAKER", "TAKERRATIO"]
