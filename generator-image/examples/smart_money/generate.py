"""The generator: fn(item, ctx) -> row. Upstream calls go through ctx.cached, so a symbol's
price history is fetched once for its examples and a date's market data once for its 100."""

import os

from .api import institutional_flow, market_data, maybe_crash, price_history, record_item
from .universe import HISTORY_MONTHS, month_ends

# The upstream's whole history, longer than the sample's 36 months: a universe that grows by a
# month needs no generator change, and an example's row never depends on the universe.
DATES = month_ends(months=HISTORY_MONTHS)


def example(item: dict, ctx) -> dict:
    symbol, date = item["symbol"], item["date"]
    record_item(symbol, date)
    maybe_crash(symbol, date)
    tokens = float(os.environ.get("SMF_TOKENS_PER_ITEM") or 0)
    if tokens:  # as a metered vendor would bill each example
        ctx.usage(tokens=tokens, cost=tokens / 1000)
    # The key names the whole request (symbol and span): a cached history of another span
    # (an older sample's) must never answer for this one.
    closes = ctx.cached(f"prices:{symbol}:{DATES[0]}:{DATES[-1]}", lambda: price_history(symbol, DATES))
    market = ctx.cached(f"market:{date}", lambda: market_data(date))
    flow = ctx.cached(f"flow:{symbol}:{date}", lambda: institutional_flow(symbol, date))
    i = DATES.index(date)
    close = closes[i]
    past = closes[max(0, i - 3)]
    momentum = (close - past) / past
    nxt = closes[i + 1] if i + 1 < len(closes) else close
    forward = (nxt - close) / close
    return {
        "symbol": symbol,
        "date": date,
        "close": close,
        "momentum_3m": momentum,
        "market_return": market["market_return"],
        "vix": market["vix"],
        "flow": flow,
        "label": 1 if forward - market["market_return"] > 0 else 0,
    }
