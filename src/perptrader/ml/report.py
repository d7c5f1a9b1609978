"""One offline HTML page per walk-forward run: does the model beat its baselines OOS?

The page puts the model beside the majority / persistence / logistic baselines on the
same test rows (a model that does not beat them has learned nothing usable), shows the
confusion matrices and prediction distributions (a collapsed model is visible at once,
and its dominant-class warning is printed in red), the per-fold scores (is the edge
stable or one lucky fold?) and the learning curves (over-fitting, early stopping).

Input: ``WalkForwardResult.summary`` of ``ml/walkforward.py`` and optionally its
histories. The page tolerates missing keys (older summaries, models without a history):
an absent value is shown as "–", an absent section says so.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from perptrader.ml.base import CLASSES

#: x-axis candidates of a history, in order of preference
_X_KEYS = ("epoch", "iteration", "iter", "step", "round")
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")

_CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:28px;border-bottom:1px solid #ddd}
table.metrics{border-collapse:collapse;margin:8px 0}table.metrics td,table.metrics th{
padding:3px 12px;border-bottom:1px solid #eee;text-align:right}
table.metrics td:first-child,table.metrics th:first-child{text-align:left}
tr.model td{font-weight:600;background:#f4f8ff}.warn{color:#c00;font-weight:700}
.note{color:#666}"""


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return html.escape(str(value))


def _distribution(metrics: dict) -> str:
    dist = metrics.get("prediction_distribution") or {}
    if not dist:
        return "–"
    return " / ".join(f"{c} {dist[c]:.0%}" if isinstance(dist.get(c), (int, float))
                      else f"{c} –" for c in CLASSES)


def _table(header: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f" class='{classes[i]}'" if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return (f"<table class='metrics'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _scored(summary: dict) -> dict[str, dict]:
    """name -> OOS metrics: the model first, then each baseline."""
    out: dict[str, dict] = {}
    if summary.get("oos"):
        out[str(summary.get("model", "model"))] = summary["oos"]
    for name, metrics in (summary.get("baselines") or {}).items():
        out[f"baseline: {name}"] = metrics or {}
    return out


def oos_table(summary: dict) -> str:
    """Model and baselines on the same OOS rows."""
    scored = _scored(summary)
    if not scored:
        return "<p class='note'>no out-of-sample metrics in this summary</p>"
    model_f1 = (summary.get("oos") or {}).get("macro_f1")
    rows, classes = [], []
    for i, (name, m) in enumerate(scored.items()):
        is_model = i == 0 and bool(summary.get("oos"))
        beaten = ""
        if not is_model and model_f1 is not None and m.get("macro_f1") is not None:
            beaten = "yes" if model_f1 > m["macro_f1"] else "<b>no</b>"
        rows.append([html.escape(name), _num(m.get("n")), _num(m.get("accuracy")),
                     _num(m.get("macro_f1")), _num(m.get("log_loss")), _num(m.get("ece")),
                     _distribution(m), beaten])
        classes.append("model" if is_model else "")
    return _table(["", "rows", "accuracy", "macro-F1", "log-loss", "ECE",
                   "predicted SELL / HOLD / BUY", "model beats it (macro-F1)"], rows, classes)


def per_class_table(metrics: dict) -> str:
    per = metrics.get("per_class") or {}
    if not per:
        return ""
    rows = [[c, _num(per.get(c, {}).get("precision")), _num(per.get(c, {}).get("recall")),
             _num(per.get(c, {}).get("f1")), _num(per.get(c, {}).get("support"))]
            for c in CLASSES]
    return _table(["class", "precision", "recall", "F1", "support"], rows)


def confusion_figure(summary: dict) -> go.Figure | None:
    """Row-normalised confusion heatmaps (colour = share of the true class, text = count)."""
    mats = {name: np.asarray(m["confusion"], dtype=float)
            for name, m in _scored(summary).items() if m.get("confusion") is not None}
    if not mats:
        return None
    fig = make_subplots(rows=1, cols=len(mats), subplot_titles=list(mats),
                        horizontal_spacing=0.06)
    for i, (_name, mat) in enumerate(mats.items(), start=1):
        totals = mat.sum(axis=1, keepdims=True)
        share = np.divide(mat, totals, out=np.zeros_like(mat), where=totals > 0)
        fig.add_trace(go.Heatmap(
            z=share, x=[f"pred {c}" for c in CLASSES], y=[f"true {c}" for c in CLASSES],
            text=mat.astype(int).astype(str), texttemplate="%{text}", zmin=0, zmax=1,
            colorscale="Blues", showscale=i == len(mats),
            hovertemplate="%{y} / %{x}: %{text} rows (%{z:.1%} of the true class)"
                          "<extra></extra>"), row=1, col=i)
        fig.update_yaxes(autorange="reversed", row=1, col=i, showticklabels=i == 1)
    fig.update_layout(height=340, width=max(420, 330 * len(mats)))
    return fig


def distribution_figure(summary: dict) -> go.Figure | None:
    """Share of predictions per class, beside the true class shares of the OOS rows."""
    scored = {n: m for n, m in _scored(summary).items() if m.get("prediction_distribution")}
    if not scored:
        return None
    fig = go.Figure()
    oos = summary.get("oos") or {}
    if oos.get("confusion") is not None:
        counts = np.asarray(oos["confusion"], dtype=float).sum(axis=1)
        if counts.sum() > 0:
            fig.add_trace(go.Bar(x=list(CLASSES), y=counts / counts.sum(), name="true labels",
                                 marker_color="#444"))
    for name, m in scored.items():
        d = m["prediction_distribution"]
        fig.add_trace(go.Bar(x=list(CLASSES), y=[d.get(c) for c in CLASSES], name=name))
    fig.add_hline(y=0.7, line_dash="dot", line_color="#c00",
                  annotation_text="70%: dominant class", annotation_position="top left")
    fig.update_layout(barmode="group", yaxis_title="share of rows", yaxis_tickformat=".0%",
                      height=320)
    return fig


def _fold_name(fold: dict, i: int) -> str:
    return f"fold {fold.get('index', i)}"


def _span(value: Any) -> str:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"{str(value[0])[:10]} → {str(value[1])[:10]}"
    return "–"


def fold_table(summary: dict) -> str:
    folds = summary.get("folds") or []
    if not folds:
        return "<p class='note'>no per-fold results in this summary</p>"
    names = sorted({b for f in folds for b in (f.get("baselines") or {})})
    rows = []
    for i, f in enumerate(folds):
        m = f.get("metrics") or {}
        base = f.get("baselines") or {}
        warn = m.get("dominant_class_warning")
        rows.append([_fold_name(f, i), _span(f.get("train")), _span(f.get("test")),
                     _num(m.get("n")), _num(m.get("accuracy")), _num(m.get("macro_f1")),
                     _num(m.get("log_loss")), _num(m.get("ece")), _distribution(m),
                     *[_num((base.get(b) or {}).get("macro_f1")) for b in names],
                     f"<span class='warn'>{html.escape(warn)}</span>" if warn else ""])
    return _table(["fold", "train", "test", "rows", "accuracy", "macro-F1", "log-loss", "ECE",
                   "predicted SELL / HOLD / BUY", *[f"{b} macro-F1" for b in names],
                   "warning"], rows)


def fold_f1_figure(summary: dict) -> go.Figure | None:
    folds = summary.get("folds") or []
    if not folds:
        return None
    labels = [_fold_name(f, i) for i, f in enumerate(folds)]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=labels, y=[(f.get("metrics") or {}).get("macro_f1")
                                      for f in folds],
                         name=str(summary.get("model", "model"))))
    for b in sorted({b for f in folds for b in (f.get("baselines") or {})}):
        fig.add_trace(go.Bar(x=labels, y=[((f.get("baselines") or {}).get(b) or {})
                                          .get("macro_f1") for f in folds],
                             name=f"baseline: {b}"))
    fig.update_layout(barmode="group", yaxis_title="macro-F1 (test window)", height=320)
    return fig


def history_frame(history: Any, prefix: str = "") -> pd.DataFrame:
    """A history as a table (rows = epochs/iterations, columns = numeric series).

    Accepts a list of per-epoch dicts (neural experts), a dict of equal-length lists
    (GBDT ``{"valid_logloss": [...]}``) or a dict nesting either (an ensemble's members,
    flattened as ``member/key``). Non-numeric entries are ignored.
    """
    if isinstance(history, list):
        if not history or not all(isinstance(r, dict) for r in history):
            return pd.DataFrame()
        frame = pd.DataFrame(history)
        frame.columns = [f"{prefix}{c}" for c in frame.columns]
        return frame.apply(pd.to_numeric, errors="coerce").dropna(axis=1, how="all")
    if isinstance(history, dict):
        series: dict[str, list] = {}
        nested: list[pd.DataFrame] = []
        for key, value in history.items():
            if isinstance(value, (list, tuple, np.ndarray)) and len(value) and all(
                    isinstance(v, (int, float, np.integer, np.floating)) for v in value):
                series[f"{prefix}{key}"] = list(value)
            elif isinstance(value, (dict, list)):
                sub = history_frame(value, f"{prefix}{key}/")
                if not sub.empty:
                    nested.append(sub)
        parts = ([pd.DataFrame({k: pd.Series(v, dtype=float) for k, v in series.items()})]
                 if series else [])
        parts += nested
        return pd.concat(parts, axis=1) if parts else pd.DataFrame()
    return pd.DataFrame()


def _x_axis(frame: pd.DataFrame) -> tuple[str, np.ndarray]:
    for key in _X_KEYS:
        match = [c for c in frame.columns if c.rsplit("/", 1)[-1] == key]
        if match:
            return match[0].rsplit("/", 1)[-1], frame[match[0]].to_numpy(float)
    first = frame.columns[0]
    if frame[first].is_monotonic_increasing and frame[first].notna().all():
        return str(first), frame[first].to_numpy(float)
    return "step", np.arange(1, len(frame) + 1, dtype=float)


def learning_figure(histories: dict[str, Any]) -> go.Figure | None:
    """One panel per metric (train/val loss, val macro-F1, …), one trace per fold/model."""
    frames = {name: history_frame(h) for name, h in histories.items()}
    frames = {n: f for n, f in frames.items() if not f.empty}
    if not frames:
        return None
    curves: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    x_title = "epoch"
    for name, frame in frames.items():
        x_title, x = _x_axis(frame)
        for col in frame.columns:
            if col.rsplit("/", 1)[-1] in (*_X_KEYS, x_title):
                continue
            y = frame[col].to_numpy(float)
            if np.isfinite(y).sum() >= 2:            # a curve, not a final scalar
                curves.setdefault(str(col), []).append((name, x, y))
    if not curves:
        return None
    metrics = sorted(curves, key=lambda c: (("loss" not in c), ("f1" not in c), c))
    cols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / cols)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=metrics,
                        vertical_spacing=0.12 if nrows > 1 else 0.1)
    colour = {n: _COLOURS[i % len(_COLOURS)] for i, n in enumerate(frames)}
    shown: set[str] = set()
    for i, metric in enumerate(metrics):
        r, c = divmod(i, cols)
        for name, x, y in curves[metric]:
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name, legendgroup=name,
                                     showlegend=name not in shown,
                                     line={"color": colour[name], "width": 1.5}),
                          row=r + 1, col=c + 1)
            shown.add(name)
        fig.update_xaxes(title_text=x_title, row=r + 1, col=c + 1)
    fig.update_layout(height=300 * nrows)
    return fig


def decision_table(summary: dict) -> str | None:
    """Both decision layers on the same out-of-sample probabilities, beside buy-and-hold,
    and the layer stored with the model (``summary["decision"]``; None: no section)."""
    dec = summary.get("decision") or {}
    cmp_ = dec.get("comparison")
    if not cmp_:
        return None
    rows = []
    for label, key in (("threshold 0.45", "threshold"), ("cost-aware", "cost_aware"),
                       ("buy-and-hold", "buy_and_hold")):
        m = cmp_.get(key) or {}
        rows.append([label, _pct(m.get("total_return")), _num(m.get("sharpe"), 2),
                     _pct(m.get("max_drawdown")), _num(m.get("trades")),
                     _num(m.get("turnover"), 1), _num(m.get("fees_paid"), 2),
                     _pct(m.get("cost_share"))])
    chosen = dec.get("chosen_on") or {}
    rule = dec.get("cost_aware") or {}
    if chosen.get("params") is None:
        stored = ("the stored cost-aware layer never trades: no edge after costs was "
                  f"measured on {chosen.get('tuning_rows', 0):,} out-of-sample rows")
    else:
        stored = (f"the stored cost-aware layer: k = {_num(rule.get('k'))}, settings "
                  f"{html.escape(str(chosen['params']))}")
    note = (f"<p class='note'>Same probabilities, bars, costs and funding; the cost-aware "
            f"layer is chosen fold by fold on earlier rows only. model:NAME trades with "
            f"<b>{html.escape(str(dec.get('use')))}</b>; {stored}.</p>")
    return _table(["decision", "return", "Sharpe", "max DD", "trades", "turnover", "fees",
                   "cost share"], rows, [None, "model", None]) + note


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{float(value):.1%}"


def _header(summary: dict) -> str:
    model = html.escape(str(summary.get("model", "model")))
    bits = [html.escape(str(summary[k])) for k in ("symbol", "timeframe") if summary.get(k)]
    folds = summary.get("folds") or []
    meta = []
    if summary.get("feature_hash"):
        meta.append(f"features {html.escape(str(summary['feature_hash'])[:12])}")
    if folds:
        first, last = folds[0].get("test") or ["–"], folds[-1].get("test") or ["–"]
        meta.append(f"{len(folds)} folds, test {_span([first[0], last[-1]])}")
    if (summary.get("oos") or {}).get("n") is not None:
        meta.append(f"{summary['oos']['n']:,} labelled OOS rows")
    warn = (summary.get("oos") or {}).get("dominant_class_warning")
    warn_html = (f"<p class='warn'>⚠ OUT-OF-SAMPLE WARNING: {html.escape(warn)}</p>"
                 if warn else "")
    others = [w for w in summary.get("warnings") or [] if not (warn and warn in str(w))]
    warn_html += "".join(f"<p class='warn'>⚠ {html.escape(str(w))}</p>" for w in others)
    return (f"<h1>{model} · {' '.join(bits)} · walk-forward out-of-sample report</h1>"
            f"<p>{' · '.join(meta)}</p>{warn_html}")


def write_ml_report(path: Path, summary: dict,
                    histories: dict[str, Any] | None = None) -> Path:
    """Write the self-contained (offline) HTML report of a walk-forward run to ``path``.

    ``histories``: name (e.g. "fold 0") -> that fit's history, as per-epoch dicts or a
    dict of series; None or empty omits the learning curves (said on the page).
    """
    sections: list[tuple[str, str | go.Figure | None]] = [
        ("Out-of-sample: model vs baselines", oos_table(summary)),
        ("Model per class (OOS)", per_class_table(summary.get("oos") or {}) or None),
        ("Confusion matrices (OOS; colour = share of the true class)",
         confusion_figure(summary)),
        ("Prediction distributions (OOS)", distribution_figure(summary)),
        ("Per fold", fold_table(summary)),
        ("Macro-F1 per fold", fold_f1_figure(summary)),
        ("Trading the OOS probabilities: plain 0.45 rule vs the cost-aware layer",
         decision_table(summary)),
        ("Learning curves", learning_figure(histories) if histories else
         "<p class='note'>no training histories given</p>"),
    ]
    title = f"ML report {summary.get('model', '')} {summary.get('symbol', '')}"
    return write_page(path, title, _header(summary), sections,
                      empty="no figures: the summary holds no metrics")


#: (title, body): HTML, a Plotly figure, or None (the section is left out)
Section = tuple[str, str | go.Figure | None]


def write_page(path: Path, title: str, header: str, sections: list[Section], *,
               css: str = _CSS, empty: str = "no figures") -> Path:
    """One self-contained (offline) HTML page: ``header``, then each (title, body)
    section whose body is HTML or a Plotly figure (plotly.js inlined once; a None body
    is left out)."""
    parts, plotly_js = [], True
    for name, body in sections:
        if body is None:
            continue
        if isinstance(body, go.Figure):
            body.update_layout(margin={"l": 60, "r": 20, "t": 40, "b": 40},
                               template="plotly_white")
            body = body.to_html(full_html=False, include_plotlyjs=plotly_js)
            plotly_js = False
        parts.append(f"<h2>{html.escape(name)}</h2>\n{body}")
    if plotly_js:                    # no figure at all: still a valid offline page
        parts.append(f"<p class='note'>{html.escape(empty)}</p>")
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           f"</title><style>{css}</style></head><body>{header}\n" + "\n".join(parts)
           + "</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    return path


#: the page style, number format and table of these reports, shared with other reports
REPORT_CSS = _CSS
fmt_num = _num
html_table = _table

__all__ = ["REPORT_CSS", "confusion_figure", "fmt_num", "fold_table", "history_frame",
           "html_table", "learning_figure", "oos_table", "write_ml_report", "write_page"]
