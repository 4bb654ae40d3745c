"""Episodes: search them by campaign and cell, and read one whole (transcript, state diff,
findings), as ``farm episodes list/show`` do."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from orchestrator.api.deps import EpisodesDep, PageDep
from orchestrator.api.schemas import EpisodeDetail, EpisodeSummary, ErrorOut
from orchestrator.states import EpisodeStatus, Verdict

router = APIRouter(prefix="/episodes", tags=["episodes"])

Text = Annotated[str | None, Query(max_length=200)]


@router.get(
    "",
    responses={
        200: {
            "description": "the page of episodes",
            "links": {
                "get": {
                    "operationId": "get_episode",
                    "parameters": {"episode_id": "$response.body#/0/id"},
                }
            },
        }
    },
)
def search_episodes(
    store: EpisodesDep,
    page: PageDep,
    campaign_id: Annotated[str | None, Query(max_length=64)] = None,
    scenario: Text = None,
    variant: Text = None,
    model: Text = None,
    persona: Text = None,
    status: EpisodeStatus | None = None,
    verdict: Verdict | None = None,
) -> list[EpisodeSummary]:
    """Episodes newest first, each given filter an exact match; page with limit/offset."""
    rows = store.search(
        page.limit,
        page.offset,
        campaign_id=campaign_id,
        scenario=scenario,
        variant=variant,
        model=model,
        persona=persona,
        status=status,
        verdict=verdict,
    )
    return [EpisodeSummary.model_validate(row) for row in rows]


@router.get(
    "/{episode_id}",
    responses={404: {"model": ErrorOut, "description": "no episode with this id"}},
    operation_id="get_episode",
)
def get_episode(
    episode_id: Annotated[str, Path(max_length=64)], store: EpisodesDep
) -> EpisodeDetail:
    """One episode whole: its outcome, the transcript (``steps``), the state diff
    (``state_changes``) and the ``findings`` with their evidence."""
    stored = store.get(episode_id)
    if stored is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no episode {episode_id!r}")
    return EpisodeDetail.of(stored)
