"""One self-contained HTML report per run (Plotly, offline: plotly.js is inlined, so
the file opens without a network and never changes under the reader).

Sections: price with entries/exits, equity vs buy-and-hold, drawdown, monthly returns,
trade PnL distribution, cumulative fees and funding, metrics table. Lines longer than
``MAX_LINE_POINTS`` are thinned by keeping each bucket's min and max (the shape and
the extremes survive); trade markers are never thinned.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from perptrader.backtest.metrics import drawdown

if TYPE_CHECKING:
    from perptrader.backtest.engine import BacktestResult

MAX_LINE_POINTS = 20_000

SECTIONS = ("Price and trades", "Equity", "Drawdown", "Monthly returns",
            "Trade PnL distribution", "Fees and funding", "Metrics")

#: metrics shown in the table, with their format
TABLE_METRICS: tuple[tuple[str, str], ...] = (
    ("total_return", "pct"), ("annual_return", "pct"), ("volatility", "pct"),
    ("sharpe", "num"), ("sortino", "num"), ("calmar", "num"), ("max_drawdown", "pct"),
    ("max_drawdown_duration_bars", "int"), ("trades", "int"), ("win_rate", "pct"),
    ("profit_factor", "num"), ("expectancy", "num"), ("avg_trade_return", "pct"),
    ("time_in_market", "pct"), ("avg_abs_exposure", "num"), ("annual_turnover", "num"),
    ("fees_paid", "num"), ("funding_paid", "num"), ("fee_share", "pct"),
    ("funding_share", "pct"), ("liquidations", "int"), ("final_equity", "num"),
)


def thin_indices(values: np.ndarray, max_points: int = MAX_LINE_POINTS) -> np.ndarray:
    """Indices of a min/max thinning of ``values`` to about ``max_points`` points (all
    indices when short enough). Vectorised: buckets are rows of a padded matrix."""
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    size = int(np.ceil(n / (max_points // 2)))
    rows = int(np.ceil(n / size))
    pad = rows * size - n
    v = np.concatenate([np.asarray(values, dtype=np.float64), np.full(pad, np.nan)])
    v = v.reshape(rows, size)
    base = np.arange(rows) * size
    lo = base + np.nanargmin(v, axis=1)
    hi = base + np.nanargmax(v, axis=1)
    return np.unique(np.concatenate([lo, hi, [0, n - 1]]))


def fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if kind == "pct":
        return f"{value:.2%}"
    if kind == "int":
        return f"{int(value):,}"
    return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"


def utc_naive(times: Any) -> np.ndarray:
    """UTC times as naive datetime64 (axes say UTC). Plotly serialises tz-aware pandas
    timestamps one by one (~0.5 s per 20k points); naive numpy arrays in milliseconds."""
    idx = pd.DatetimeIndex(times)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.to_numpy()


def _line(x: np.ndarray, y: np.ndarray, name: str, **kw: Any) -> go.Scattergl:
    keep = thin_indices(y)
    return go.Scattergl(x=x[keep], y=y[keep], name=name, mode="lines", **kw)


def price_figure(res: BacktestResult) -> go.Figure:
    close = res.frame["close"].to_numpy(dtype=np.float64)
    fig = go.Figure(_line(utc_naive(res.frame.index), close, "close", line={"width": 1}))
    tr = res.sim.trades
    if len(tr):
        long_ = tr["side"].astype(str).str.lower().isin(("long", "buy"))
        for mask, label, symbol, color in ((long_, "long entry", "triangle-up", "green"),
                                           (~long_, "short entry", "triangle-down", "red")):
            sel = tr[mask]
            fig.add_trace(go.Scattergl(x=utc_naive(sel["entry_ts"]), y=sel["entry_price"],
                                       mode="markers",
                                       name=label, marker={"symbol": symbol, "color": color,
                                                           "size": 8}))
        fig.add_trace(go.Scattergl(x=utc_naive(tr["exit_ts"]), y=tr["exit_price"],
                                   mode="markers",
                                   name="exit", marker={"symbol": "x", "color": "black",
                                                        "size": 6}))
    fig.update_layout(yaxis_title="price", xaxis_title="UTC", height=450)
    return fig


def equity_figure(res: BacktestResult) -> go.Figure:
    idx = utc_naive(res.frame.index)
    fig = go.Figure()
    fig.add_trace(_line(idx, res.sim.bars["equity"].to_numpy(float), res.strategy.name))
    fig.add_trace(_line(idx, res.benchmark.bars["equity"].to_numpy(float), "buy_and_hold",
                        line={"dash": "dot"}))
    fig.update_layout(yaxis_title="equity", height=400)
    return fig


def drawdown_figure(res: BacktestResult) -> go.Figure:
    idx = utc_naive(res.frame.index)
    cash = res.config.initial_cash
    fig = go.Figure()
    for sim, name in ((res.sim, res.strategy.name), (res.benchmark, "buy_and_hold")):
        dd = drawdown(sim.bars["equity"].to_numpy(float), cash).series
        fig.add_trace(_line(idx, dd, name, fill="tozeroy" if sim is res.sim else None))
    fig.update_layout(yaxis_title="drawdown", yaxis_tickformat=".0%", height=300)
    return fig


def monthly_returns(equity: pd.Series, initial_cash: float) -> pd.DataFrame:
    """Year × month table of returns: last equity of a month over the last of the
    previous one (the first month over the initial cash)."""
    last = equity.groupby([equity.index.year, equity.index.month]).last()
    prev = last.shift(1).fillna(initial_cash)
    ret = (last / prev - 1.0).rename("ret")
    table = ret.unstack(level=1)
    table.index.name, table.columns.name = "year", "month"
    return table.reindex(columns=range(1, 13))


def monthly_figure(res: BacktestResult) -> go.Figure:
    eq = pd.Series(res.sim.bars["equity"].to_numpy(float), index=res.frame.index)
    table = monthly_returns(eq, res.config.initial_cash)
    z = table.to_numpy()
    text = [[fmt(v, "pct") if np.isfinite(v) else "" for v in row] for row in z]
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
              "Dec"]
    lim = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    fig = go.Figure(go.Heatmap(z=z, x=months, y=[str(y) for y in table.index], text=text,
                               texttemplate="%{text}", colorscale="RdYlGn", zmid=0,
                               zmin=-lim, zmax=lim, colorbar={"tickformat": ".0%"}))
    fig.update_layout(height=120 + 40 * len(table), yaxis={"autorange": "reversed"})
    return fig


def trade_pnl_figure(res: BacktestResult) -> go.Figure:
    pnl = res.sim.trades["net_pnl"].to_numpy(float)
    fig = go.Figure(go.Histogram(x=pnl, nbinsx=60, name="net PnL per trade"))
    fig.update_layout(xaxis_title="net PnL per trade", yaxis_title="trades", height=300,
                      annotations=[] if len(pnl) else [{"text": "no closed trades",
                                                        "showarrow": False}])
    return fig


def costs_figure(res: BacktestResult) -> go.Figure:
    idx = utc_naive(res.frame.index)
    bars = res.sim.bars
    fees = np.cumsum(bars["fees"].to_numpy(float))
    funding_paid = -np.cumsum(bars["funding"].to_numpy(float))  # bars: + = received
    fig = go.Figure()
    fig.add_trace(_line(idx, fees, "fees paid (cumulative)"))
    fig.add_trace(_line(idx, funding_paid, "funding paid (cumulative; < 0 = received)"))
    fig.update_layout(yaxis_title="account currency", height=300)
    return fig


def metrics_table(res: BacktestResult) -> str:
    rows = []
    for key, kind in TABLE_METRICS:
        a, b = res.metrics.get(key), res.benchmark_metrics.get(key)
        rows.append(f"<tr><td>{html.escape(key)}</td><td>{fmt(a, kind)}</td>"
                    f"<td>{fmt(b, kind)}</td></tr>")
    d = res.dsr
    rows.append(f"<tr><td>deflated Sharpe (n_trials={d.n_trials})</td><td>"
                f"{fmt(d.dsr, 'num')}</td><td></td></tr>")
    return ("<table class='metrics'><thead><tr><th>metric</th>"
            f"<th>{html.escape(res.strategy.name)}</th><th>buy_and_hold</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


_CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:28px;border-bottom:1px solid #ddd}
table.metrics{border-collapse:collapse}table.metrics td,table.metrics th{padding:3px 12px;
border-bottom:1px solid #eee;text-align:right}table.metrics td:first-child{text-align:left}
.warn{color:#a60}"""


def write_report(res: BacktestResult, path: Path) -> Path:
    """Write the HTML report of ``res`` to ``path`` and return it."""
    figures = (price_figure(res), equity_figure(res), drawdown_figure(res),
               monthly_figure(res), trade_pnl_figure(res), costs_figure(res))
    parts = []
    for i, (title, fig) in enumerate(zip(SECTIONS, figures, strict=False)):
        fig.update_layout(margin={"l": 60, "r": 20, "t": 20, "b": 40}, template="plotly_white")
        body = fig.to_html(full_html=False, include_plotlyjs=(i == 0))
        parts.append(f"<h2>{title}</h2>\n{body}")
    parts.append(f"<h2>{SECTIONS[-1]}</h2>\n{metrics_table(res)}")
    rng = res.data_range
    params = ", ".join(f"{k}={v}" for k, v in res.strategy.params.items()) or "no parameters"
    costs = res.config.costs
    warn = "".join(f"<p class='warn'>⚠ {html.escape(w)}</p>" for w in res.warnings)
    head = (f"<h1>{html.escape(res.symbol)} {res.timeframe} · {html.escape(res.strategy.name)}"
            f" ({html.escape(params)})</h1><p>{rng['first_bar']} → {rng['end']} · "
            f"{rng['bars']:,} bars · leverage {res.leverage:g} · maker {costs.maker_fee:.4%} "
            f"· taker {costs.taker_fee:.4%} · slippage {costs.slippage_bps:g} bps · "
            f"funding: {html.escape(rng['funding'])}</p>{warn}")
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>backtest "
           f"{html.escape(res.symbol)} {html.escape(res.strategy.name)}</title>"
           f"<style>{_CSS}</style></head><body>{head}\n" + "\n".join(parts)
           + "</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    return path


__all__ = ["MAX_LINE_POINTS", "SECTIONS", "monthly_returns", "thin_indices", "write_report"]
