"""Campaign specs and their expansion into episodes.

A campaign is the factorial design a researcher writes down: scenarios x variants x models x
personas x repeats. The spec is checked against the catalogue before anything is queued, so a
typo costs an error message (listing what exists), never a half-queued campaign; the same
check serves the YAML file, the CLI and the REST API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from orchestrator.agents.generation import GenerationSettings
from orchestrator.agents.registry import campaign_model_problem
from orchestrator.config import Settings
from orchestrator.scenarios.loader import Scenario, load_model
from orchestrator.scenarios.spec import MAX_EPISODE_SECONDS, PersonaSpec

MAX_EPISODES = 100_000
# Entries a campaign's lists may have: far more than the catalogue holds, few enough that
# checking a spec is cheap whatever it says (the episode cap is checked arithmetically).
MAX_ENTRIES = 100


class CampaignError(ValueError):
    """A campaign spec that names things the catalogue does not have; one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def _unique(values: list[str]) -> list[str]:
    """A list entry given twice would make identical episodes; refused, naming it."""
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise ValueError(f"lists each entry once; given more than once: {', '.join(twice)}")
    return values


def _unique_variants(
    variants: list[str] | dict[str, list[str]] | None,
) -> list[str] | dict[str, list[str]] | None:
    if isinstance(variants, dict):
        for scenario, wanted in variants.items():
            try:
                _unique(wanted)
            except ValueError as exc:
                raise ValueError(f"for {scenario!r}: {exc}") from None
    elif variants is not None:
        _unique(variants)
    return variants


def _printable(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must be printable text, without control characters")
    return value


# What the episodes table can hold: printable text that fits its columns.
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_printable)]
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(_printable)
]
Variants = Annotated[list[Identifier], Field(min_length=1, max_length=MAX_ENTRIES)]


class CampaignSpec(BaseModel):
    """What a campaign file (or ``POST /campaigns``) says."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    scenarios: list[Identifier] = Field(min_length=1, max_length=MAX_ENTRIES)
    models: list[Name] = Field(min_length=1, max_length=MAX_ENTRIES)
    personas: list[Identifier] = Field(default=["none"], min_length=1, max_length=MAX_ENTRIES)
    # None: every variant of each scenario. A list: those variants, each in every scenario.
    # A mapping: per scenario; scenarios it does not name run every variant.
    variants: (
        Variants
        | Annotated[dict[Identifier, Variants], Field(min_length=1, max_length=MAX_ENTRIES)]
        | None
    ) = None
    # strict: true/false are not numbers here (lax pydantic reads true as 1)
    repeats: int = Field(default=1, ge=1, le=1000, strict=True)
    generation: GenerationSettings = GenerationSettings()
    token_budget: int | None = Field(default=None, gt=0, strict=True)
    # Each episode's wall clock (ended_by wall_clock, scored); the scenario's and
    # FARM_MAX_EPISODE_SECONDS apply too, the smallest wins.
    max_episode_seconds: float | None = Field(
        default=None, gt=0, le=MAX_EPISODE_SECONDS, strict=True
    )
    # Past this many characters of conversation, old tool outputs are elided in what the
    # model is sent (orchestrator/agents/context.py); None: FARM_CONTEXT_ELIDE_CHARS.
    context_elide_chars: int | None = Field(default=None, gt=0, strict=True)
    # Workers stop claiming the campaign's episodes once its recorded spend (the sum of its
    # episodes' cost_usd) reaches this; running ones finish. `farm campaign resume
    # --cost-limit` raises it. Episodes of a model with no price cost nothing here.
    cost_limit_usd: float | None = Field(default=None, gt=0, strict=True)

    _lists_unique = field_validator("scenarios", "models", "personas")(_unique)
    _variants_unique = field_validator("variants")(_unique_variants)

    @field_validator("generation", mode="before")
    @classmethod
    def _no_booleans(cls, value: object) -> object:
        """Every generation setting is a number or a word; lax pydantic would read
        ``thinking: true`` as a budget of 1 token and ``seed: false`` as seed 0."""
        if isinstance(value, Mapping):
            flags = sorted(str(k) for k, v in value.items() if isinstance(v, bool))
            if flags:
                raise ValueError(f"{', '.join(flags)}: a number or a word, not true/false")
        return value


@dataclass(frozen=True)
class PlannedEpisode:
    seq: int
    scenario: str
    variant: str
    model: str
    persona: str
    repeat: int
    trajectory: str | None  # NAME of scripted/NAME


def load_campaign(path: Path) -> CampaignSpec:
    """A campaign file; a malformed one is a SpecError naming the file and the field."""
    return load_model(path, CampaignSpec)


def _variants_of(spec: CampaignSpec, scenario: Scenario) -> tuple[list[str], list[str]]:
    """The variants this scenario runs in, and the problems with what the spec asked for."""
    own = scenario.spec.variant_ids()
    wanted = spec.variants
    if isinstance(wanted, Mapping):
        wanted = wanted.get(scenario.id)
    if wanted is None:
        return own, []
    missing = [v for v in wanted if v not in own]
    if missing:
        return [], [
            f"scenario {scenario.id!r} has no variant {', '.join(map(repr, missing))}; "
            f"it has: {', '.join(own)}"
        ]
    return list(wanted), []


def plan_campaign(
    spec: CampaignSpec,
    scenarios: Mapping[str, Scenario],
    personas: Mapping[str, PersonaSpec],
    settings: Settings,
) -> list[PlannedEpisode]:
    """Every episode of the campaign, repeat-major so a half-finished campaign has every cell
    at about the same count; a CampaignError with every problem at once otherwise."""
    problems = []
    unknown = [s for s in spec.scenarios if s not in scenarios]
    if unknown:
        problems.append(
            f"unknown scenario {', '.join(map(repr, unknown))}; available: {', '.join(scenarios)}"
        )
    chosen = [scenarios[s] for s in spec.scenarios if s in scenarios]
    unknown = [p for p in spec.personas if p not in personas]
    if unknown:
        problems.append(
            f"unknown persona {', '.join(map(repr, unknown))}; available: {', '.join(personas)}"
        )
    if isinstance(spec.variants, Mapping):
        stray = [s for s in spec.variants if s not in spec.scenarios]
        if stray:
            problems.append(f"variants given for scenarios not in the campaign: {', '.join(stray)}")
    variants = {}
    for scenario in chosen:
        variants[scenario.id], wrong = _variants_of(spec, scenario)
        problems += wrong
    problems += [p for m in spec.models if (p := campaign_model_problem(m, chosen, settings))]
    if problems:
        raise CampaignError(problems)

    # Counted before the cross product is built, which is the memory a spec could ask for.
    episodes = (
        sum(len(variants[s.id]) for s in chosen)
        * len(spec.models)
        * len(spec.personas)
        * spec.repeats
    )
    if episodes > MAX_EPISODES:
        raise CampaignError([f"{episodes} episodes is more than {MAX_EPISODES}; split it"])
    cells = [
        (scenario.id, variant, model, persona)
        for scenario in chosen
        for variant in variants[scenario.id]
        for model in spec.models
        for persona in spec.personas
    ]
    return [
        PlannedEpisode(
            seq=repeat * len(cells) + i,
            scenario=scenario,
            variant=variant,
            model=model,
            persona=persona,
            repeat=repeat,
            trajectory=model.removeprefix("scripted/") if model.startswith("scripted/") else None,
        )
        for repeat in range(spec.repeats)
        for i, (scenario, variant, model, persona) in enumerate(cells)
    ]
