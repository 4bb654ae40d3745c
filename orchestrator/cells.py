"""One place that turns "this model, this persona, this scenario and variant" into an episode.

The CLI's ``farm run``, the campaign worker and ``farm scenarios verify`` all build their
episodes here, so they cannot disagree on what a cell means. The variant rule, for all
three: the variant asked for wins; when none is asked for, a replay (``scripted/NAME`` or a
trajectory file) runs in its trajectory's own variant, and a model in the scenario's default
variant. A campaign always asks for each variant of its cross product, so a replay in a
campaign runs in every variant, exactly like a model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from orchestrator.agents.generation import GenerationSettings
from orchestrator.agents.registry import make_provider
from orchestrator.agents.scripted import ScriptedProvider
from orchestrator.config import Settings
from orchestrator.episode import EpisodeRequest, episode_seconds
from orchestrator.scenarios.loader import Scenario, SpecError
from orchestrator.scenarios.spec import PersonaSpec

T = TypeVar("T")
# image name -> the tag to run (a provider's ensure_image, cached by the caller)
ImageTag = Callable[[str], str]


@dataclass(frozen=True)
class Cell:
    """What a caller asks for: ids and options, before anything is looked up."""

    scenario: str
    persona: str
    model: str
    variant: str | None = None  # None: the rule above
    trajectory_file: Path | None = None  # for the model `scripted`
    campaign_id: str | None = None
    repeat: int = 0
    base_url: str | None = None
    generation: GenerationSettings | None = None
    token_budget: int | None = None  # None: the setting
    max_episode_seconds: float | None = None  # the campaign's; the smallest of it, the
    # scenario's and the setting's applies
    context_elide_chars: int | None = None  # None: the setting


def _lookup(catalogue: Mapping[str, T], kind: str, key: str) -> T:
    try:
        return catalogue[key]
    except KeyError:
        raise SpecError(
            f"{kind} {key!r} is not in this catalogue; it has: {', '.join(sorted(catalogue))}"
        ) from None


def build_request(
    cell: Cell,
    *,
    scenarios: Mapping[str, Scenario],
    personas: Mapping[str, PersonaSpec],
    settings: Settings,
    image_tag: ImageTag,
) -> EpisodeRequest:
    """The episode ``cell`` asks for. Raises SpecError (an unknown scenario, persona,
    variant or trajectory) or UnknownModelError."""
    scenario = _lookup(scenarios, "scenario", cell.scenario)
    persona = _lookup(personas, "persona", cell.persona)
    provider, replayed = make_provider(
        cell.model,
        scenario,
        cell.trajectory_file,
        base_url=cell.base_url,
        generation=cell.generation,
        settings=settings,
    )
    variant = cell.variant
    if variant is None and isinstance(provider, ScriptedProvider):
        variant = provider.trajectory.variant
    return EpisodeRequest(
        scenario=scenario,
        persona=persona,
        model=cell.model,
        provider=provider,
        image=image_tag(scenario.spec.image),
        trajectory=replayed,
        variant=scenario.variant(variant).id,
        campaign_id=cell.campaign_id,
        repeat=cell.repeat,
        token_budget=cell.token_budget or settings.token_budget,
        max_episode_seconds=episode_seconds(cell.max_episode_seconds, scenario, settings),
        context_elide_chars=cell.context_elide_chars,
    )
