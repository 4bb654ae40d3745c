"""The pages under ``/ui/``: campaigns, a campaign's results, episodes, one episode whole.

Routes only read the stores and the report (``CampaignStore``, ``EpisodeStore``,
``orchestrator/report``) and hand what they get to a template; the API's routes read the
same calls, so a page and ``GET /episodes/{id}`` never disagree. Every page but the login
form and the static files needs the session cookie (``auth.require_session``); the two
buttons that change a campaign (cancel, resume) and sign-out are POSTs that also check the
request's origin. The token only ever travels in the login form's body: no page puts it,
or the session, into a URL.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Query, Request, status
from fastapi.responses import RedirectResponse, Response

from orchestrator.api.deps import CampaignsDep, EpisodesDep, FarmDep
from orchestrator.report import figures
from orchestrator.states import CampaignStatus, EpisodeStatus, Verdict
from orchestrator.web import auth
from orchestrator.web.episode_view import episode_view
from orchestrator.web.results import Selection, campaign_results, campaign_times
from orchestrator.web.static import STATIC, static_response
from orchestrator.web.templating import page

log = logging.getLogger("farm.web")

PAGE_SIZE = 50
# How often the campaign pages reload themselves while something runs (the campaign's own
# page, with its figures, half as often).
REFRESH_SECONDS = 15
Id = Annotated[str, Path(max_length=64)]
Filter = Annotated[str | None, Query(max_length=200)]
FIGURES = {"aggregate": figures.aggregate_figure, "heatmap": figures.heatmap_figure}
# What each state allows: the buttons a campaign's row shows.
CANCELLABLE = {CampaignStatus.PENDING, CampaignStatus.RUNNING, CampaignStatus.PAUSED}
RESUMABLE = {CampaignStatus.CANCELLED, CampaignStatus.PAUSED, CampaignStatus.DONE}

router = APIRouter(prefix="/ui", include_in_schema=False)
pages = APIRouter(dependencies=[Depends(auth.require_session)], route_class=auth.SessionRoute)


def _common(request: Request) -> dict[str, object]:
    return {
        "path": request.url.path,
        "signed_in": True,
        "refresh_seconds": REFRESH_SECONDS,
    }


def _back(target: str | None, fallback: str) -> RedirectResponse:
    return RedirectResponse(
        auth.safe_next(target) if target else fallback, status.HTTP_303_SEE_OTHER
    )


def _blank(value: str | None) -> str | None:
    """An empty filter field is no filter."""
    return value or None


# -- sign-in ---------------------------------------------------------------------------------


def _login_page(
    request: Request, farm: FarmDep, next: str | None, error: str | None = None
) -> Response:
    return page(
        "login.html",
        status_code=status.HTTP_401_UNAUTHORIZED if error else status.HTTP_200_OK,
        path=request.url.path,
        signed_in=False,
        next=auth.safe_next(next),
        error=error,
        configured=farm.settings.api_token is not None,
    )


@router.get("/login")
def login_form(request: Request, farm: FarmDep, next: Filter = None) -> Response:
    if auth.session_valid(farm, request.cookies.get(auth.COOKIE)):
        return _back(next, auth.HOME)
    return _login_page(request, farm, next)


@router.post("/login", dependencies=[Depends(auth.require_same_origin)])
def login(
    request: Request,
    farm: FarmDep,
    token: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2000)] = auth.HOME,
) -> Response:
    if not auth.token_matches(farm, token):
        log.warning("a sign-in to the pages from %s with a wrong token", request.client)
        return _login_page(request, farm, next, "That is not this server's token (FARM_API_TOKEN).")
    response = _back(next, auth.HOME)
    auth.set_session(response, request, auth.session_value(farm))
    return response


@router.post("/logout", dependencies=[Depends(auth.require_same_origin)])
def logout(request: Request) -> Response:
    response = RedirectResponse(auth.LOGIN, status.HTTP_303_SEE_OTHER)
    auth.clear_session(response, request)
    return response


@router.get("/static/{name}")
def static_file(name: Annotated[str, Path(max_length=64)]) -> Response:
    return static_response(name) if name in STATIC else Response(status_code=404)


# -- campaigns -------------------------------------------------------------------------------


@pages.get("/")
def campaigns_page(request: Request, store: CampaignsDep) -> Response:
    campaigns = store.list()
    times = campaign_times(store.engine, [c.id for c in campaigns])
    return page(
        "campaigns.html",
        **_common(request),
        campaigns=campaigns,
        times=times,
        cancellable=CANCELLABLE,
        resumable=RESUMABLE,
    )


@pages.post("/campaigns/{campaign_id}/cancel", dependencies=[Depends(auth.require_same_origin)])
def cancel(
    campaign_id: Id, store: CampaignsDep, back: Annotated[str | None, Form()] = None
) -> Response:
    if store.cancel(campaign_id) is None:
        return Response("no such campaign", status_code=404, media_type="text/plain")
    return _back(back, auth.HOME)


@pages.post("/campaigns/{campaign_id}/resume", dependencies=[Depends(auth.require_same_origin)])
def resume(
    campaign_id: Id,
    store: CampaignsDep,
    back: Annotated[str | None, Form()] = None,
    retry_errors: Annotated[bool, Form()] = False,
    cost_limit_usd: Annotated[float | None, Form(gt=0, allow_inf_nan=False)] = None,
) -> Response:
    resumed = store.resume(campaign_id, retry_errors=retry_errors, cost_limit_usd=cost_limit_usd)
    if resumed is None:
        return Response("no such campaign", status_code=404, media_type="text/plain")
    return _back(back, auth.HOME)


def _selection(
    model: Filter = None, persona: Filter = None, scenario: Filter = None, variant: Filter = None
) -> Selection:
    """The cells a campaign's page and its figures show, from the page's filters."""
    return Selection(_blank(model), _blank(persona), _blank(scenario), _blank(variant))


Chosen = Annotated[Selection, Depends(_selection)]


@pages.get("/campaigns/{campaign_id}")
def campaign_page(
    request: Request,
    campaign_id: Id,
    store: CampaignsDep,
    selection: Chosen,
) -> Response:
    results = campaign_results(store.engine, campaign_id, selection)
    summary = store.get(campaign_id)
    if results is None or summary is None:
        return page("missing.html", 404, **_common(request), what="campaign", id=campaign_id)
    return page(
        "campaign.html",
        **_common(request),
        summary=summary,
        results=results,
        report=results.report,
        selection=selection,
        episodes_query={"campaign": campaign_id, **selection.query()},
        times=campaign_times(store.engine, [campaign_id])[campaign_id],
        cancellable=CANCELLABLE,
        resumable=RESUMABLE,
    )


@pages.get("/campaigns/{campaign_id}/figures/{name}.png")
def campaign_figure(
    campaign_id: Id,
    name: Annotated[str, Path(max_length=32)],
    store: CampaignsDep,
    selection: Chosen,
) -> Response:
    """Figure 1 or the heatmap of the selected cells, drawn by the report's own code."""
    draw = FIGURES.get(name)
    results = campaign_results(store.engine, campaign_id, selection) if draw else None
    if draw is None or results is None:
        return Response(status_code=404)
    png = figures.png_bytes(draw(results.report))
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


# -- episodes --------------------------------------------------------------------------------


@pages.get("/episodes")
def episodes_page(
    request: Request,
    farm: FarmDep,
    store: EpisodesDep,
    campaigns: CampaignsDep,
    campaign: Annotated[str | None, Query(max_length=64)] = None,
    model: Filter = None,
    persona: Filter = None,
    scenario: Filter = None,
    variant: Filter = None,
    verdict: Filter = None,
    status: Filter = None,
    page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    filters = {
        "campaign_id": _blank(campaign),
        "model": _blank(model),
        "persona": _blank(persona),
        "scenario": _blank(scenario),
        "variant": _blank(variant),
        "verdict": _blank(verdict),
        "status": _blank(status),
    }
    rows = store.search(PAGE_SIZE + 1, (page_number - 1) * PAGE_SIZE, **filters)
    shown = {k: v for k, v in filters.items() if v is not None}
    query = {("campaign" if k == "campaign_id" else k): v for k, v in shown.items()}
    names = {c.id: c.name for c in campaigns.list()}
    return page(
        "episodes.html",
        **_common(request),
        rows=rows[:PAGE_SIZE],
        more=len(rows) > PAGE_SIZE,
        page_number=page_number,
        filters=filters,
        query=query,
        campaigns=names,
        scenarios=sorted(farm.scenarios),
        personas=list(farm.personas),
        variants=sorted({v.id for s in farm.scenarios.values() for v in s.spec.variants}),
        verdicts=[v.value for v in Verdict],
        statuses=[s.value for s in EpisodeStatus],
    )


@pages.get("/episodes/{episode_id}")
def episode_page(
    request: Request,
    episode_id: Id,
    farm: FarmDep,
    store: EpisodesDep,
    finding: Annotated[int | None, Query(ge=0, le=100_000)] = None,
) -> Response:
    stored = store.get(episode_id)
    if stored is None:
        return page("missing.html", 404, **_common(request), what="episode", id=episode_id)
    scenario = farm.scenarios.get(stored.episode.scenario)
    return page(
        "episode.html",
        **_common(request),
        view=episode_view(stored, finding),
        ep=stored.episode,
        task=scenario.spec.task if scenario else None,
        live=stored.episode.status in (EpisodeStatus.QUEUED, EpisodeStatus.RUNNING),
    )


router.include_router(pages)
