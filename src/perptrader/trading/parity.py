"""Paper run vs backtest of the same policy over the same bars: the one-accounting-core
promise, measured. Both fill through ``sim``'s kernel, so every figure must agree; a
difference beyond float rounding is a bug in one of the two paths."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from perptrader.backtest.engine import BacktestResult, run_on_frame
from perptrader.core.timeframes import timeframe_delta
from perptrader.marketdata.loader import funding_events, load
from perptrader.marketdata.store.base import MarketStore
from perptrader.persistence.db import TradingDB
from perptrader.strategies import Policy, PolicyBase
from perptrader.trading.spec import RunSpec

#: the largest relative difference that still counts as equal
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Parity:
    policy: str
    paper: dict[str, float]
    backtest: dict[str, float]
    fills_equal: bool

    @property
    def worst(self) -> float:
        return max(_rel(self.paper[k], self.backtest[k]) for k in self.paper)

    @property
    def ok(self) -> bool:
        return self.fills_equal and self.worst < TOLERANCE

    def line(self) -> str:
        p, b = self.paper, self.backtest
        verdict = "PASS" if self.ok else "FAIL"
        return (f"parity {self.policy}: final equity paper {p['final_equity']:,.6f} vs "
                f"backtest {b['final_equity']:,.6f}; fills {int(p['fills'])} vs "
                f"{int(b['fills'])}; fees {p['fees']:,.4f} vs {b['fees']:,.4f}; funding "
                f"{p['funding']:,.4f} vs {b['funding']:,.4f}; liquidations "
                f"{int(p['liquidations'])} vs {int(b['liquidations'])}; largest relative "
                f"difference {self.worst:.1e}: {verdict}")

    def as_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "paper": self.paper, "backtest": self.backtest,
                "fills_equal": self.fills_equal, "max_rel_diff": self.worst, "ok": self.ok}


@dataclass(frozen=True)
class _FromStart(PolicyBase):
    """``policy`` that decides nothing before ``start`` (NaN: no order), so a backtest
    over history + window trades exactly the window, as a paper run with history does."""

    policy: Policy
    start: pd.Timestamp

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.policy.name

    @property
    def params(self) -> dict[str, Any]:
        return self.policy.params

    @property
    def margin_leverage(self) -> float | None:
        return getattr(self.policy, "margin_leverage", None)

    def targets(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.asarray(self.policy.targets(frame), dtype=np.float64).copy()
        out[frame.index < self.start] = np.nan
        return out


def backtest_of(store: MarketStore, spec: RunSpec, policy: Policy, symbol: str
                ) -> BacktestResult:
    """The backtest that must equal the paper run ``spec`` on ``symbol``: the same bars
    (with the same history before the window), costs, leverage and cash."""
    start, end = spec.window()
    begin = start - spec.history_bars * timeframe_delta(spec.timeframe)
    frame = load(symbol, spec.timeframe, begin, end, store=store)
    wrapped = _FromStart(policy, start) if spec.history_bars else policy
    return run_on_frame(frame, wrapped, symbol=symbol, timeframe=spec.timeframe,
                        costs=spec.costs(), leverage=spec.leverage,
                        initial_cash=spec.initial_cash / len(spec.symbols),
                        funding=funding_events(store, symbol, frame, spec.timeframe),
                        fill_delay=spec.fill_delay, margin_mode=spec.margin_mode,
                        close_at_end=spec.close_at_end)


def compare(db: TradingDB, run_id: str, result: BacktestResult) -> Parity:
    """Fills (time, side, quantity, price, fee), fees, funding, liquidations and final
    equity of the paper run ``run_id`` against the backtest ``result``."""
    fills = pd.DataFrame(db.fills(run_id))
    curve = db.equity_curve(run_id)
    sim = result.sim.fills.reset_index(drop=True)
    paper = {"final_equity": float(curve["equity"].iloc[-1]), "fills": float(len(fills)),
             "fees": float(curve["fees_paid"].iloc[-1]),
             "funding": float(curve["funding_paid"].iloc[-1]),
             "liquidations": float((fills["reason"] == "liquidation").sum())
             if len(fills) else 0.0}
    backtest = {"final_equity": float(result.metrics["final_equity"]),
                "fills": float(len(sim)), "fees": float(result.sim.fees_paid),
                "funding": float(result.sim.funding_paid),
                "liquidations": float(result.sim.liquidations)}
    return Parity(policy=result.strategy.name, paper=paper, backtest=backtest,
                  fills_equal=_same_fills(fills, sim))


def _same_fills(paper: pd.DataFrame, sim: pd.DataFrame) -> bool:
    if len(paper) != len(sim):
        return False
    if not len(paper):
        return True
    paper = paper.sort_values(["ts", "fill_id"]).reset_index(drop=True)
    times = pd.to_datetime(paper["ts"], unit="ms", utc=True)
    sides = np.where(paper["side"] == "buy", 1, -1)
    return bool(
        (times.to_numpy() == pd.DatetimeIndex(sim["ts"]).to_numpy()).all()
        and (sides == np.sign(sim["side"].to_numpy())).all()
        and np.allclose(paper["qty"], sim["qty"].abs(), rtol=TOLERANCE, atol=0)
        and np.allclose(paper["price"], sim["price"], rtol=TOLERANCE, atol=0)
        and np.allclose(paper["fee"], sim["fee"], rtol=TOLERANCE, atol=1e-12))


def _rel(a: float, b: float) -> float:
    if abs(a - b) <= 1e-9:  # both (near) zero: no relative difference to speak of
        return 0.0
    scale = max(abs(a), abs(b))
    return abs(a - b) / scale if scale > 0 and math.isfinite(scale) else math.inf
