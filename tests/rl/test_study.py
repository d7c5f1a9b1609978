"""``rl.study.agent_trial``, the research runner's RL trial, on a synthetic frame with a
tiny PPO budget (no store, no registry, no CLI); and on real BTCUSDT 1h bars when
../shared/data is there."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from feature_frames import synthetic_frame
from perptrader.core.errors import PerptraderError
from perptrader.rl import actions as ACT
from perptrader.rl import study
from perptrader.rl.study import TrialSettings, agent_trial

HOUR = pd.Timedelta("1h")
TINY = {"timesteps": 512, "n_envs": 2, "n_steps": 128, "net_arch": [16, 16]}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """2000 1h bars: 728 of feature warm-up, ~900 to train on, 300 to test."""
    return synthetic_frame(2000, seed=5)


def spans(frame: pd.DataFrame) -> tuple[tuple, tuple]:
    cut = frame.index[1700]
    return (frame.index[0], cut), (cut, frame.index[-1] + HOUR)


@pytest.fixture(scope="module")
def two_seeds(frame: pd.DataFrame) -> dict:
    train, test = spans(frame)
    return agent_trial(frame, symbol="BTCUSDT", timeframe="1h", funding=None, train=train,
                       test=test, settings=TINY, seeds=[0, 1])


@pytest.mark.slow
def test_the_trial_payload(two_seeds: dict, frame: pd.DataFrame) -> None:
    out = two_seeds
    json.dumps(out, allow_nan=False)  # JSON-able, no NaN
    assert [s["seed"] for s in out["seeds"]] == [0, 1]
    for s in out["seeds"]:
        assert {"seed", "net_return", "sharpe", "trades", "turnover", "action_share",
                "collapsed", "collapse_reason"} <= set(s)
        assert list(s["action_share"]) == list(ACT.ACTION_NAMES)
        assert s["collapsed"] == (s["collapse_reason"] is not None)
        assert s["timesteps"] == 512
    # the test span is [1700, 2000): one seed-averaged net return per bar
    assert out["test_index"] == [t.isoformat() for t in frame.index[1700:]]
    assert len(out["bar_returns"]) == 300
    # the train span lost the feature warm-up at the front and ends before the test
    assert pd.Timestamp(out["train_index"][0]) > frame.index[0]
    assert pd.Timestamp(out["train_index"][1]) == frame.index[1699]
    assert not any(c.endswith(("_p_buy", "_p_sell")) for c in out["state_columns"])


@pytest.mark.slow
def test_seed_averaging(two_seeds: dict) -> None:
    out = two_seeds
    nets = [s["net_return"] for s in out["seeds"]]
    assert out["mean_net_return"] == pytest.approx(np.mean(nets), rel=1e-12)
    assert out["collapsed_seeds"] == [s["seed"] for s in out["seeds"] if s["collapsed"]]
    assert out["verdict"] == ("ok" if not out["collapsed_seeds"] else out["verdict"])
    assert out["verdict"].startswith("fail: collapsed") == bool(out["collapsed_seeds"])
    # the two seeds are two different policies
    assert out["seeds"][0]["action_share"] != out["seeds"][1]["action_share"]


@pytest.mark.slow
def test_one_seeds_bar_returns_compound_to_its_net_return(frame: pd.DataFrame) -> None:
    train, test = spans(frame)
    out = agent_trial(frame, symbol="BTCUSDT", timeframe="1h", funding=None, train=train,
                      test=test, settings=TINY, seeds=[3])
    r = np.asarray(out["bar_returns"])
    assert np.prod(1.0 + r) - 1.0 == pytest.approx(out["seeds"][0]["net_return"], rel=1e-9,
                                                   abs=1e-12)
    assert out["mean_net_return"] == out["seeds"][0]["net_return"]


class _Hold:
    def predict(self, obs, action_masks=None, deterministic=True):
        return np.array(ACT.HOLD), None


@pytest.mark.slow
def test_collapsed_seeds_fail_the_trial(frame: pd.DataFrame,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Policies that only hold (standing in for collapsed PPO) never trade: every seed
    is flagged, the verdict fails and names them, the test span earns exactly 0."""
    monkeypatch.setattr(study, "load_policy", lambda path: _Hold())
    train, test = spans(frame)
    out = agent_trial(frame, symbol="BTCUSDT", timeframe="1h", funding=None, train=train,
                      test=test, settings=TINY, seeds=[0, 1])
    assert out["collapsed_seeds"] == [0, 1]
    assert out["verdict"] == "fail: collapsed (seed 0: no trades; seed 1: no trades)"
    assert out["mean_net_return"] == 0.0 and not any(out["bar_returns"])


def test_settings_are_checked() -> None:
    assert TrialSettings.from_dict({"timesteps": 2000, "features": "minimal"}).timesteps \
        == 2000
    s = TrialSettings.from_dict({"timesteps": 300, "ent_coef": 0.1})
    ppo = s.ppo_settings(5)
    assert ppo.seed == 5 and ppo.ent_coef == 0.1
    assert ppo.n_envs * ppo.n_steps <= 300 and ppo.batch_size <= ppo.n_envs * ppo.n_steps
    for bad in ({"features": "models"}, {"timestep": 10}, {"valid_share": 0.7},
                {"ent_schedule": "cosine"}, {"reward": "profit"}):
        with pytest.raises(PerptraderError):
            TrialSettings.from_dict(bad)


def test_spans_are_checked(frame: pd.DataFrame) -> None:
    train, test = spans(frame)
    with pytest.raises(PerptraderError, match="must end before"):
        agent_trial(frame, symbol="BTCUSDT", timeframe="1h", funding=None, train=test,
                    test=train, settings=TINY, seeds=[0])
    with pytest.raises(PerptraderError, match="holds no bars"):
        agent_trial(frame, symbol="BTCUSDT", timeframe="1h", funding=None,
                    train=(frame.index[0], frame.index[100]), test=test, settings=TINY,
                    seeds=[0])
    with pytest.raises(PerptraderError, match="at least one seed"):
        agent_trial(frame, symbol="BTCUSDT", timeframe="1h", funding=None, train=train,
                    test=test, settings=TINY, seeds=[])


@pytest.mark.slow
def test_real_btcusdt_1h_trial() -> None:
    """Real bars (../shared/data, freqtrade futures feather): a tiny trial runs end to end
    and its figures are finite."""
    from shared_data import read_futures_feather

    raw = read_futures_feather("BTC_USDT_USDT-1h-futures.feather")
    bars = raw.rename(columns={"date": "ts"}).set_index("ts").sort_index()
    bars.index = pd.DatetimeIndex(bars.index).tz_convert("UTC").as_unit("us")
    bars = bars[["open", "high", "low", "close", "volume"]].iloc[-3000:]
    rates = read_futures_feather("BTC_USDT_USDT-8h-funding_rate.feather")
    funding = pd.DataFrame({"ts": pd.DatetimeIndex(rates["date"]).floor("s").as_unit("us"),
                            "rate": rates["open"].to_numpy(), "interval_hours": 8.0})
    funding = funding[funding["ts"] >= bars.index[0]].reset_index(drop=True)
    cut = bars.index[-500]
    out = agent_trial(bars, symbol="BTCUSDT", timeframe="1h", funding=funding,
                      train=(bars.index[0], cut), test=(cut, bars.index[-1] + HOUR),
                      settings=TINY, seeds=[0])
    assert len(out["bar_returns"]) == 500 and np.isfinite(out["bar_returns"]).all()
    assert out["seeds"][0]["trades"] >= 0 and np.isfinite(out["seeds"][0]["net_return"])
    assert out["verdict"] == "ok" or out["verdict"].startswith("fail: collapsed")
