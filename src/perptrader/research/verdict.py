"""From the trials of a study to its verdict: champion, deflated Sharpe, PBO, comparisons.

* **Champion.** The recipe (feature set / label / model / decision, pooled or not) with
  the highest mean out-of-sample net Sharpe over the cells it ran on. Choosing it IS a
  selection among every trial, so its Sharpe is judged against that many tries.
* **Deflated Sharpe** (Bailey & López de Prado) per champion cell: ``n_trials`` = every
  trial of the study (the count that a search over that many skill-less variants would
  turn into a lucky Sharpe), the variance of Sharpe across the trials of the same
  timeframe.
* **PBO** (CSCV) per cell over every recipe that ran on it: how often the in-sample best
  recipe ends below the median out of sample.
* **Verdict.** "edge" needs all of: a positive mean net Sharpe, above buy-and-hold's on
  the same bars, a deflated Sharpe >= 0.95 in at least half the champion's cells and a
  median PBO below 0.5. Anything less is "no edge after costs", with the reasons. The
  lockbox is reported apart and never changes which recipe is the champion.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from perptrader.core.jsonsafe import json_safe

DSR_BAR = 0.95


def trial_table(trials: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per trial with the headline columns."""
    rows = []
    for t in trials:
        tr, bh, sg = t.get("trading") or {}, t.get("buy_and_hold") or {}, t.get("signal") or {}
        rows.append({
            "id": t["id"], "kind": t["kind"], "recipe": t["recipe"], "symbol": t["symbol"],
            "timeframe": t["timeframe"], "decision": t.get("decision"),
            "unit": t.get("unit"), "seen": t.get("seen", True),
            "sharpe": tr.get("sharpe"), "total_return": tr.get("total_return"),
            "max_drawdown": tr.get("max_drawdown"), "turnover": tr.get("turnover"),
            "cost_share": tr.get("cost_share"), "trades": tr.get("trades"),
            "bh_sharpe": bh.get("sharpe"), "bh_return": bh.get("total_return"),
            "macro_f1": sg.get("macro_f1"), "ic": sg.get("ic"), "rank_ic": sg.get("rank_ic"),
            "collapsed": t.get("collapsed", False),
        })
    frame = pd.DataFrame(rows)
    for c in ("sharpe", "total_return", "max_drawdown", "turnover", "cost_share",
              "bh_sharpe", "bh_return", "macro_f1", "ic", "rank_ic"):
        if c in frame:
            frame[c] = pd.to_numeric(frame[c], errors="coerce")
    # a trial that never traded has a flat equity: Sharpe 0 for ranking, not "unknown"
    flat = frame["sharpe"].isna() & (pd.to_numeric(frame["trades"], errors="coerce") == 0)
    frame.loc[flat, "sharpe"] = 0.0
    return frame


def recipe_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean figures per recipe over its cells, best mean net Sharpe first."""
    g = table.groupby("recipe")
    out = pd.DataFrame({
        "cells": g.size(), "sharpe": g["sharpe"].mean(), "total_return": g["total_return"].mean(),
        "bh_sharpe": g["bh_sharpe"].mean(), "bh_return": g["bh_return"].mean(),
        "turnover": g["turnover"].mean(), "cost_share": g["cost_share"].mean(),
        "macro_f1": g["macro_f1"].mean(), "ic": g["ic"].mean(),
        "beats_bh": g.apply(lambda x: float(np.mean(x["sharpe"] > x["bh_sharpe"])),
                            include_groups=False),
    })
    return out.sort_values("sharpe", ascending=False, na_position="last")


def _per_bar_sharpe(r: pd.Series) -> float:
    x = r.to_numpy(dtype=np.float64)
    x = x[np.isfinite(x)]
    sd = float(np.std(x, ddof=1)) if len(x) > 1 else 0.0
    return float(np.mean(x)) / sd if sd > 0 else math.nan


def deflated(table: pd.DataFrame, returns: dict[str, pd.Series], recipe: str,
             n_trials: int) -> list[dict[str, Any]]:
    """DSR of each cell of ``recipe`` against ``n_trials`` tries (see the docstring)."""
    from perptrader.backtest.overfitting import deflated_sharpe

    out = []
    for tf, part in table.groupby("timeframe"):
        srs = np.array([_per_bar_sharpe(returns[i]) for i in part["id"] if i in returns])
        srs = srs[np.isfinite(srs)]
        var = float(np.var(srs, ddof=1)) if len(srs) > 2 else None
        for _, row in part[part["recipe"] == recipe].iterrows():
            r = returns.get(row["id"])
            if r is None:
                continue
            d = deflated_sharpe(r.to_numpy(), n_trials=n_trials, sr_variance=var)
            out.append({"id": row["id"], "symbol": row["symbol"], "timeframe": tf,
                        "dsr": d.dsr, "sharpe_per_bar": d.sharpe, "sr0_per_bar": d.sr0,
                        "n_obs": d.n_obs, "variance_source": d.variance_source})
    return out


def pbo(table: pd.DataFrame, returns: dict[str, pd.Series],
        n_blocks: int = 8) -> list[dict[str, Any]]:
    """PBO per (symbol, timeframe) over the symbol trials that share its bars."""
    from perptrader.backtest.overfitting import pbo_cscv

    out = []
    cells = table[table["kind"] == "symbol"].groupby(["symbol", "timeframe"])
    for (symbol, tf), part in cells:
        series = [returns[i] for i in part["id"] if i in returns]
        if len(series) < 2:
            continue
        matrix = pd.concat(series, axis=1).fillna(0.0).to_numpy()
        if len(matrix) < 2 * n_blocks:
            continue
        res = pbo_cscv(matrix, n_blocks=n_blocks)
        out.append({"symbol": symbol, "timeframe": tf, "pbo": res.pbo,
                    "n_strategies": res.n_strategies, "n_splits": res.n_splits})
    return out


def decision_comparison(table: pd.DataFrame, plain: str, cost_aware: str) -> dict[str, Any]:
    """The cost-aware layer against the plain threshold on the SAME probabilities (the
    same units): turnover, cost share, net return and Sharpe, per trial and on average."""
    a = table[table["decision"] == plain].set_index(["unit", "symbol"])
    b = table[table["decision"] == cost_aware].set_index(["unit", "symbol"])
    both = a.merge(b, left_index=True, right_index=True, how="inner",
                   suffixes=("_plain", "_cost_aware"))
    rows = []
    for (unit, symbol), row in both.iterrows():
        rows.append({"unit": unit, "symbol": symbol, "timeframe": row["timeframe_plain"],
                     **{f"{k}_{s}": row[f"{k}_{s}"]
                        for k in ("turnover", "cost_share", "total_return", "sharpe", "trades")
                        for s in ("plain", "cost_aware")}})
    frame = pd.DataFrame(rows)
    summary: dict[str, Any] = {"plain": plain, "cost_aware": cost_aware, "pairs": len(frame)}
    if len(frame):
        for k in ("turnover", "cost_share", "total_return", "sharpe", "trades"):
            for s in ("plain", "cost_aware"):
                summary[f"median_{k}_{s}"] = float(frame[f"{k}_{s}"].median())
    return json_safe({"summary": summary, "rows": rows})


def as_float(x: Any) -> float:
    """``x`` as a float, NaN when it is missing or not a number."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def verdict(champion: dict[str, Any], dsr: list[dict[str, Any]],
            pbos: list[dict[str, Any]], collapsed_agents: int) -> dict[str, Any]:
    """The verdict line and its reasons (see the module docstring)."""
    reasons = []
    sharpe, bh = as_float(champion.get("sharpe")), as_float(champion.get("bh_sharpe"))
    if not sharpe > 0:
        reasons.append(f"the best recipe's mean net Sharpe is {sharpe:.2f} (not > 0)")
    if not sharpe > bh:
        reasons.append(f"it does not beat buy-and-hold's mean Sharpe ({sharpe:.2f} vs "
                       f"{bh:.2f})")
    passing = sum(1 for d in dsr if d["dsr"] is not None and d["dsr"] >= DSR_BAR)
    if not dsr or passing * 2 < len(dsr):
        reasons.append(f"deflated Sharpe >= {DSR_BAR} in {passing} of {len(dsr)} cells")
    values = [p["pbo"] for p in pbos if p["pbo"] is not None and math.isfinite(p["pbo"])]
    med = float(np.median(values)) if values else math.nan
    if values and not med < 0.5:
        reasons.append(f"median PBO {med:.2f} (>= 0.5: the in-sample best is usually not "
                       f"the out-of-sample best)")
    if collapsed_agents:
        reasons.append(f"{collapsed_agents} RL agent trial(s) collapsed (one target kept, or "
                       "no trades)")
    edge = not reasons
    line = ("EDGE: the best recipe survives costs, the trial count and the PBO check"
            if edge else "NO EDGE after costs: " + "; ".join(reasons))
    return {"edge": edge, "line": line, "reasons": reasons, "dsr_cells_passing": passing,
            "dsr_cells": len(dsr), "median_pbo": med}


def summarise(trials: list[dict[str, Any]], returns: dict[str, pd.Series],
              plain: str | None, cost_aware: str | None) -> dict[str, Any]:
    """Everything the study JSON and report show about the research span."""
    table = trial_table(trials)
    traded = table[table["kind"] != "agent"]
    recipes = recipe_table(traded)
    n_trials = len(table)
    champion_name = str(recipes.index[0])
    champion = {"recipe": champion_name, **recipes.iloc[0].to_dict()}
    dsr = deflated(traded, returns, champion_name, n_trials)
    pbos = pbo(traded, returns)
    collapsed = int(table["collapsed"].fillna(False).astype(bool).sum())
    out = {
        "n_trials": n_trials,
        "champion": champion,
        "recipes": recipes.reset_index().to_dict(orient="records"),
        "deflated_sharpe": dsr,
        "pbo": pbos,
        "verdict": verdict(champion, dsr, pbos, collapsed),
    }
    if plain and cost_aware:
        out["decision_comparison"] = decision_comparison(traded, plain, cost_aware)
    return json_safe(out)


__all__ = ["DSR_BAR", "as_float", "decision_comparison", "deflated", "pbo", "recipe_table",
           "summarise", "trial_table", "verdict"]
