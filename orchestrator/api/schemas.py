"""What the API accepts and returns, kept apart from the ORM models (orchestrator/store/models.py)
so a column can be renamed or added without changing the API, and the OpenAPI document
describes exactly what a client sees.

The request body of ``POST /campaigns`` is :class:`orchestrator.campaign.CampaignSpec` itself:
one model validates the campaign file, the CLI and the API alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.scenarios.loader import Scenario
from orchestrator.scenarios.spec import PersonaSpec
from orchestrator.states import CampaignStatus, EpisodeStatus, Verdict
from orchestrator.store.campaigns import CampaignSummary
from orchestrator.store.episodes import StoredEpisode


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorOut(BaseModel):
    detail: str


class ProblemOut(BaseModel):
    """One reason a request cannot be served, shaped like FastAPI's own validation errors so
    a client reads both kinds of 422 the same way."""

    loc: list[str | int]
    msg: str
    type: str


class ProblemsOut(BaseModel):
    detail: list[ProblemOut]


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"]


# -- campaigns ---------------------------------------------------------------------------------


class EpisodeCounts(BaseModel):
    """A campaign's episodes by state."""

    queued: int = 0
    running: int = 0
    completed: int = 0
    error: int = 0


class CampaignOut(BaseModel):
    id: str
    name: str
    # `paused`: its recorded spend reached its cost limit (status_reason says so).
    status: CampaignStatus
    created_at: datetime
    episodes: int = Field(description="all of the campaign's episodes")
    counts: EpisodeCounts
    spec: dict[str, Any] = Field(description="the campaign spec as submitted, defaults filled")
    cost_usd: float = Field(0.0, description="recorded spend: the episodes' cost_usd, summed")
    cost_limit_usd: float | None = Field(
        None, description="the cost limit in force: the spec's, or raised by a resume"
    )
    status_reason: str | None = Field(None, description="why the campaign is paused")

    @classmethod
    def of(cls, summary: CampaignSummary) -> CampaignOut:
        return cls(
            id=summary.id,
            name=summary.name,
            status=summary.status,  # type: ignore[arg-type]
            created_at=summary.created_at,
            episodes=summary.episodes,
            counts=EpisodeCounts(**summary.counts),
            spec=summary.spec,
            cost_usd=summary.cost_usd,
            cost_limit_usd=summary.cost_limit_usd,
            status_reason=summary.status_reason,
        )


class ResultRow(BaseModel):
    """One cell of the ``misalignment_rates`` view: the rate over completed episodes with its
    Wilson 95% interval (null while a cell has no completed episode), and the errors left out
    of it."""

    model: str
    persona: str
    scenario: str
    variant: str
    episodes: int = Field(description="completed episodes, the rate's denominator")
    misaligned: int
    rate: float | None
    ci_low: float | None
    ci_high: float | None
    mean_score: float | None
    errors: int = Field(description="episodes that failed for infrastructure reasons")


class CampaignResults(BaseModel):
    campaign_id: str
    status: CampaignStatus = Field(description="the numbers are final once this is `done`")
    results: list[ResultRow]


# -- episodes ----------------------------------------------------------------------------------


class EpisodeSummary(Schema):
    id: str
    campaign_id: str | None
    scenario: str
    variant: str
    model: str
    persona: str
    # `pending` is a single `farm run` episode being written; campaign episodes start `queued`.
    status: EpisodeStatus
    verdict: Verdict | None
    repeat: int
    score: float | None
    attempts: int
    created_at: datetime
    finished_at: datetime | None


class StepOut(Schema):
    """One event of the transcript: an agent turn's text, a command and its output, or the
    submitted answer."""

    index: int = Field(validation_alias="idx")
    turn: int
    kind: str
    started_at: datetime
    duration_s: float
    text: str | None
    reasoning: str | None
    command: str | None
    stdout: str | None
    stderr: str | None
    exit_code: int | None
    timed_out: bool
    truncated: bool
    answer: str | None
    observation: str | None
    usage: dict[str, Any]


class StateChangeOut(Schema):
    """One difference between the container's baseline and final state, seen from the host."""

    index: int = Field(validation_alias="idx")
    subject: str = Field(description="file, path (layer diff only) or process")
    change: str = Field(description="added, modified, deleted, mode, owner, started or gone")
    path: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class FindingOut(Schema):
    index: int = Field(validation_alias="idx")
    detector: str
    kind: str
    behavior: str
    severity: str
    signal: str = Field(description="action (the agent did it) or intent (the agent said it)")
    role: str = Field(
        description="verdict (decides the verdict) or supporting (adds to the score only)"
    )
    description: str
    step: int | None
    evidence: dict[str, Any]
    score: float | None


class EpisodeOut(EpisodeSummary):
    trajectory: str | None
    error: str | None
    turns: int
    ended_by: str | None
    answer: str | None
    image: str | None
    settings: dict[str, Any] = Field(description="what was sent to the model, and what not")
    metrics: dict[str, Any] | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    cms_score: float | None
    cms: dict[str, Any] | None
    started_at: datetime | None


class EpisodeDetail(EpisodeOut):
    steps: list[StepOut] = Field(description="the transcript")
    state_changes: list[StateChangeOut] = Field(description="the state diff")
    findings: list[FindingOut]

    @classmethod
    def of(cls, stored: StoredEpisode) -> EpisodeDetail:
        return cls(
            **EpisodeOut.model_validate(stored.episode).model_dump(),
            steps=[StepOut.model_validate(s) for s in stored.steps],
            state_changes=[StateChangeOut.model_validate(c) for c in stored.changes],
            findings=[FindingOut.model_validate(f) for f in stored.findings],
        )


# -- catalogue ---------------------------------------------------------------------------------


class VariantOut(BaseModel):
    id: str
    description: str


class ScenarioOut(BaseModel):
    id: str
    title: str
    category: str = Field(description="the behaviour the scenario measures")
    description: str
    variants: list[VariantOut] = Field(description="the first is the default")
    trajectories: list[str] = Field(description="NAME for the model scripted/NAME")

    @classmethod
    def of(cls, scenario: Scenario) -> ScenarioOut:
        spec = scenario.spec
        variants = [spec.variant(v) for v in spec.variant_ids()]
        return cls(
            id=spec.id,
            title=spec.title,
            category=spec.category,
            description=spec.description.strip(),
            variants=[VariantOut(id=v.id, description=v.description) for v in variants],
            trajectories=scenario.trajectory_names(),
        )


class PersonaOut(BaseModel):
    id: str
    name: str
    character: str = Field(description="the personality paragraph; empty for the baseline")

    @classmethod
    def of(cls, persona: PersonaSpec) -> PersonaOut:
        return cls(id=persona.id, name=persona.name, character=persona.character)
