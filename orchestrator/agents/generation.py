"""Generation settings: how a model is asked to answer, chosen per episode and recorded on it.

They sit apart from the providers so that settings (the defaults) and the CLI (the
overrides) can name them without importing an SDK. Every field is optional: ``None`` means
"the provider's default", and a provider that cannot honour a field says so in what it
records, rather than failing the episode.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ReasoningEffort = Literal["minimal", "low", "medium", "high", "xhigh", "max"]


class GenerationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, gt=0)  # per turn, reasoning included
    seed: int | None = None
    # OpenAI's reasoning_effort; Anthropic's output_config.effort.
    reasoning_effort: ReasoningEffort | None = None
    # Anthropic extended thinking: a token budget (>= 1024), or "adaptive" to let the model
    # decide. Off when None.
    thinking: int | Literal["adaptive"] | None = None

    def merged(self, overrides: GenerationSettings) -> GenerationSettings:
        """These settings with every field ``overrides`` sets taken from it."""
        return self.model_copy(update=overrides.model_dump(exclude_none=True))

    def given(self) -> dict[str, object]:
        """The fields that are set, as they are recorded on an episode."""
        return self.model_dump(exclude_none=True)
