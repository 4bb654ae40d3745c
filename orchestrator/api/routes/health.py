"""``GET /health``: the one route without a token, for load balancers and orchestrators; it
says only whether the database answers, nothing about what is in it."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from orchestrator.api.deps import FarmDep
from orchestrator.api.schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    responses={503: {"model": HealthOut, "description": "the database does not answer"}},
)
def health(farm: FarmDep, response: Response) -> HealthOut:
    if farm.database.answers():
        return HealthOut(status="ok")
    response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return HealthOut(status="unavailable")
