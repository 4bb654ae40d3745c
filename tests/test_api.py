"""The REST API (``farm serve``): the real app through FastAPI's TestClient, over a real
Postgres (SQLite where the database does not matter), real scenario images and a real worker.
Nothing is mocked."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine

from orchestrator.api.app import create_app
from orchestrator.config import Settings
from orchestrator.store.db import ensure_schema, make_engine
from orchestrator.worker import Worker, WorkerStats
from tests.conftest import SHUTDOWN, run_farm

TOKEN = f"test-token-{uuid.uuid4().hex}"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Served without a token: the probe, and the docs (no data; the page is where a token goes).
OPEN = {"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}

# The misalignment_rates view computes the Wilson bounds in floating point and does not clamp
# them: at a rate of 0 its ci_low comes out as 5.6e-17, not 0.
ROUNDING = 1e-12

SMALL = {
    "name": "api-flow",
    "scenarios": [SHUTDOWN],
    "models": ["scripted/aligned", "scripted/misaligned"],
    "personas": ["none"],
    "repeats": 1,
}


@pytest.fixture(scope="module")
def api_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_token": SecretStr(TOKEN)})


@pytest.fixture
def pg_engine(postgres_url: str, settings: Settings) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    ensure_schema(engine, settings.migrations_dir)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_client(api_settings: Settings, pg_engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings, pg_engine), headers=AUTH) as client:
        yield client


@pytest.fixture
def sqlite_app(api_settings: Settings, sqlite_url: str) -> Iterator[FastAPI]:
    """The app on an empty SQLite file: create_app brings the schema current itself."""
    engine = make_engine(sqlite_url)
    yield create_app(api_settings, engine)
    engine.dispose()


def _routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, included routers flattened."""
    contexts = list(iter_route_contexts(app.routes))
    # a mount (static files, a sub-app) has no methods to try: make whoever adds one look here
    assert all(c.methods for c in contexts), [c.path for c in contexts if not c.methods]
    return {(m, c.path) for c in contexts for m in c.methods if m != "HEAD"}


def test_every_route_but_health_and_docs_needs_the_token(sqlite_app: FastAPI) -> None:
    routes = _routes(sqlite_app)
    # the pages under /ui/ sign in with a cookie of their own; tests/test_web.py walks them
    protected = {(m, p) for m, p in routes if p not in OPEN and not p.startswith("/ui/")}
    # the walk must see the routes behind included routers, or this test checks nothing
    assert {
        ("POST", "/campaigns"),
        ("GET", "/campaigns/{campaign_id}"),
        ("POST", "/campaigns/{campaign_id}/resume"),
        ("GET", "/episodes/{episode_id}"),
        ("GET", "/scenarios"),
        ("GET", "/personas"),
    } <= protected
    wrong = [
        {},
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer t\xe9st".encode("latin-1")},  # non-ASCII: 401, not a 500
    ]
    with TestClient(sqlite_app) as client:
        for method, path in sorted(protected):
            url = re.sub(r"\{[^}]+\}", "0" * 32, path)
            for headers in wrong:
                response = client.request(method, url, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["WWW-Authenticate"] == "Bearer"
                assert TOKEN not in response.text
        for path in OPEN:
            assert client.get(path).status_code == 200, path
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/campaigns", headers=AUTH).status_code == 200


def test_openapi_declares_the_bearer_scheme_on_protected_routes(sqlite_app: FastAPI) -> None:
    with TestClient(sqlite_app) as client:
        document = client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert [s["scheme"] for s in schemes.values()] == ["bearer"]
    (name,) = schemes
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            expected = [] if path == "/health" else [{name: []}]
            assert operation.get("security", []) == expected, (method, path)


def test_an_app_without_a_token_configured_refuses_every_request(
    settings: Settings, sqlite_url: str
) -> None:
    engine = make_engine(sqlite_url)
    app = create_app(settings.model_copy(update={"api_token": None}), engine)
    with TestClient(app) as client:
        assert client.get("/campaigns", headers={"Authorization": "Bearer "}).status_code == 401
        assert client.get("/campaigns", headers={"Authorization": "Bearer x"}).status_code == 401
        assert client.get("/health").status_code == 200
    engine.dispose()


def test_catalogue_lists_scenarios_and_personas(sqlite_app: FastAPI) -> None:
    with TestClient(sqlite_app, headers=AUTH) as client:
        scenarios = {s["id"]: s for s in client.get("/scenarios").json()}
        personas = {p["id"]: p for p in client.get("/personas").json()}
    shutdown = scenarios[SHUTDOWN]
    assert shutdown["category"] == "shutdown_resistance"
    assert [v["id"] for v in shutdown["variants"]] == ["default"]
    assert {"aligned", "misaligned"} <= set(shutdown["trajectories"])
    assert personas["none"]["character"] == ""
    assert personas["analyst"]["character"]
    assert set(personas["analyst"]) == {"id", "name", "character"}  # no system prompt


def _reasons(response: httpx.Response) -> str:
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else " | ".join(d["msg"] for d in detail)


BAD_CAMPAIGNS = [
    ({"scenarios": ["no-such-scenario"]}, "unknown scenario 'no-such-scenario'; available: "),
    ({"personas": ["pirate"]}, "unknown persona 'pirate'; available: none, analyst"),
    ({"variants": ["nope"]}, "has no variant 'nope'; it has: default"),
    ({"variants": {"other": ["x"]}}, "variants given for scenarios not in the campaign"),
    ({"models": ["gpt-5"]}, "unknown model 'gpt-5'; available: scripted/NAME"),
    ({"models": ["scripted/nope"]}, "trajectories every scenario of the campaign has: "),
    ({"repeats": 0}, "greater than or equal to 1"),
    ({"name": None}, "Field required"),
    ({"colour": "red"}, "Extra inputs are not permitted"),
    ({"scenarios": [SHUTDOWN, SHUTDOWN]}, "lists each entry once"),
    ({"generation": {"temperature": 9}}, "less than or equal to 2"),
    # values the catalogue allows but the database cannot hold
    ({"models": ["openai/" + "m" * 300]}, "at most 200 characters"),
    ({"name": "nul\x00byte"}, "without control characters"),
]


def test_a_bad_campaign_is_a_422_naming_the_problem(pg_client: TestClient) -> None:
    for change, reason in BAD_CAMPAIGNS:
        body = {k: v for k, v in {**SMALL, **change}.items() if v is not None}
        response = pg_client.post("/campaigns", json=body)
        assert response.status_code == 422, (change, response.text)
        assert reason in _reasons(response), change
    unknown = pg_client.post("/campaigns", json={**SMALL, "scenarios": ["no-such-scenario"]})
    assert SHUTDOWN in _reasons(unknown)  # it lists what exists
    malformed = pg_client.post(
        "/campaigns", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 422
    assert "JSON" in _reasons(malformed)
    assert pg_client.get("/campaigns").json() == []  # nothing was half-queued


BAD_REQUESTS = [
    ("POST", "/campaigns", 422),  # no body
    ("GET", "/campaigns/0123456789abcdef0123456789abcdef", 404),
    ("GET", "/campaigns/nope/results", 404),
    ("POST", "/campaigns/nope/cancel", 404),
    ("POST", "/campaigns/nope/resume", 404),
    ("POST", "/campaigns/nope/resume?retry_errors=perhaps", 422),
    ("GET", "/campaigns/" + "x" * 65, 422),
    ("GET", "/campaigns/nul%00", 422),
    ("GET", "/episodes/nope", 404),
    ("GET", "/episodes?status=finished", 422),
    ("GET", "/episodes?verdict=evil", 422),
    ("GET", "/episodes?limit=0", 422),
    ("GET", "/episodes?limit=501", 422),
    ("GET", "/episodes?offset=-1", 422),
    ("GET", "/episodes?offset=99999999999999999999", 422),
    ("GET", "/episodes?scenario=nul%00", 422),
]


def test_bad_ids_and_filters_are_4xx_with_a_reason(pg_client: TestClient) -> None:
    for method, url, status in BAD_REQUESTS:
        response = pg_client.request(method, url)
        assert response.status_code == status, (method, url, response.text)
        assert _reasons(response), (method, url)


def _submit(client: TestClient, **change: object) -> dict:
    response = client.post("/campaigns", json={**SMALL, **change})
    assert response.status_code == 201, response.text
    campaign = response.json()
    assert response.headers["Location"] == f"/campaigns/{campaign['id']}"
    return campaign


def _worker(settings: Settings, engine: Engine) -> Worker:
    return Worker(settings, engine, concurrency=2, exit_when_idle=True, lease_seconds=30)


def test_a_campaign_through_the_api_and_a_worker(
    pg_client: TestClient, pg_engine: Engine, settings: Settings, images: dict[str, str]
) -> None:
    campaign = _submit(pg_client)
    assert campaign["status"] == "pending"
    assert campaign["episodes"] == 2
    shown = pg_client.get(f"/campaigns/{campaign['id']}").json()
    assert shown["status"] == "pending"
    assert shown["counts"] == {"queued": 2, "running": 0, "completed": 0, "error": 0}
    assert shown["spec"]["models"] == SMALL["models"]
    assert [c["id"] for c in pg_client.get("/campaigns").json()] == [campaign["id"]]

    stats = _worker(settings, pg_engine).run()
    assert stats.completed == 2

    shown = pg_client.get(f"/campaigns/{campaign['id']}").json()
    assert shown["status"] == "done"
    assert shown["counts"] == {"queued": 0, "running": 0, "completed": 2, "error": 0}

    results = pg_client.get(f"/campaigns/{campaign['id']}/results").json()
    assert results["status"] == "done"
    rows = {row["model"]: row for row in results["results"]}
    assert set(rows) == set(SMALL["models"])
    for model, rate in (("scripted/misaligned", 1.0), ("scripted/aligned", 0.0)):
        row = rows[model]
        assert (row["persona"], row["scenario"], row["variant"]) == ("none", SHUTDOWN, "default")
        assert (row["episodes"], row["errors"]) == (1, 0)
        assert row["rate"] == rate
        assert row["misaligned"] == int(rate)
        assert row["ci_low"] <= rate + ROUNDING and rate - ROUNDING <= row["ci_high"]
        assert 0.0 <= row["ci_low"] < row["ci_high"] <= 1.0 + ROUNDING
    assert rows["scripted/misaligned"]["mean_score"] > 0
    assert rows["scripted/aligned"]["mean_score"] == 0

    listed = pg_client.get("/episodes", params={"campaign_id": campaign["id"]}).json()
    assert len(listed) == 2
    assert {e["status"] for e in listed} == {"completed"}
    assert {e["verdict"] for e in listed} == {"aligned", "misaligned"}
    narrowed = pg_client.get(
        "/episodes", params={"campaign_id": campaign["id"], "verdict": "misaligned"}
    ).json()
    assert [e["model"] for e in narrowed] == ["scripted/misaligned"]
    by_model = pg_client.get("/episodes", params={"model": "scripted/aligned"}).json()
    assert [e["verdict"] for e in by_model] == ["aligned"]
    assert pg_client.get("/episodes", params={"status": "error"}).json() == []
    assert len(pg_client.get("/episodes", params={"limit": 1}).json()) == 1
    assert len(pg_client.get("/episodes", params={"offset": 1}).json()) == 1

    episode = pg_client.get(f"/episodes/{narrowed[0]['id']}").json()
    assert episode["verdict"] == "misaligned"
    assert episode["campaign_id"] == campaign["id"]
    assert episode["steps"]
    assert [s["index"] for s in episode["steps"]] == list(range(len(episode["steps"])))
    assert any(s["command"] for s in episode["steps"])
    assert any(c["path"] == "/opt/maintenance/decommission.sh" for c in episode["state_changes"])
    behaviors = {f["behavior"] for f in episode["findings"] if f["signal"] == "action"}
    assert "shutdown_resistance" in behaviors


def test_a_cancelled_campaign_is_not_run_and_resumes_as_pending(
    pg_client: TestClient, pg_engine: Engine, settings: Settings
) -> None:
    campaign = _submit(pg_client)
    cancelled = pg_client.post(f"/campaigns/{campaign['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"

    assert _worker(settings, pg_engine).run() == WorkerStats()  # nothing claimed

    shown = pg_client.get(f"/campaigns/{campaign['id']}").json()
    assert shown["status"] == "cancelled"
    assert shown["counts"] == {"queued": 2, "running": 0, "completed": 0, "error": 0}
    episodes = pg_client.get("/episodes", params={"campaign_id": campaign["id"]}).json()
    assert [e["attempts"] for e in episodes] == [0, 0]

    resumed = pg_client.post(f"/campaigns/{campaign['id']}/resume", params={"retry_errors": True})
    assert resumed.status_code == 200
    assert resumed.json()["status"] == "pending"
    assert resumed.json()["counts"]["queued"] == 2


def test_health_is_503_while_the_database_does_not_answer(api_settings: Settings) -> None:
    # nothing listens on port 1: the app still starts, and says the database is down
    engine = make_engine("postgresql+psycopg://farm:farm@127.0.0.1:1/farm")
    with TestClient(create_app(api_settings, engine), headers=AUTH) as client:
        response = client.get("/health")
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable"}
        campaigns = client.get("/campaigns")
        assert campaigns.status_code == 503
        assert "database" in campaigns.json()["detail"]
        assert client.get("/scenarios").status_code == 200  # the catalogue needs no database
    engine.dispose()


def test_farm_serve_refuses_to_start_without_a_token() -> None:
    result = run_farm("serve", env={"FARM_API_TOKEN": ""})
    assert result.returncode == 2
    assert "set FARM_API_TOKEN" in result.stderr
