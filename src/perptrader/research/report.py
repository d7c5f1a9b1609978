"""One offline HTML page per study run: signal quality apart from trading, the verdict.

Order of the page: the verdict line with the trial count and the lockbox looks; the
recipes ranked by mean net Sharpe beside buy-and-hold; signal quality per trial (IC,
rank IC, macro-F1 and per-class F1 beside the baselines); trading per trial (net Sharpe,
drawdown, turnover, cost share beside buy-and-hold); the cost-aware layer against the
plain 0.45 threshold on the same probabilities; per-fold net returns of the champion;
equity curves of the champion beside buy-and-hold; deflated Sharpe and PBO; pooled
(seen / never seen symbols); RL agents (collapse); the lockbox.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from perptrader.ml.base import CLASSES
from perptrader.ml.report import REPORT_CSS, Section, fmt_num, html_table, write_page

_PCT = {"total_return", "max_drawdown", "cost_share", "bh_return", "time_in_market",
        "net_return", "fee_share"}


def _cell(key: str, value: Any) -> str:
    if key in _PCT and isinstance(value, int | float) and np.isfinite(value):
        return f"{100 * value:.1f}%"
    return fmt_num(value, 2 if key in ("sharpe", "bh_sharpe", "turnover") else 3)


def _verdict(summary: dict[str, Any]) -> str:
    v = summary.get("verdict") or {}
    lock = summary.get("lockbox") or {}
    looks = int(lock.get("looks") or 0)
    cls = "ok" if v.get("edge") else "warn"
    champ = summary.get("champion") or {}
    return (f"<h1>Study {html.escape(str(summary.get('study')))}</h1>"
            f"<p class='{cls}' id='verdict'>{html.escape(str(v.get('line', '')))}</p>"
            f"<p>Trials compared: <b id='n-trials'>{summary.get('n_trials')}</b> (planned "
            f"{summary.get('planned_trials')}); decision settings searched on validation "
            f"slices only: {summary.get('decision_settings_searched')}. Champion: "
            f"<b>{html.escape(str(champ.get('recipe')))}</b>. Lockbox "
            f"({html.escape(str(lock.get('held_out')))} per symbol): "
            f"<b id='lockbox-looks'>{looks}</b> look(s)"
            f"{'' if looks else ' (not evaluated yet: perptrader research lockbox)'}. "
            f"Backend {html.escape(str(summary.get('backend')))}, "
            f"{summary.get('units')} units, {summary.get('seconds')} s.</p>")


def recipes_html(summary: dict[str, Any]) -> str:
    keys = ["cells", "sharpe", "bh_sharpe", "total_return", "bh_return", "turnover",
            "cost_share", "beats_bh", "macro_f1", "ic"]
    rows = [[html.escape(str(r["recipe"]))] + [_cell(k, r.get(k)) for k in keys]
            for r in summary.get("recipes", [])]
    champ = (summary.get("champion") or {}).get("recipe")
    classes = ["model" if r["recipe"] == champ else "" for r in summary.get("recipes", [])]
    return ("<p class='note'>Means over each recipe's cells (symbol × timeframe); "
            "beats_bh = share of cells whose net Sharpe is above buy-and-hold's.</p>"
            + html_table(["recipe", *keys], rows, classes))


def signal_html(trials: list[dict[str, Any]]) -> str:
    seen: set[str] = set()
    rows = []
    for t in trials:
        s = t.get("signal") or {}
        key = f"{t.get('unit')}/{t.get('symbol')}"
        if t["kind"] == "agent" or key in seen or not s:
            continue
        seen.add(key)
        base = s.get("baselines") or {}
        rows.append([html.escape(str(t["unit"] if t["kind"] == "symbol" else
                                     f"{t['unit']} → {t['symbol']}")),
                     fmt_num(s.get("ic")), fmt_num(s.get("rank_ic")), fmt_num(s.get("macro_f1")),
                     *[fmt_num((s.get("f1") or {}).get(c)) for c in CLASSES],
                     fmt_num(base.get("majority")), fmt_num(base.get("persistence")),
                     fmt_num(base.get("logistic"))])
    return ("<p class='note'>IC / rank IC: correlation of P(BUY) − P(SELL) with the forward "
            "return over the label's horizon, test rows only. Baselines: macro-F1 of the "
            "majority class, persistence and logistic regression on the same rows.</p>"
            + html_table(["unit", "IC", "rank IC", "macro-F1", *[f"F1 {c}" for c in CLASSES],
                          "majority", "persistence", "logistic"], rows))


def trading_html(trials: list[dict[str, Any]]) -> str:
    keys = ["sharpe", "total_return", "max_drawdown", "turnover", "cost_share", "trades"]
    rows = []
    for t in trials:
        tr, bh = t.get("trading") or {}, t.get("buy_and_hold") or {}
        rows.append([html.escape(str(t["id"])), *[_cell(k, tr.get(k)) for k in keys],
                     _cell("sharpe", bh.get("sharpe")), _cell("total_return",
                                                               bh.get("total_return"))])
    return ("<p class='note'>cost share = fees + funding paid as a share of the starting "
            "capital; turnover = traded notional / mean equity.</p>"
            + html_table(["trial", "net Sharpe", "net return", "max DD", "turnover",
                          "cost share", "trades", "B&H Sharpe", "B&H return"], rows))


def decision_html(summary: dict[str, Any]) -> tuple[str, go.Figure | None]:
    comp = summary.get("decision_comparison") or {}
    s, rows = comp.get("summary") or {}, comp.get("rows") or []
    if not rows:
        return "<p class='note'>the study has no plain / cost-aware pair</p>", None
    head = (f"<p>Same probabilities, two decision layers, over {s.get('pairs')} trials "
            f"(medians): turnover {fmt_num(s.get('median_turnover_plain'), 1)} → "
            f"<b>{fmt_num(s.get('median_turnover_cost_aware'), 1)}</b>, cost share "
            f"{_cell('cost_share', s.get('median_cost_share_plain'))} → "
            f"<b>{_cell('cost_share', s.get('median_cost_share_cost_aware'))}</b>, net "
            f"return {_cell('total_return', s.get('median_total_return_plain'))} → "
            f"<b>{_cell('total_return', s.get('median_total_return_cost_aware'))}</b> "
            f"({html.escape(str(s.get('plain')))} → {html.escape(str(s.get('cost_aware')))})."
            "</p>")
    table = html_table(
        ["unit / symbol", "turnover 0.45", "turnover cost-aware", "cost share 0.45",
         "cost share cost-aware", "net return 0.45", "net return cost-aware"],
        [[html.escape(f"{r['unit']} {r['symbol']}"),
          _cell("turnover", r.get("turnover_plain")),
          _cell("turnover", r.get("turnover_cost_aware")),
          _cell("cost_share", r.get("cost_share_plain")),
          _cell("cost_share", r.get("cost_share_cost_aware")),
          _cell("total_return", r.get("total_return_plain")),
          _cell("total_return", r.get("total_return_cost_aware"))] for r in rows])
    names = [f"{r['unit'].split('/')[0]} {r['unit'].split('/')[1]} {r['symbol']}"
             if r['unit'].startswith("pooled") else r['unit'] for r in rows]
    fig = go.Figure([go.Bar(name="threshold 0.45", x=names,
                            y=[r.get("turnover_plain") for r in rows]),
                     go.Bar(name="cost-aware", x=names,
                            y=[r.get("turnover_cost_aware") for r in rows])])
    fig.update_layout(barmode="group", yaxis_title="turnover (× mean equity)", height=380)
    return head + table, fig


def folds_figure(trials: list[dict[str, Any]], recipe: str) -> go.Figure | None:
    rows = [t for t in trials if t.get("recipe") == recipe and t.get("folds")]
    if not rows:
        return None
    z, names, xs = [], [], []
    width = max(len(t["folds"]) for t in rows)
    for t in rows:
        values = [f.get("net_return") for f in t["folds"]]
        z.append([100 * v if v is not None else None for v in values]
                 + [None] * (width - len(values)))
        names.append(f"{t['symbol']} {t['timeframe']}")
    xs = [f"fold {i}" for i in range(width)]
    fig = go.Figure(go.Heatmap(z=z, x=xs, y=names, colorscale="RdYlGn", zmid=0,
                               colorbar={"title": "net %"}))
    fig.update_layout(height=120 + 28 * len(rows))
    return fig


def equity_figure(trials: list[dict[str, Any]], returns: dict[str, pd.Series],
                  recipe: str) -> go.Figure | None:
    fig = go.Figure()
    for t in trials:
        if t.get("recipe") != recipe or t["id"] not in returns:
            continue
        r = returns[t["id"]]
        name = f"{t['symbol']} {t['timeframe']}"
        fig.add_scatter(x=r.index.tz_localize(None) if r.index.tz else r.index,
                        y=np.cumprod(1 + r.to_numpy()), name=name, mode="lines")
        bh = returns.get(f"buy_and_hold/{t['timeframe']}/{t['symbol']}")
        if bh is not None:
            fig.add_scatter(x=bh.index.tz_localize(None) if bh.index.tz else bh.index,
                            y=np.cumprod(1 + bh.to_numpy()), name=f"{name} buy & hold",
                            mode="lines", line={"dash": "dot"})
    if not fig.data:
        return None
    fig.update_layout(yaxis_title="equity (× start)", height=460)
    return fig


def overfitting_html(summary: dict[str, Any]) -> str:
    dsr = html_table(["cell", "DSR", "Sharpe/bar", "SR0/bar", "bars"],
                     [[html.escape(f"{d['symbol']} {d['timeframe']}"), fmt_num(d.get("dsr")),
                       fmt_num(d.get("sharpe_per_bar"), 4), fmt_num(d.get("sr0_per_bar"), 4),
                       fmt_num(d.get("n_obs"))] for d in summary.get("deflated_sharpe", [])])
    pbo = html_table(["cell", "PBO", "recipes", "splits"],
                     [[html.escape(f"{p['symbol']} {p['timeframe']}"), fmt_num(p.get("pbo")),
                       fmt_num(p.get("n_strategies")), fmt_num(p.get("n_splits"))]
                      for p in summary.get("pbo", [])])
    return (f"<p>Deflated Sharpe of the champion per cell, against "
            f"{summary.get('n_trials')} trials (>= 0.95 passes):</p>{dsr}"
            f"<p>Probability of backtest overfitting (CSCV) per cell over its recipes:</p>{pbo}")


def pooled_html(trials: list[dict[str, Any]]) -> str | None:
    rows = [t for t in trials if t["kind"] == "pooled"]
    if not rows:
        return None
    return html_table(
        ["trial", "seen in training", "macro-F1", "IC", "net Sharpe", "net return",
         "B&H return"],
        [[html.escape(t["id"]), "yes" if t.get("seen") else "<b>never</b>",
          fmt_num((t.get("signal") or {}).get("macro_f1")),
          fmt_num((t.get("signal") or {}).get("ic")),
          _cell("sharpe", (t.get("trading") or {}).get("sharpe")),
          _cell("total_return", (t.get("trading") or {}).get("total_return")),
          _cell("total_return", (t.get("buy_and_hold") or {}).get("total_return"))]
         for t in rows])


def agents_html(trials: list[dict[str, Any]]) -> str | None:
    rows = [t for t in trials if t["kind"] == "agent"]
    if not rows:
        return None
    body = []
    for t in rows:
        a = t.get("agent") or {}
        verdict = str(t.get("verdict"))
        cls = "warn" if verdict.startswith("fail") else ""
        body.append([html.escape(t["id"]), fmt_num(len(a.get("seeds", []))),
                     _cell("total_return", a.get("mean_net_return")),
                     fmt_num(a.get("collapsed_seeds")),
                     f"<span class='{cls}'>{html.escape(verdict)}</span>"])
    return html_table(["agent trial", "seeds", "mean net return", "collapsed seeds",
                       "verdict"], body)


def lockbox_html(summary: dict[str, Any]) -> str:
    lock = summary.get("lockbox") or {}
    looks = int(lock.get("looks") or 0)
    if not looks:
        return ("<p class='note'>Not looked at. <code>perptrader research lockbox "
                "&lt;run folder&gt;</code> evaluates the champion once on the held-out "
                "months; every look is counted here.</p>")
    first = lock.get("first_look") or {}
    rows = [[html.escape(f"{c['symbol']} {c['timeframe']}"), html.escape(c["first_bar"][:10]),
             html.escape(c["last_bar"][:10]),
             _cell("total_return", c["trading"].get("total_return")),
             _cell("total_return", c["buy_and_hold"].get("total_return")),
             _cell("sharpe", c["trading"].get("sharpe")),
             _cell("sharpe", c["buy_and_hold"].get("sharpe")),
             _cell("max_drawdown", c["trading"].get("max_drawdown")),
             fmt_num((c.get("deflated_sharpe") or {}).get("dsr"))]
            for c in first.get("cells", [])]
    warn = ("" if looks == 1 else f"<p class='warn'>The lockbox was looked at {looks} times; "
            "only the first look (shown) is an honest out-of-sample figure.</p>")
    return (f"<p>Looks: <b>{looks}</b>. First look {html.escape(str(first.get('time')))} "
            f"of {html.escape(str(first.get('recipe')))}: mean net return "
            f"{_cell('total_return', first.get('mean_net_return'))} vs buy-and-hold "
            f"{_cell('total_return', first.get('mean_bh_return'))}.</p>{warn}"
            + html_table(["cell", "from", "to", "net return", "B&H return", "net Sharpe",
                          "B&H Sharpe", "max DD", "DSR"], rows))


def write_study_report(path: Path, summary: dict[str, Any], trials: list[dict[str, Any]],
                       returns: dict[str, pd.Series]) -> Path:
    """Write the self-contained study page (plotly.js inlined once)."""
    recipe = (summary.get("champion") or {}).get("recipe", "")
    decision_body, decision_fig = decision_html(summary)
    sections: list[Section] = [
        ("Recipes (mean over cells, out of sample, net of costs)", recipes_html(summary)),
        ("Signal quality (test rows)", signal_html(trials)),
        ("Trading (net of fees, slippage and funding)", trading_html(trials)),
        ("Cost-aware decisions vs the plain 0.45 threshold", decision_body),
        ("Turnover: plain vs cost-aware", decision_fig),
        (f"Net return per fold: {recipe}", folds_figure(trials, recipe)),
        (f"Equity: {recipe} vs buy-and-hold", equity_figure(trials, returns, recipe)),
        ("Deflated Sharpe and PBO", overfitting_html(summary)),
        ("Pooled model: seen and never-seen symbols", pooled_html(trials)),
        ("RL agents", agents_html(trials)),
        ("Lockbox", lockbox_html(summary)),
    ]
    title = f"Study {summary.get('study')}"
    return write_page(path, title, _verdict(summary), sections,
                      css=REPORT_CSS + ".ok{color:#070;font-weight:700}")


__all__ = ["write_study_report"]
