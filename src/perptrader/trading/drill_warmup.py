"""Imported by the crash drill's forkserver only: pays the one-time costs (ccxt building
its API methods on the first exchange object, numba loading the policy's compiled
code) once, so every forked trader starts warm. Importing it does that work on purpose.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from perptrader.strategies import get_strategy
from perptrader.venues.ccxt_client import Credentials, create_exchange

create_exchange("binanceusdm", url="http://127.0.0.1:9", credentials=Credentials("k", "s"))
create_exchange("binanceusdm", url="http://127.0.0.1:9", credentials=Credentials("k", "s"),
                asynchronous=True)
_frame = pd.DataFrame({c: np.full(50, 100.0) for c in ("open", "high", "low", "close")},
                      index=pd.date_range("2024-01-01", periods=50, freq="1h", tz="UTC"))
get_strategy("random", {"p_entry": "0.6", "p_exit": "0.6"}).targets(_frame)
