"""Named, declarative feature sets: which families a build uses, and at which higher
timeframes some of them are repeated.

A set names families, not columns: a family whose data is absent for a symbol is left
out of that symbol's build (and reported), never zero-filled. Higher-timeframe copies
are restricted to families with a short memory, because a 1d copy of a 200-bar EMA
would need 200 days of warm-up and 2,400 days of history before it stopped depending
on where the data starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from perptrader.core.errors import UnknownNameError

#: families that read only bars (trade-price OHLCV)
BAR_FAMILIES = ("vsa", "trend", "momentum", "volatility", "volume", "pattern", "candle",
                "rangevol", "liquidity", "kyle", "time")
#: families that read the perpetual's extras; each is skipped when its data is absent
DERIVATIVE_FAMILIES = ("funding", "basis", "premium", "oi", "ratio_global",
                       "ratio_top_account", "ratio_top_position", "taker", "takerratio",
                       "liquidation")


@dataclass(frozen=True)
class FeatureSet:
    name: str
    description: str
    families: tuple[str, ...]
    #: (higher timeframe, families computed on it and joined as of its bar close)
    higher: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: order-book families; they need ``book`` snapshots in the store for the span
    book_families: tuple[str, ...] = ()
    #: a family whose output is defined on fewer than this share of the rows after
    #: warm-up is dropped from the build (and reported): a column that is NaN almost
    #: everywhere (an order book captured for ten minutes of a two-year 1h series)
    #: teaches a model nothing and hides in its importance table
    min_coverage: float = 0.05
    tags: tuple[str, ...] = field(default_factory=tuple)


FEATURE_SETS: dict[str, FeatureSet] = {
    s.name: s
    for s in (
        FeatureSet(
            name="default",
            description="Everything the data supports: VSA, indicators, candles, range "
                        "volatility, time, derivatives, liquidity, order book, and 4h/1d "
                        "copies of the short-memory families.",
            families=BAR_FAMILIES + DERIVATIVE_FAMILIES,
            higher=(("4h", ("vsa", "candle", "rangevol", "momentum")),
                    ("1d", ("vsa",))),
            book_families=("book",),
        ),
        FeatureSet(
            name="bars",
            description="Only what OHLCV bars give: VSA, indicators, candles, range "
                        "volatility, liquidity and time (for spot or venues without "
                        "derivatives data).",
            families=BAR_FAMILIES,
        ),
        FeatureSet(
            name="vsa",
            description="Volume Spread Analysis alone, with its 4h copy.",
            families=("vsa",),
            higher=(("4h", ("vsa",)),),
        ),
    )
}


def get_set(name: str) -> FeatureSet:
    if name not in FEATURE_SETS:
        raise UnknownNameError(f"unknown feature set {name!r}; known: "
                               f"{', '.join(FEATURE_SETS)}")
    return FEATURE_SETS[name]
