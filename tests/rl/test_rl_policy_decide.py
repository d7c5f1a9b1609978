"""``rl:NAME`` as a policy: per-bar ``decide`` on a REAL ``sim.Account`` (the RL account
config, stepped over the same bars) gives ``run_agent``'s decisions, and the Python
account features equal ``rl.core._account_obs``.

``account_view`` below is how a trading engine builds the ``AccountView`` from a
``sim.Account`` (the lead moves it into the engine).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_frames import synthetic_frame
from perptrader.rl import core as C
from perptrader.rl.market import MAX_EXPOSURE, rl_sim_config
from perptrader.rl.strategy import RLStrategy, account_features, current_target
from perptrader.sim import Account, BarInput
from perptrader.sim import kernel as K
from perptrader.strategies.base import AccountView

N_BARS = 4000
DECIDED = 150


def account_view(account: Account, bar: BarInput, target: float, peak_equity: float,
                 entry_bar_index: int, bar_index: int) -> AccountView:
    """The view of ``account`` after it advanced over ``bar`` (bar number ``bar_index``).

    ``target``: the last target sent (NaN before the first); ``peak_equity``: the
    high-water mark before this bar (the current equity is folded in here);
    ``entry_bar_index``: the bar whose advance opened the position from flat (-1 when
    none)."""
    qty = account.position
    return AccountView(
        ts=pd.Timestamp(bar.ts), equity=account.equity,
        initial_equity=account.config.initial_cash, wallet_balance=account.wallet_balance,
        position_qty=qty, entry_price=account.entry_price, mark_price=account.mark_price,
        close_price=account.close_price, unrealized_pnl=account.unrealized_pnl,
        position_margin=account.position_margin,
        maintenance_margin=account.maintenance_margin(),
        peak_equity=max(peak_equity, account.equity),
        bars_in_position=bar_index - entry_bar_index if qty != 0.0 and entry_bar_index >= 0
        else -1,
        target=target, leverage=account.config.leverage)


def bar_input(frame: pd.DataFrame, t: int) -> BarInput:
    row = frame.iloc[t]
    get = lambda c: float(row[c]) if c in frame.columns else math.nan  # noqa: E731
    return BarInput(ts=frame.index[t], open=get("open"), high=get("high"), low=get("low"),
                    close=get("close"), mark_open=get("mark_open"),
                    mark_high=get("mark_high"), mark_low=get("mark_low"),
                    mark_close=get("mark_close"))


class Tracker:
    """An ``Account`` stepped bar by bar with the bookkeeping a trading engine keeps."""

    def __init__(self) -> None:
        self.account = Account(rl_sim_config(), "BTCUSDT", timeframe="1h")
        self.peak = self.account.config.initial_cash
        self.entry = -1
        self.sent = math.nan

    def advance(self, frame: pd.DataFrame, t: int) -> AccountView:
        bar = bar_input(frame, t)
        before = self.account.position
        self.account.advance(bar)
        now = self.account.position
        if now == 0.0:
            self.entry = -1
        elif before == 0.0:
            self.entry = t
        view = account_view(self.account, bar, self.sent, self.peak, self.entry, t)
        self.peak = view.peak_equity
        return view

    def queue(self, target: float) -> None:
        self.account.queue(target)
        self.sent = target


# ---- the account features ---------------------------------------------------------------------
def test_account_features_equal_the_numba_observation() -> None:
    """Random bars and random targets through a real account; at every bar the Python
    features of its view equal ``core._account_obs`` (+ leverage used) on its arrays."""
    rng = np.random.default_rng(5)
    frame = synthetic_frame(400, seed=3)
    tracker = Tracker()
    init = tracker.account.config.initial_cash
    seen_positions = 0
    for t in range(len(frame)):
        view = tracker.advance(frame, t)
        acct = tracker.account
        target, _ = current_target(view)
        xs = np.zeros((t + 1, K.NX))
        xs[t] = acct._x[0]  # the env reads bar t's row of its market arrays
        E = np.zeros((1, C.NE))
        E[0, C.E_PEAK] = view.peak_equity
        E[0, C.E_ENTRY_BAR] = tracker.entry
        out = np.zeros(C.N_ACCOUNT, dtype=np.float32)
        C._account_obs(0, t, xs, acct._tb, acct._sp, acct._st[None], E, acct.equity, out, 0,
                       init)
        out[2] = abs(target) / MAX_EXPOSURE
        out = np.clip(out, -C.OBS_CLIP, C.OBS_CLIP)
        np.testing.assert_array_equal(account_features(view, target), out)
        seen_positions += view.position_qty != 0.0
        tracker.queue(float(rng.choice([0.0, 0.5, 1.0, 2.0, -0.5, -1.0, -2.0, math.nan])))
    assert seen_positions > 100


def test_forced_flat_rule() -> None:
    flat = AccountView.flat(pd.Timestamp("2024-01-01", tz="UTC"), 1000.0, 100.0)
    assert current_target(flat) == (0.0, False)  # NaN target before the first
    assert current_target(AccountView(**{**flat.__dict__, "target": 1.5})) == (0.0, True)
    held = {**flat.__dict__, "position_qty": 2.0, "target": -1.0}
    assert current_target(AccountView(**held)) == (-1.0, False)


# ---- the agent ------------------------------------------------------------------------------
def isolate(mp: pytest.MonkeyPatch, data_dir: Path) -> None:
    """What tests/conftest.py does per test: no perptrader.toml, data in ``data_dir``."""
    mp.setenv("PERPTRADER_CONFIG", str(data_dir.parent / "absent.toml"))
    mp.setenv("PERPTRADER__DATA_DIR", str(data_dir))
    for key in list(os.environ):
        if key.startswith("PERPTRADER__") and key != "PERPTRADER__DATA_DIR":
            mp.delenv(key)


def fill_store(data_dir: Path, frame: pd.DataFrame) -> None:
    """The bars (no funding: the real account is given none either) in the store."""
    from perptrader.core.instruments import Instrument
    from perptrader.marketdata.dataset import Dataset, validate
    from perptrader.marketdata.kinds import Kind
    from perptrader.marketdata.store.duckdb_store import DuckDBStore

    data_dir.mkdir(parents=True, exist_ok=True)
    with DuckDBStore(data_dir / "market.duckdb") as store:
        store.migrate()
        store.write([validate(Dataset(Kind.OHLCV, Instrument.parse("BTCUSDT"),
                                      frame.reset_index(), "1h", source="synthetic"))])


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A gbdt on the ``bars`` set registered, then a ppo agent trained on it for 256
    steps (tiny network) in a module-level data directory."""
    from perptrader.marketdata.store.duckdb_store import DuckDBStore
    from perptrader.ml.dataset import build_ml_frame
    from perptrader.ml.gbdt import LightGBMModel
    from perptrader.ml.registry import register
    from perptrader.ml.splits import WalkForwardSpec
    from perptrader.rl.agents import PPOSettings
    from perptrader.rl.train import train_agent

    data_dir = tmp_path_factory.mktemp("rl_decide") / "user_data"
    frame = synthetic_frame(N_BARS, extras=False)
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, data_dir)
        fill_store(data_dir, frame)
        data = build_ml_frame(frame.iloc[:2600], symbol="BTCUSDT", timeframe="1h",
                              feature_set="bars")
        model = LightGBMModel({"n_estimators": 8, "num_leaves": 7, "num_threads": 1,
                               "early_stopping_rounds": 8, "learning_rate": 0.3})
        model.fit(data, np.arange(0, 1200), np.arange(1230, len(data) - 30))
        register("g", model, data=data, summary={}, spec=WalkForwardSpec())
        with DuckDBStore(data_dir / "market.duckdb") as store:
            train_agent(store, symbol="BTCUSDT", timeframe="1h", agent="ppo", name="t",
                        timesteps=256, models=["g"], log=lambda *_: None,
                        settings=PPOSettings(n_envs=2, n_steps=128, batch_size=128,
                                             n_epochs=1, net_arch=(16,), eval_every=256,
                                             episode_bars=100))
    return data_dir, frame


def test_decide_on_a_real_account_equals_run_agent(agent, monkeypatch) -> None:
    data_dir, frame = agent
    isolate(monkeypatch, data_dir)
    policy = RLStrategy("t")
    warmup = policy.warmup_bars
    frame = frame.iloc[: warmup + DECIDED]
    targets = policy.targets(frame)
    assert (targets[:warmup] == 0).all()
    assert len(np.unique(targets[warmup:])) > 1, "the agent never trades: no real check"
    tracker = Tracker()
    live = []
    for t in range(warmup - 2, len(frame) - 1):  # run_agent does not decide on the last bar
        if t < warmup:
            view = AccountView.flat(frame.index[t], 10_000.0)
            decision = policy.decide(frame.iloc[: t + 1], view)
        else:  # the agent's account starts at its first decision bar, as the rollout's
            view = tracker.advance(frame, t)
            decision = policy.decide(frame.iloc[: t + 1], view)
            tracker.queue(decision)
        live.append(decision)
    np.testing.assert_array_equal(np.array(live), targets[warmup - 2: len(frame) - 1])
    assert tracker.account.fees_paid > 0  # it traded on the real account
    # a stale call (a skipped bar) rebuilds from the bars; the account is what it is
    t = len(frame) - 5
    again = RLStrategy("t")
    flat = AccountView.flat(frame.index[t], 1e4)
    assert again.decide(frame.iloc[: t + 1], flat) in {0.0, 0.5, 1.0, 2.0, -0.5, -1.0, -2.0}
    assert again.decide(frame.iloc[: t + 2], flat) == RLStrategy("t").decide(
        frame.iloc[: t + 2], flat)  # incremental == rebuilt
