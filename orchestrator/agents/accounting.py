"""Token accounting and cost: per-step usage summed per episode, priced from a table.

Every provider reports usage in the same four counts (the keys of ``Step.usage``):

- ``input``: all prompt tokens, cached ones included;
- ``cached``: the part of ``input`` served from the provider's prompt cache;
- ``output``: all generated tokens, reasoning included;
- ``reasoning``: the part of ``output`` spent on reasoning or thinking.

So a cost is ``(input - cached) * input price + cached * cached price + output * output
price``, the same arithmetic for every provider. Prices are USD per million tokens; the
defaults below are list prices at the time of writing and are meant to be overridden
(``FARM_PRICES``, see the README) rather than trusted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.transcript import Step

USAGE_KEYS = ("input", "output", "cached", "reasoning")


class ModelPrice(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached: float | None = Field(default=None, ge=0)  # None: cached tokens cost as input


def _price(input: float, output: float, cached: float) -> ModelPrice:
    return ModelPrice(input=input, output=output, cached=cached)


# Keyed by the model name as the API knows it; a dated name (claude-3-7-sonnet-20250219)
# takes the price of the longest key it starts with.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-4.1": _price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": _price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": _price(0.10, 0.40, 0.025),
    "gpt-4o": _price(2.50, 10.00, 1.25),
    "gpt-4o-mini": _price(0.15, 0.60, 0.075),
    "o3": _price(2.00, 8.00, 0.50),
    "o3-mini": _price(1.10, 4.40, 0.55),
    "o4-mini": _price(1.10, 4.40, 0.275),
    "gpt-5": _price(1.25, 10.00, 0.125),
    "gpt-5-mini": _price(0.25, 2.00, 0.025),
    "gpt-5-nano": _price(0.05, 0.40, 0.005),
    "claude-3-opus": _price(15.00, 75.00, 1.50),
    "claude-3-5-haiku": _price(0.80, 4.00, 0.08),
    "claude-3-7-sonnet": _price(3.00, 15.00, 0.30),
    "claude-sonnet-4": _price(3.00, 15.00, 0.30),
    "claude-opus-4": _price(15.00, 75.00, 1.50),
    "claude-opus-4-5": _price(5.00, 25.00, 0.50),
    "claude-haiku-4-5": _price(1.00, 5.00, 0.10),
}


@dataclass(frozen=True)
class TokenTotals:
    input: int = 0
    output: int = 0
    cached: int = 0
    reasoning: int = 0

    @classmethod
    def of(cls, usages: Iterable[Mapping[str, int]]) -> TokenTotals:
        sums = dict.fromkeys(USAGE_KEYS, 0)
        for usage in usages:
            for key in USAGE_KEYS:
                sums[key] += int(usage.get(key) or 0)
        return cls(**sums)

    @property
    def total(self) -> int:
        """What a token budget counts: every token sent and generated."""
        return self.input + self.output

    def cost(self, price: ModelPrice) -> float:
        cached_price = price.input if price.cached is None else price.cached
        uncached = max(self.input - self.cached, 0)
        dollars = uncached * price.input + self.cached * cached_price + self.output * price.output
        return round(dollars / 1_000_000, 6)


def price_for(model: str, prices: Mapping[str, ModelPrice]) -> ModelPrice | None:
    """The price of ``model`` (``provider/name``): the whole string, the name, or a prefix."""
    name = model.split("/", 1)[-1]
    for key in (model, name):
        if key in prices:
            return prices[key]
    prefixes = [k for k in prices if name.startswith(k)]
    return prices[max(prefixes, key=len)] if prefixes else None


def episode_accounting(
    model: str, steps: Iterable[Step], prices: Mapping[str, ModelPrice]
) -> dict[str, int | float | None]:
    """The episode's token totals and cost, as columns of the episode row.

    The cost is None when the model has no price (a local model, or one missing from the
    table): unknown, not free.
    """
    totals = TokenTotals.of(step.usage for step in steps)
    price = price_for(model, prices)
    return {
        "input_tokens": totals.input,
        "output_tokens": totals.output,
        "cached_tokens": totals.cached,
        "reasoning_tokens": totals.reasoning,
        "cost_usd": None if price is None else totals.cost(price),
    }
