"""What trading costs: fees, slippage and the liquidation clearance fee, in one value object.

Kept apart from ``SimConfig`` because the same cost model is shared by backtests, the RL
environment and the paper broker, and is the thing most often varied in a sensitivity run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SlippageModel = Literal["fixed", "volatility", "book"]


@dataclass(frozen=True)
class CostModel:
    """Fees and slippage applied to every simulated fill.

    * ``maker_fee`` / ``taker_fee``: fractions of fill notional (Binance USDⓈ-M VIP0 defaults
      0.02 % / 0.05 %). Market orders, stops and take-profits pay ``taker_fee``;
      ``signal_liquidity="maker"`` makes signal fills pay ``maker_fee`` at the bar open
      with no slippage (an optimistic assumption: a resting limit order at the open price
      that is always filled; use it only to bound results from above).
    * ``slippage_model``:
      ``"fixed"``: every taker fill is ``slippage_bps`` worse than the reference price;
      ``"volatility"``: ``slippage_bps * vol_slippage_mult * r`` where ``r`` is the
      previous bar's range ``(high - low) / open`` divided by its mean over the
      ``vol_window`` bars before the fill (known at decision time; 1.0 during warm-up);
      ``"book"``: signal fills walk the L2 levels passed for the fill bar (VWAP, partial
      fill when too thin); bars without levels fall back to fixed bps and are counted.
    * ``liquidation_fee``: Binance's liquidation clearance fee as a fraction of the
      liquidated notional, capped at what is left of the position's margin (isolated) or
      the wallet (cross). 1.25 % is the rate commonly quoted for Binance USDⓈ-M; it was
      not checked against a primary source in this session, so set it for your symbol.
    """

    maker_fee: float = 0.0002
    taker_fee: float = 0.0005
    slippage_bps: float = 1.0
    slippage_model: SlippageModel = "fixed"
    vol_slippage_mult: float = 1.0
    vol_window: int = 24
    liquidation_fee: float = 0.0125
    signal_liquidity: Literal["taker", "maker"] = "taker"

    def __post_init__(self) -> None:
        for name in ("maker_fee", "taker_fee", "slippage_bps", "vol_slippage_mult",
                     "liquidation_fee"):
            value = getattr(self, name)
            if not value >= 0.0:
                raise ValueError(f"CostModel.{name} must be >= 0, got {value!r}")
        if self.slippage_model not in ("fixed", "volatility", "book"):
            raise ValueError(f"CostModel.slippage_model must be fixed|volatility|book, "
                             f"got {self.slippage_model!r}")
        if self.signal_liquidity not in ("taker", "maker"):
            raise ValueError(f"CostModel.signal_liquidity must be taker|maker, "
                             f"got {self.signal_liquidity!r}")
        if self.vol_window < 2:
            raise ValueError(f"CostModel.vol_window must be >= 2, got {self.vol_window}")
