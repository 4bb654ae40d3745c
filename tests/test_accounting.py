"""Token totals and cost: the same arithmetic for every provider, prices from settings."""

from __future__ import annotations

import json

import pytest

from orchestrator.agents.accounting import (
    DEFAULT_PRICES,
    ModelPrice,
    TokenTotals,
    episode_accounting,
    price_for,
)
from orchestrator.config import Settings


def test_cost_prices_cached_input_apart() -> None:
    totals = TokenTotals.of(
        [
            {"input": 1_000_000, "output": 100_000, "cached": 400_000, "reasoning": 5},
            {"input": 500_000, "output": 0},
            {},
        ]
    )
    assert totals == TokenTotals(input=1_500_000, output=100_000, cached=400_000, reasoning=5)
    price = ModelPrice(input=2.0, output=8.0, cached=0.5)
    assert totals.cost(price) == pytest.approx(1.1 * 2.0 + 0.4 * 0.5 + 0.1 * 8.0)
    # without a cached price, cached tokens cost as input
    assert totals.cost(ModelPrice(input=2.0, output=8.0)) == pytest.approx(1.5 * 2.0 + 0.8)


def test_prices_match_the_model_name_or_its_longest_prefix() -> None:
    prices = {**DEFAULT_PRICES, "vllm/qwen": ModelPrice(input=0, output=0)}
    assert price_for("openai/gpt-4.1", prices) == DEFAULT_PRICES["gpt-4.1"]
    assert price_for("openai/gpt-4.1-mini", prices) == DEFAULT_PRICES["gpt-4.1-mini"]
    dated = "anthropic/claude-3-7-sonnet-20250219"
    assert price_for(dated, prices) == DEFAULT_PRICES["claude-3-7-sonnet"]
    assert price_for("vllm/qwen", prices) == ModelPrice(input=0, output=0)
    assert price_for("ollama/llama3", prices) is None
    assert episode_accounting("ollama/llama3", [], prices)["cost_usd"] is None  # unknown, not free


def test_farm_prices_add_to_and_correct_the_defaults(monkeypatch) -> None:
    override = {"gpt-4.1": {"input": 1, "output": 1}, "my-model": {"input": 3, "output": 4}}
    monkeypatch.setenv("FARM_PRICES", json.dumps(override))
    prices = Settings().prices
    assert prices["gpt-4.1"] == ModelPrice(input=1, output=1)
    assert prices["my-model"] == ModelPrice(input=3, output=4)
    assert prices["o4-mini"] == DEFAULT_PRICES["o4-mini"]  # the rest are kept
