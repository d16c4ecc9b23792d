"""A synthetic daily price series, as a user's loader returns it: a pyarrow table of the date,
the last ``lags`` daily returns (``lag_1`` is yesterday's) and whether the price rose the next
day. The returns follow an AR(1) process (momentum ``phi``), so the direction of tomorrow's
return can be partly predicted from the recent ones, as with a trending market."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa


def load(days: int = 3000, lags: int = 16, phi: float = 0.5, seed: int = 7
         ) -> tuple[pa.Table, str]:
    rng = np.random.default_rng(seed)
    shocks = rng.normal(0.0, 0.01, days + lags + 1)
    returns = np.zeros_like(shocks)
    for t in range(1, len(shocks)):
        returns[t] = phi * returns[t - 1] + shocks[t]
    start = dt.date(2015, 1, 1)
    cols: dict[str, object] = {
        "date": [(start + dt.timedelta(days=i)).isoformat() for i in range(days)]}
    for k in range(1, lags + 1):  # lag_k: the return k days before the predicted day
        cols[f"lag_{k}"] = returns[lags - k:lags - k + days]
    nxt = returns[lags:lags + days]
    cols["direction"] = np.where(nxt > 0, "up", "down").tolist()
    return pa.table(cols), "direction"
