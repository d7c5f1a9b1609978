"""The fused state: model outputs, VSA, market features; fitted on the training rows.

Parts (column groups; the dual agents each see some of them, ``GROUPS_OF_AGENT``):

* ``gbdt``: SELL/HOLD/BUY probabilities of the gradient-boosting ensemble;
* ``pattern`` / ``indicator``: each xLSTM expert's probabilities and its embedding,
  reduced by PCA (fitted on the training rows) to ``emb_components`` columns;
* ``vsa``: the VSA event flags and strengths and the continuous VSA measures;
* ``market``: funding, open-interest change, volatility, trend and the last returns
  (``MARKET_COLUMNS``; the ones the feature build could not compute, e.g. OI for a
  symbol without OI data, are left out and named in ``StateSpec.missing``).

Every value at row t is known at bar t's close: features are causal (the pipeline's
look-ahead check), the models predict row t from rows <= t, and the PCA and the z-score
statistics are fitted on the TRAINING rows only and then frozen in the ``StateSpec``
that travels with the agent. Continuous columns are z-scored and clipped to +-5;
probabilities, flags and strengths stay on their natural scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perptrader.ml.base import CLASSES, MLFrame

ROLES = ("gbdt", "pattern", "indicator")
#: registry model kinds that can fill each role
ROLE_KINDS = {"gbdt": ("gbdt", "lightgbm", "xgboost", "catboost"),
              "pattern": ("xlstm-pattern",), "indicator": ("xlstm-indicator",)}
VSA_EVENTS = ("upthrust", "buying_climax", "selling_climax", "stopping_volume", "no_demand",
              "no_supply", "test", "shakeout", "ns_high_volume", "wide_spread_up",
              "wide_spread_down", "effort_to_rise", "effort_to_fall", "absorption")
VSA_CONTINUOUS = ("vsa_trend", "vsa_effort_result", "vsa_volume_z", "vsa_spread_z",
                  "vsa_close_loc", "vsa_range_pos")
MARKET_COLUMNS = ("funding_rate_bps", "funding_z_30d", "funding_cum_24h_bps", "oi_chg_1",
                  "oi_chg_24", "oi_z_168", "volatility_natr14", "volatility_atr_ratio_14_50",
                  "volatility_bb_width", "trend_close_ema50_atr", "trend_ema50_ema200_atr",
                  "momentum_rsi14")
#: log returns over these bars, computed here from the closes (causal)
RETURN_BARS = (1, 4, 24)
GROUPS_OF_AGENT = {"ppo": ("gbdt", "pattern", "indicator", "vsa", "market"),
                   "pattern": ("pattern", "vsa"),
                   "indicator": ("indicator", "gbdt", "market")}
Z_CLIP = 5.0


@dataclass
class StateSpec:
    """What was fitted on the training rows (JSON in the agent's folder)."""

    roles: list[str]
    groups: dict[str, list[str]]
    #: role -> {"mean": [...], "components": [[...], ...]} (embedding PCA)
    pca: dict[str, dict[str, list]] = field(default_factory=dict)
    #: column -> [mean, std] of the z-scored columns
    zscore: dict[str, list[float]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return [c for g in self.groups.values() for c in g]

    def agent_columns(self, agent: str) -> np.ndarray:
        """Positions (in the full observation) of one agent's columns; the account
        features (after the state) belong to every agent."""
        wanted = GROUPS_OF_AGENT[agent]
        pos, j = [], 0
        for g, cols in self.groups.items():
            if g in wanted:
                pos.extend(range(j, j + len(cols)))
            j += len(cols)
        from perptrader.rl.core import N_ACCOUNT

        return np.array([*pos, *range(j, j + N_ACCOUNT)], dtype=np.int64)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StateSpec:
        return cls(**d)


def model_outputs(data: MLFrame, models: dict[str, Any], rows: np.ndarray) -> pd.DataFrame:
    """Probabilities (and expert embeddings) of every role's model at ``rows``; rows a
    model cannot predict (too little history) are NaN. ``models``: role -> (model,
    manifest) as ``ml.registry.load_registered`` returns them."""
    from perptrader.ml.registry import predict_registered, predictable_rows

    out = pd.DataFrame(index=data.index[rows])
    for role, (model, manifest) in models.items():
        ok = predictable_rows(model, data, rows)
        where = np.searchsorted(rows, ok)
        proba = np.full((len(rows), 3), np.nan)
        if len(ok):
            proba[where] = predict_registered(model, manifest, data, ok)
        for k, cls in enumerate(CLASSES):
            out[f"{role}_p_{cls.lower()}"] = proba[:, k]
        if hasattr(model, "embed"):
            emb_ok = model.embed(data, ok) if len(ok) else np.zeros((0, 1))
            emb = np.full((len(rows), emb_ok.shape[1]), np.nan)
            emb[where] = emb_ok
            for k in range(emb.shape[1]):
                out[f"{role}_emb_{k}"] = emb[:, k]
    return out


def raw_state(data: MLFrame, outputs: pd.DataFrame) -> pd.DataFrame:
    """Model outputs + VSA + market columns + returns on the rows of ``outputs``."""
    frame = data.frame.loc[outputs.index]
    cols: dict[str, Any] = dict(outputs.items())
    for name in VSA_EVENTS:
        for c in (f"vsa_{name}", f"vsa_{name}_strength"):
            if c in frame.columns:
                cols[c] = frame[c].to_numpy(np.float64, na_value=np.nan)
    for c in (*VSA_CONTINUOUS, *MARKET_COLUMNS):
        if c in frame.columns:
            cols[c] = frame[c].to_numpy(np.float64, na_value=np.nan)
    log_close = np.log(data.frame["close"].to_numpy(np.float64))
    pos = data.frame.index.get_indexer(outputs.index)
    for k in RETURN_BARS:
        prev = np.where(pos - k >= 0, log_close[np.maximum(pos - k, 0)], np.nan)
        cols[f"ret_{k}"] = log_close[pos] - prev
    return pd.DataFrame(cols, index=outputs.index)


def _group_of(column: str) -> str:
    for role in ROLES:
        if column.startswith(f"{role}_"):
            return role
    return "vsa" if column.startswith("vsa_") else "market"


def fit_state(raw: pd.DataFrame, train: np.ndarray, roles: list[str], *,
              emb_components: int = 4) -> StateSpec:
    """Fit the PCA of each expert embedding and the z-scores on rows ``train`` (positions
    in ``raw``); columns all-NaN on the training rows are dropped (``missing``)."""
    spec = StateSpec(roles=list(roles), groups={})
    part = raw.iloc[train]
    for role in roles:
        emb_cols = [c for c in raw.columns if c.startswith(f"{role}_emb_")]
        if not emb_cols or emb_components <= 0:
            continue
        x = part[emb_cols].dropna().to_numpy(np.float64)
        if len(x) < emb_components + 1:
            raise ValueError(f"{role}: {len(x)} training rows with embeddings; too few "
                             f"for a {emb_components}-component PCA")
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        spec.pca[role] = {"mean": mean.tolist(),
                          "components": vt[:emb_components].tolist()}
    reduced = _reduce(raw, spec)
    part = reduced.iloc[train]
    wanted = [c for c in (*MARKET_COLUMNS,) if c not in raw.columns]
    spec.missing = list(wanted)
    groups: dict[str, list[str]] = {g: [] for g in (*ROLES, "vsa", "market")}
    for c in reduced.columns:
        if part[c].isna().all():
            spec.missing.append(c)
            continue
        groups[_group_of(c)].append(c)
        if _continuous(c):
            v = part[c].to_numpy(np.float64)
            mu, sd = float(np.nanmean(v)), float(np.nanstd(v))
            spec.zscore[c] = [mu, sd if sd > 1e-12 else 1.0]
    spec.groups = {g: cols for g, cols in groups.items() if cols}
    return spec


def _continuous(column: str) -> bool:
    """Z-scored: everything but probabilities, VSA flags and VSA strengths."""
    if "_p_" in column:
        return False
    return not (column.startswith("vsa_") and column not in VSA_CONTINUOUS)


def _reduce(raw: pd.DataFrame, spec: StateSpec) -> pd.DataFrame:
    """Replace each role's embedding columns by their PCA projection."""
    out = raw.copy()
    for role, pca in spec.pca.items():
        emb_cols = [c for c in raw.columns if c.startswith(f"{role}_emb_")]
        x = raw[emb_cols].to_numpy(np.float64)
        proj = (x - np.asarray(pca["mean"])) @ np.asarray(pca["components"]).T
        out = out.drop(columns=emb_cols)
        for k in range(proj.shape[1]):
            out[f"{role}_pc_{k}"] = proj[:, k]
    for role in spec.roles:
        if role not in spec.pca:
            out = out.drop(columns=[c for c in out.columns if c.startswith(f"{role}_emb_")])
    return out


def apply_state(raw: pd.DataFrame, spec: StateSpec) -> pd.DataFrame:
    """The state columns of ``spec`` from a raw state (PCA, z-scores, clip)."""
    reduced = _reduce(raw, spec)
    absent = [c for c in spec.columns if c not in reduced.columns]
    if absent:
        raise ValueError(f"the state needs columns this data does not have: {absent[:10]}")
    out = reduced[spec.columns].astype(np.float64)
    for c, (mu, sd) in spec.zscore.items():
        out[c] = ((out[c] - mu) / sd).clip(-Z_CLIP, Z_CLIP)
    return out


def vsa_direction(data: MLFrame, index: pd.DatetimeIndex) -> np.ndarray:
    """+1 / -1 where the ``vsa`` strategy's long / short entry event fires (with its
    trend context) at the bar's close, else 0."""
    from perptrader.strategies.vsa import VsaStrategy

    long_, short = VsaStrategy().signals(data.frame)
    d = pd.Series(long_.astype(np.float64) - short.astype(np.float64), index=data.frame.index)
    return d.reindex(index).fillna(0.0).to_numpy(np.float64)


def expert_agreement(raw: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(agree, conflict): agree = +1/-1 when both experts' arg-max is BUY/SELL; conflict =
    1 when one says BUY and the other SELL. Zeros when an expert is missing."""
    n = len(raw)
    cols = [[f"{r}_p_{c.lower()}" for c in CLASSES] for r in ("pattern", "indicator")]
    if not all(c in raw.columns for group in cols for c in group):
        return np.zeros(n), np.zeros(n)
    votes = []
    for group in cols:
        p = raw[group].to_numpy(np.float64)
        ok = ~np.isnan(p).any(axis=1)
        v = np.zeros(n)
        v[ok] = np.argmax(p[ok], axis=1) - 1.0  # -1 SELL, 0 HOLD, +1 BUY
        votes.append(v)
    a, b = votes
    agree = np.where((a == b) & (a != 0), a, 0.0)
    conflict = ((a * b) < 0).astype(np.float64)
    return agree, conflict
