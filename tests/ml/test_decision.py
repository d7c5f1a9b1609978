"""The cost-aware decision layer (``ml.decision``): hysteresis, holding period, sizing,
the measured edge scale and the validation search."""

from __future__ import annotations

import numpy as np
import pytest

from perptrader.ml.decision import (
    NEVER,
    CostAwareRule,
    DecisionInputs,
    DecisionParams,
    decide,
    decision_sigma,
    fit_decision,
    fit_edge_scale,
    linear_pnl,
)

COST = 0.0012


def _inputs(lean: np.ndarray, sigma: float = 0.01, k: float = 0.4, horizon: int = 24,
            funding: float = 0.0) -> DecisionInputs:
    """P(BUY) − P(SELL) = lean, the rest on HOLD."""
    lean = np.asarray(lean, dtype=np.float64)
    buy = np.clip(0.3 + lean / 2, 0, 1)
    sell = np.clip(0.3 - lean / 2, 0, 1)
    proba = np.column_stack([sell, 1 - buy - sell, buy])
    n = len(lean)
    return DecisionInputs(proba, np.full(n, sigma), np.full(n, funding), k, horizon, COST,
                          1 / 8)


def _edge_per_lean(k: float = 0.4, sigma: float = 0.01, horizon: int = 24) -> float:
    return k * sigma * np.sqrt(horizon)


def test_enters_only_above_costs_and_sizes_by_volatility() -> None:
    unit = _edge_per_lean()
    # leans whose expected move is 0.5x, 1.2x and 3x the round trip
    lean = np.array([0.5, 1.2, 3.0]) * COST / unit
    p = DecisionParams(enter=1.0, exit=0.0, min_hold=1, vol_target=0.005, max_size=1.0)
    out = [decide(_inputs(np.array([x])), p)[0] for x in lean]
    assert out[0] == 0.0
    assert out[1] == pytest.approx(0.5) and out[2] == pytest.approx(0.5)  # 0.005 / σ 0.01
    # shorts mirror longs; the size is capped
    capped = DecisionParams(enter=1.0, exit=0.0, min_hold=1, vol_target=0.05, max_size=1.0)
    assert decide(_inputs(np.array([-lean[2]])), capped)[0] == pytest.approx(-1.0)


def test_hysteresis_keeps_a_position_through_flicker() -> None:
    unit = _edge_per_lean()
    enter, exit_ = 2.0, 0.5
    # above enter, then flickering between 0.7 and 1.9 costs (below enter, above exit)
    path = np.array([2.5, 0.7, 1.9, 0.7, 1.9, 0.2, 0.2]) * COST / unit
    p = DecisionParams(enter=enter, exit=exit_, min_hold=1, vol_target=0.01)
    out = decide(_inputs(path), p)
    assert list(out[:5]) == [1.0] * 5      # held while the edge stays above exit
    assert out[5] == 0.0                    # closed once below exit
    plain = DecisionParams(enter=enter, exit=enter, min_hold=1, vol_target=0.01)
    flicker = decide(_inputs(path), plain)
    assert (np.diff(flicker[:5]) != 0).sum() >= 1  # without hysteresis it closes at once


def test_min_hold_refuses_an_early_exit_and_flip() -> None:
    unit = _edge_per_lean()
    path = np.array([3.0, -3.0, -3.0, -3.0, -3.0]) * COST / unit
    out = decide(_inputs(path), DecisionParams(enter=1.0, exit=0.0, min_hold=3,
                                               vol_target=0.01))
    assert list(out) == [1.0, 1.0, 1.0, -1.0, -1.0]


def test_funding_counts_against_the_side_that_pays() -> None:
    unit = _edge_per_lean()
    lean = np.array([1.5 * COST / unit])
    p = DecisionParams(enter=1.0, exit=0.0, min_hold=1, vol_target=0.01)
    assert decide(_inputs(lean), p)[0] == 1.0
    # 0.05% per 8h over 24 1h bars = 0.15% funding: a 1.8-bp-of-cost long no longer pays
    assert decide(_inputs(lean, funding=0.0005), p)[0] == 0.0
    assert decide(_inputs(-lean, funding=0.0005), p)[0] == -1.0


def test_unknown_rows_are_flat_after_the_holding_period() -> None:
    unit = _edge_per_lean()
    path = np.array([3.0, np.nan, np.nan, np.nan]) * COST / unit
    out = decide(_inputs(path), DecisionParams(enter=1.0, exit=0.0, min_hold=2,
                                               vol_target=0.01))
    assert list(out) == [1.0, 1.0, 0.0, 0.0]


def test_linear_pnl_fills_at_the_next_open() -> None:
    opens = np.array([100.0, 100.0, 110.0, 121.0, 121.0])
    targets = np.array([1.0, 1.0, 0.0, 0.0, 0.0])
    r = linear_pnl(targets, opens, one_way_cost=0.001)
    # decided at t=0, filled at open 1 (100), earns open 2 / open 1 - 1 = 10%, pays entry
    assert r[0] == pytest.approx(0.10 - 0.001)
    assert r[1] == pytest.approx(0.10)          # open 3 / open 2 - 1
    assert r[2] == pytest.approx(-0.001)        # the exit's cost
    assert r[3] == 0.0 and r[4] == 0.0


def test_edge_scale_is_zero_without_skill_and_found_with_it() -> None:
    rng = np.random.default_rng(0)
    score = rng.uniform(-0.5, 0.5, 4000)
    noise = rng.normal(0, 1, 4000)
    assert fit_edge_scale(score, noise).k == pytest.approx(0.0, abs=0.2)
    assert fit_edge_scale(score, -2 * score + noise).k == 0.0   # wrong-way model
    skilled = fit_edge_scale(score, 2.0 * score + noise)
    assert 1.5 < skilled.k < 2.5 and skilled.t > 5
    # overlapping horizons widen the error: the same data gives a smaller, or zero, k
    assert fit_edge_scale(score, 0.15 * score + noise, overlap=24).k < fit_edge_scale(
        score, 0.15 * score + noise).k


def test_fit_decision_stays_flat_on_noise_and_trades_a_planted_edge() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    lean = rng.uniform(-1, 1, n)
    opens = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    noise = fit_decision([(_inputs(lean), opens)])
    assert noise.params is NEVER or noise.valid_net > 0
    # next-bar moves follow the lean: a real edge the search must use
    moves = 0.004 * np.sign(lean)
    opens_edge = 100 * np.exp(np.concatenate([[0.0, 0.0], np.cumsum(moves)[:-2]]))
    fit = fit_decision([(_inputs(lean), opens_edge)])
    assert fit.trades and fit.valid_net > 0 and fit.n_tried == 24


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="exit"):
        DecisionParams(enter=1.0, exit=2.0)
    with pytest.raises(ValueError, match="min_hold"):
        DecisionParams(min_hold=0)
    with pytest.raises(ValueError, match="unknown decision settings"):
        DecisionParams.from_dict({"enter": 1.0, "bogus": 1})
    with pytest.raises(ValueError, match="proba"):
        DecisionInputs(np.zeros((3, 2)), np.zeros(3), np.zeros(3), 0.4, 24, COST, 1 / 8)


def test_decision_sigma_is_the_label_sigma_and_the_same_from_any_start() -> None:
    from perptrader.features.labels import bar_volatility

    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 600)))
    sigma = decision_sigma(close, 72)
    assert np.isnan(sigma[:72]).all() and np.isfinite(sigma[72:]).all()
    np.testing.assert_allclose(sigma[72:], bar_volatility(close, 72)[72:], rtol=1e-9)
    for t in (72, 300, 599):  # the newest σ from the last 73 closes only: same float
        assert decision_sigma(close[t - 72: t + 1], 72)[-1] == sigma[t]


def test_rule_step_by_step_equals_the_batch_targets() -> None:
    """The per-bar form (``step`` from a carried state, as a live policy runs it) gives
    the batch targets exactly, through unknown rows, funding and holding periods; the
    state after the batch continues the path."""
    rng = np.random.default_rng(5)
    n = 900
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    lean = np.sin(np.arange(n) / 25.0) * 0.3 + rng.normal(0, 0.05, n)
    proba = np.column_stack([0.3 - lean / 2, np.full(n, 0.4), 0.3 + lean / 2])
    proba[400:420] = np.nan  # the model could not predict there
    funding = rng.normal(0.0001, 0.0003, n)
    rule = CostAwareRule(DecisionParams(enter=1.5, exit=0.25, min_hold=6), k=0.5,
                         horizon=24, round_trip_cost=COST, vol_window=72,
                         fundings_per_bar=1 / 8)
    batch = rule.targets(proba, close, funding)
    assert (batch > 0).any() and (batch < 0).any() and (batch == 0).sum() > 100
    state = (0.0, 0, 0.0)
    live = []
    for t in range(n):
        state, target = rule.step(state, proba[t], close[: t + 1], float(funding[t]))
        live.append(target)
    np.testing.assert_array_equal(live, batch)
    head, end_state = rule.final_state(proba[:600], close[:600], funding[:600])
    np.testing.assert_array_equal(head, batch[:600])
    _, nxt = rule.step(end_state, proba[600], close[:601], float(funding[600]))
    assert nxt == batch[600]
    assert CostAwareRule.from_dict(rule.as_dict()) == rule
    with pytest.raises(ValueError, match="lacks 'k'"):
        CostAwareRule.from_dict({k: v for k, v in rule.as_dict().items() if k != "k"})
