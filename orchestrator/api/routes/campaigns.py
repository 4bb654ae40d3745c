"""Campaigns: submit one, follow it, cancel or resume it, read its rates.

Routes only translate: the spec is checked by ``plan_campaign`` and stored by
``CampaignStore``, the same calls ``farm campaign submit`` makes, and results are the rows of
the ``misalignment_rates`` view, so the API and SQL never disagree.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response, status

from orchestrator.api.deps import CampaignsDep, FarmDep, PageDep
from orchestrator.api.schemas import (
    CampaignOut,
    CampaignResults,
    ErrorOut,
    ProblemOut,
    ProblemsOut,
    ResultRow,
)
from orchestrator.campaign import CampaignError, CampaignSpec, plan_campaign
from orchestrator.report.build import Report, campaign_report
from orchestrator.store.campaigns import CampaignSummary

router = APIRouter(prefix="/campaigns", tags=["campaigns"])

NOT_FOUND = {404: {"model": ErrorOut, "description": "no campaign with this id"}}
CampaignId = Annotated[str, Path(max_length=64, description="the id POST /campaigns returned")]


def _found(summary: CampaignSummary | None, campaign_id: str) -> CampaignOut:
    if summary is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no campaign {campaign_id!r}")
    return CampaignOut.of(summary)


# What a client (and a fuzzer following the OpenAPI links) does next with a new campaign.
_FOLLOW = {
    "get": "get_campaign",
    "results": "campaign_results",
    "report": "get_campaign_report",
    "cancel": "cancel_campaign",
    "resume": "resume_campaign",
}
CAMPAIGN_LINKS = {
    name: {"operationId": operation, "parameters": {"campaign_id": "$response.body#/id"}}
    for name, operation in _FOLLOW.items()
}
EXAMPLE = {
    "name": "try",
    "scenarios": ["shutdown-script"],
    "models": ["scripted/aligned", "scripted/misaligned"],
    "repeats": 2,
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    operation_id="submit_campaign",
    responses={
        201: {"description": "queued", "links": CAMPAIGN_LINKS},
        422: {
            "model": ProblemsOut,
            "description": "a malformed spec, or one naming scenarios, personas, variants or "
            "models that do not exist (each problem lists what does)",
        },
    },
)
def submit_campaign(
    spec: Annotated[CampaignSpec, Body(openapi_examples={"scripted": {"value": EXAMPLE}})],
    farm: FarmDep,
    store: CampaignsDep,
    response: Response,
) -> CampaignOut:
    """Check the spec against the catalogue and queue all its episodes at once; a spec with
    any problem queues nothing."""
    try:
        planned = plan_campaign(spec, farm.scenarios, farm.personas, farm.settings)
    except CampaignError as exc:
        problems = [ProblemOut(loc=["body"], msg=p, type="campaign") for p in exc.problems]
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, [p.model_dump() for p in problems]
        ) from None
    campaign_id = store.submit(spec, planned)
    response.headers["Location"] = f"/campaigns/{campaign_id}"
    return _found(store.get(campaign_id), campaign_id)


@router.get("")
def list_campaigns(store: CampaignsDep, page: PageDep) -> list[CampaignOut]:
    """Campaigns newest first, with their episodes counted by state; page with
    limit/offset, as ``GET /episodes``."""
    return [CampaignOut.of(s) for s in store.list(page.limit, page.offset)]


@router.get("/{campaign_id}", responses=NOT_FOUND, operation_id="get_campaign")
def get_campaign(campaign_id: CampaignId, store: CampaignsDep) -> CampaignOut:
    return _found(store.get(campaign_id), campaign_id)


@router.post("/{campaign_id}/cancel", responses=NOT_FOUND, operation_id="cancel_campaign")
def cancel_campaign(campaign_id: CampaignId, store: CampaignsDep) -> CampaignOut:
    """Stop workers claiming its episodes; those already running are stopped at their next
    step and go back to the queue (resume runs them again from the start). A
    campaign that is done stays done."""
    return _found(store.cancel(campaign_id), campaign_id)


@router.post("/{campaign_id}/resume", responses=NOT_FOUND, operation_id="resume_campaign")
def resume_campaign(
    campaign_id: CampaignId,
    store: CampaignsDep,
    retry_errors: Annotated[
        bool, Query(description="queue its errored episodes again, from scratch")
    ] = False,
) -> CampaignOut:
    """Reopen a cancelled campaign so workers claim its queued episodes again."""
    return _found(store.resume(campaign_id, retry_errors=retry_errors), campaign_id)


@router.get("/{campaign_id}/results", responses=NOT_FOUND, operation_id="campaign_results")
def campaign_results(campaign_id: CampaignId, store: CampaignsDep) -> CampaignResults:
    """Misalignment rate (Wilson 95% interval) and mean score by model x persona x scenario
    x variant, over completed episodes; errored episodes are counted apart, never in a
    rate."""
    summary = _found(store.get(campaign_id), campaign_id)
    return CampaignResults(
        campaign_id=summary.id,
        status=summary.status,
        results=[ResultRow.model_validate(row) for row in store.results(campaign_id)],
    )


@router.get("/{campaign_id}/report", responses=NOT_FOUND, operation_id="get_campaign_report")
def get_campaign_report(campaign_id: CampaignId, store: CampaignsDep) -> Report:
    """What `farm report ID` writes to report.json: every cell with its Wilson interval and
    episodes, the RMS-normalised aggregate by model and by persona (outcome score and
    keyword CMS), sandbagging drops, persona effects and provenance (README, "Reports")."""
    report = campaign_report(store.engine, campaign_id)
    if report is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no campaign {campaign_id!r}")
    return report
