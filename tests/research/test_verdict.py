"""The study verdict (``research.verdict``): champion, DSR count, PBO and collapse."""

from __future__ import annotations

import numpy as np
import pandas as pd

from perptrader.research.verdict import recipe_table, summarise, trial_table, verdict


def _trial(i: str, recipe: str, symbol: str, sharpe: float, bh: float, kind: str = "symbol",
           decision: str = "t", unit: str = "u") -> dict:
    return {"id": i, "kind": kind, "recipe": recipe, "symbol": symbol, "timeframe": "1h",
            "decision": decision, "unit": f"{unit}-{symbol}",
            "trading": {"sharpe": sharpe, "total_return": sharpe / 10, "turnover": 10.0,
                        "cost_share": 0.3, "trades": 5, "max_drawdown": -0.1},
            "buy_and_hold": {"sharpe": bh, "total_return": bh / 10},
            "signal": {"macro_f1": 0.4, "ic": 0.01, "rank_ic": 0.02}}


def test_champion_is_the_best_mean_and_a_flat_trial_counts_as_zero() -> None:
    trials = [_trial("a1", "A", "X", 1.0, 0.5), _trial("a2", "A", "Y", -0.2, 0.5),
              _trial("b1", "B", "X", 0.3, 0.5), _trial("b2", "B", "Y", 0.3, 0.5)]
    trials.append({**_trial("c1", "C", "X", float("nan"), 0.5),
                   "trading": {"sharpe": None, "trades": 0}})
    table = trial_table(trials)
    assert table.loc[table["id"] == "c1", "sharpe"].item() == 0.0
    ranked = recipe_table(table)
    assert list(ranked.index) == ["A", "B", "C"]
    assert ranked.loc["A", "beats_bh"] == 0.5


def test_verdict_names_every_failed_condition() -> None:
    ok = verdict({"sharpe": 1.2, "bh_sharpe": 0.8},
                 [{"dsr": 0.97}, {"dsr": 0.96}], [{"pbo": 0.2}], collapsed_agents=0)
    assert ok["edge"] and ok["line"].startswith("EDGE")
    bad = verdict({"sharpe": 0.5, "bh_sharpe": 0.8},
                  [{"dsr": 0.97}, {"dsr": 0.1}, {"dsr": 0.2}], [{"pbo": 0.7}],
                  collapsed_agents=2)
    assert not bad["edge"] and bad["line"].startswith("NO EDGE after costs")
    text = " ".join(bad["reasons"])
    assert "buy-and-hold" in text and "1 of 3 cells" in text and "PBO 0.70" in text
    assert "2 RL agent trial(s) collapsed" in text


def test_dsr_uses_every_trial_as_n() -> None:
    rng = np.random.default_rng(0)
    idx = pd.date_range("2024-01-01", periods=2000, freq="h", tz="UTC")
    trials, returns = [], {}
    for k in range(6):
        t = _trial(f"r{k}", f"R{k}", "X", float(k), 0.0, decision="t" if k % 2 else "c",
                   unit=f"u{k // 2}")
        trials.append(t)
        returns[t["id"]] = pd.Series(rng.normal(0.0002 * k, 0.01, len(idx)), index=idx)
    out = summarise(trials, returns, plain="t", cost_aware="c")
    assert out["n_trials"] == 6
    assert out["champion"]["recipe"] == "R5"
    (cell,) = out["deflated_sharpe"]
    assert cell["variance_source"] == "trials" and 0.0 <= cell["dsr"] <= 1.0
    assert out["pbo"][0]["n_strategies"] == 6
    assert out["decision_comparison"]["summary"]["pairs"] == 3
