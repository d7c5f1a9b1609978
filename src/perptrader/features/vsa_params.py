"""The parameters of Volume Spread Analysis (VSA) and the names of its bar classes.

Kept apart from the rules so that the anatomy, the class rules, the family specs and a
strategy that trades the flags all read one frozen object. Every threshold is a ratio to
the bar's own recent background (volume and spread relative to their average over the
preceding bars, close location within the bar, trend in units of typical bar range), so
one set of defaults serves any symbol, price level and timeframe; the defaults were
chosen from the VSA literature's wording ("high", "ultra high", "narrow", "wide",
"closes in the upper third") and checked on BTCUSDT 1h so that every class fires and
none fires on more than a small share of bars (docs/vsa.md has the table).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The 14 bar classes after Tom Williams (Master the Markets) and Wyckoff, in the order a
#: strategy and the docs list them. ``vsa_<class>`` is a 0/1 flag and
#: ``vsa_<class>_strength`` a score >= 1 when the flag is 1 (0 otherwise).
VSA_CLASSES: tuple[str, ...] = (
    "upthrust",
    "buying_climax",
    "selling_climax",
    "stopping_volume",
    "no_demand",
    "no_supply",
    "test",
    "shakeout",
    "ns_high_volume",
    "wide_spread_up",
    "wide_spread_down",
    "effort_to_rise",
    "effort_to_fall",
    "absorption",
)


@dataclass(frozen=True)
class VsaParams:
    """Windows (in bars) and thresholds of the VSA measures and classes."""

    # -- windows ---------------------------------------------------------------------
    #: bars of background for volume, spread and close-progress averages. 20 is the
    #: customary VSA look-back ("compared with the last 20 bars"): long enough that one
    #: spike does not set the norm, short enough to follow volume regimes (on 1h bars it
    #: is one trading day, which also spans the intraday volume cycle).
    avg_window: int = 20
    #: bars over which the background trend (net move) is measured. 30 bars is longer
    #: than the volume window, so "after an up-move" means more than the last few bars.
    trend_window: int = 30
    #: bars whose highest high / lowest low are recent resistance / support. 20 matches
    #: avg_window: a "new high" is a high above everything of the background period.
    range_window: int = 20
    #: bars before a test in which supply (a high-volume down bar) must have appeared:
    #: a test only means something after supply has hit the market (Williams).
    test_supply_window: int = 20
    #: bars that make up an absorption block; absorption is a short process (a few bars
    #: of heavy volume that fail to move price), not one bar.
    absorption_bars: int = 3

    # -- volume (ratio to the average of the preceding avg_window bars) ---------------
    #: "high volume": half again the background average, a level a volume histogram
    #: shows as clearly above its neighbours.
    vol_high: float = 1.5
    #: "ultra-high volume" of climaxes: at least 2.5x the average. Climaxes are rare
    #: events; lower thresholds turn every busy hour into a climax.
    vol_ultra: float = 2.5
    #: "low volume" of a test: below 80 % of the average, i.e. clearly quieter than usual.
    vol_low: float = 0.8

    # -- spread (high - low, ratio to its average over the preceding avg_window bars) ---
    #: "wide spread": 1.5x the average range.
    spread_wide: float = 1.5
    #: "narrow spread": at most 70 % of the average range.
    spread_narrow: float = 0.7
    #: an upthrust needs a range at least as wide as usual (the push up must be real),
    #: not necessarily a wide one; Williams shows upthrusts of average spread.
    upthrust_spread: float = 1.0

    # -- close location within the bar ((close - low) / (high - low)) ------------------
    #: "closes on / near the low" = lower third; "near the high" = upper third. Thirds
    #: are the partition VSA reads bars with (low, middle, high close).
    close_low: float = 1.0 / 3.0
    close_high: float = 2.0 / 3.0

    # -- context -------------------------------------------------------------------------
    #: |vsa_trend| beyond which the background is an up- or down-move. vsa_trend is the
    #: net close change over trend_window bars divided by (mean spread * sqrt(window)),
    #: which on a random walk has a standard deviation of about 0.65 (1 / E[range] of a
    #: Brownian bar, 1/1.6); 0.5 marks roughly the outer fifth to quarter on each side
    #: as trending.
    trend_min: float = 0.5
    #: vsa_range_pos at or beyond which the close is at resistance (>= +zone) or support
    #: (<= -zone): the outer quarter of the recent high-low range.
    range_zone: float = 0.5
    #: close progress (|close change| / its average) an effort bar must reach: at least
    #: an ordinary bar's move, so effort is matched by result.
    effort_progress: float = 1.0
    #: net progress of an absorption block (|close change over the block| divided by
    #: average |close change| * sqrt(bars)) below which heavy volume achieved "no
    #: result": half of what the block's bars would move at random.
    absorption_progress: float = 0.5

    def __post_init__(self) -> None:
        windows = {
            "avg_window": self.avg_window, "trend_window": self.trend_window,
            "range_window": self.range_window, "test_supply_window": self.test_supply_window,
            "absorption_bars": self.absorption_bars,
        }
        for name, value in windows.items():
            if int(value) != value or value < 2:
                raise ValueError(f"VsaParams.{name} must be an integer >= 2, got {value!r}")
        if not 0.0 < self.close_low < self.close_high < 1.0:
            raise ValueError("VsaParams needs 0 < close_low < close_high < 1")
        if not 0.0 < self.vol_low < 1.0 < self.vol_high < self.vol_ultra:
            raise ValueError("VsaParams needs 0 < vol_low < 1 < vol_high < vol_ultra")
        if not 0.0 < self.spread_narrow < 1.0 < self.spread_wide:
            raise ValueError("VsaParams needs 0 < spread_narrow < 1 < spread_wide")
        positive = {
            "upthrust_spread": self.upthrust_spread, "trend_min": self.trend_min,
            "range_zone": self.range_zone, "effort_progress": self.effort_progress,
            "absorption_progress": self.absorption_progress,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"VsaParams.{name} must be > 0, got {value!r}")
