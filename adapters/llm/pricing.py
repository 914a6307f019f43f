"""Cost from tokens when an agent reports tokens but no cost: genai-prices' bundled price table.

A reported cost always wins. The computed one names the table (`genai-prices <version>`) in the
recorded usage: replay reads the recorded figure and never prices again, so a newer table
cannot change an old run. Without the `llm` extra, or for a model the table does not know, the
cost stays 0 with no source, rather than a guess.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["price_tokens", "priced"]


def price_tokens(
    model: str, *, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0,
    cache_write_tokens: int = 0, provider: str | None = None,
) -> tuple[float, str] | None:
    """(cost in USD, source) for these tokens, or None when no price is known."""
    try:
        import genai_prices
    except ImportError:
        return None
    provider_id, _, name = model.rpartition(":")
    usage = genai_prices.Usage(
        input_tokens=input_tokens, output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens or None, cache_write_tokens=cache_write_tokens or None,
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            chosen = provider or provider_id or None
            price = genai_prices.calc_price(usage, name, provider_id=chosen)
    except LookupError:
        return None
    return float(price.total_price), f"genai-prices {genai_prices.__version__}"


def priced(usage: dict[str, Any]) -> dict[str, Any]:
    """A v2 usage payload with `cost_usd` computed from its tokens, when it reported none."""
    model = usage.get("model")
    if not model or usage.get("input_tokens") is None or usage.get("output_tokens") is None:
        return usage
    found = price_tokens(
        model, input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"],
        cache_read_tokens=usage.get("cache_read_tokens") or 0,
        cache_write_tokens=usage.get("cache_write_tokens") or 0,
    )
    if found is None:
        return usage
    cost, source = found
    return {**usage, "cost_usd": round(cost, 9), "cost_source": source}
