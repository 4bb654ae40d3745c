"""``GET /scenarios`` and ``GET /personas``: what a campaign may name, read from the catalogue
the app loaded at start (the same one campaign specs are checked against)."""

from __future__ import annotations

from fastapi import APIRouter

from orchestrator.api.deps import FarmDep
from orchestrator.api.schemas import PersonaOut, ScenarioOut

router = APIRouter(tags=["catalogue"])


@router.get("/scenarios")
def list_scenarios(farm: FarmDep) -> list[ScenarioOut]:
    """Every scenario with its variants and the trajectories ``scripted/NAME`` can replay."""
    return [ScenarioOut.of(s) for s in farm.scenarios.values()]


@router.get("/personas")
def list_personas(farm: FarmDep) -> list[PersonaOut]:
    """Every persona's id, name and character paragraph (the shared instructions are left
    out: they are the same for all)."""
    return [PersonaOut.of(p) for p in farm.personas.values()]
