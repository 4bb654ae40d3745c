"""The API against hostile input (issue 12): bodies that are not strict JSON, bodies too
large (declared or chunked), unauthenticated bodies, specs that repeat entries or ask for too
many episodes, a locked SQLite, and timestamps without an offset. Real app, real Postgres
and SQLite, and a real uvicorn server where only a socket shows what was read."""

from __future__ import annotations

import re
import socket
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine

from orchestrator.api.app import create_app
from orchestrator.config import Settings
from orchestrator.store.db import ensure_schema, make_engine
from tests.conftest import SHUTDOWN, run_farm
from tests.test_api import AUTH, SMALL, TOKEN, _reasons

LIMIT = 8192  # bytes: small, so the tests send little, but above a 5000-digit number


@pytest.fixture(scope="module")
def limited(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_token": SecretStr(TOKEN), "api_max_body_bytes": LIMIT})


@pytest.fixture
def pg_app(limited: Settings, postgres_url: str) -> Iterator[FastAPI]:
    engine = make_engine(postgres_url)
    yield create_app(limited, engine)
    engine.dispose()


@pytest.fixture
def sqlite_app(limited: Settings, sqlite_url: str) -> Iterator[FastAPI]:
    engine = make_engine(sqlite_url)
    yield create_app(limited, engine)
    engine.dispose()


def _spec(**change: object) -> dict:
    return {**SMALL, "name": f"limits-{uuid.uuid4().hex[:8]}", **change}


# Each of these is valid JSON only to Python's lenient parser.
NOT_STRICT = [
    (b'"cost_limit_usd": NaN', "NaN is not a JSON number"),
    (b'"cost_limit_usd": Infinity', "Infinity is not a JSON number"),
    (b'"generation": {"temperature": -Infinity}', "-Infinity is not a JSON number"),
    (b'"cost_limit_usd": 1e400', "1e400 is too large for a double"),
    (b'"repeats": 1' + b"0" * 5000, "an integer of 5001 digits is too large"),
    (b'"name": "\\ud800"', "unpaired surrogate"),
    (b'"models": ["scripted/\\udfff"]', "unpaired surrogate"),
    (b'"\\ud800": 1', "unpaired surrogate"),  # a key
    (b'"colour": {"deep": [NaN]}', "NaN is not a JSON number"),  # where no field is
]


def _body(fragment: bytes) -> bytes:
    return b'{"scenarios": ["%s"], "models": ["scripted/aligned"], "name": "x", %s}' % (
        SHUTDOWN.encode(),
        fragment,
    )


def test_a_body_that_is_not_strict_json_is_a_422_with_the_reason(pg_app: FastAPI) -> None:
    with TestClient(pg_app, headers=AUTH) as client:
        for fragment, reason in NOT_STRICT:
            response = client.post(
                "/campaigns", content=_body(fragment), headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 422, (fragment[:40], response.text)
            assert reason in _reasons(response), fragment[:40]
        # a paired surrogate is an ordinary character (here U+1F600)
        emoji = client.post(
            "/campaigns",
            content=_body(b'"personas": ["none"]').replace(b'"x"', b'"\\ud83d\\ude00"'),
            headers={"Content-Type": "application/json"},
        )
        assert emoji.status_code == 201, emoji.text
        assert emoji.json()["name"] == "\U0001f600"
        assert [c["name"] for c in client.get("/campaigns").json()] == ["\U0001f600"]


def test_the_validation_error_handler_serialises_any_input(pg_app: FastAPI) -> None:
    """Input FastAPI echoes in its 422 but JSON cannot carry: bytes that are not UTF-8 (a
    body FastAPI does not parse as JSON), a very long value."""
    with TestClient(pg_app, headers=AUTH) as client:
        for content_type in ("text/plain", "application/octet-stream"):
            response = client.post(
                "/campaigns", content=b"\xff\xfe\x00junk", headers={"Content-Type": content_type}
            )
            assert response.status_code == 422, response.text
            assert response.json()["detail"]
        long = client.post("/campaigns", json=_spec(name="n" * 3000))
        assert long.status_code == 422
        assert "at most 200 characters" in _reasons(long)
        assert len(long.text) < 3000  # the echo is shortened, not the whole value


def test_a_value_postgres_cannot_hold_is_a_422_shaped_like_the_others(pg_app: FastAPI) -> None:
    """Postgres text holds no NUL: the 422 is a list of problems, as its schema says, at the
    parameter that held it (found by schemathesis: it was a bare string)."""
    with TestClient(pg_app, headers=AUTH) as client:
        for url, loc in (
            ("/episodes?scenario=a%00b", ["query", "scenario"]),
            ("/campaigns/nul%00", ["path", "campaign_id"]),
        ):
            response = client.get(url)
            assert response.status_code == 422, response.text
            (problem,) = response.json()["detail"]
            assert problem["loc"] == loc
            assert "cannot be stored or searched for" in problem["msg"]


def test_duplicate_entries_are_refused_naming_the_field(pg_app: FastAPI) -> None:
    cases = [
        ({"variants": ["default", "default"]}, "variants"),
        ({"variants": {SHUTDOWN: ["default", "default"]}}, "variants"),
        ({"models": ["scripted/aligned", "scripted/aligned"]}, "models"),
        ({"personas": ["none", "none"]}, "personas"),
        ({"scenarios": [SHUTDOWN, SHUTDOWN]}, "scenarios"),
    ]
    with TestClient(pg_app, headers=AUTH) as client:
        for change, field in cases:
            response = client.post("/campaigns", json=_spec(**change))
            assert response.status_code == 422, (change, response.text)
            (problem,) = response.json()["detail"]
            assert problem["loc"][:2] == ["body", field], problem
            assert "given more than once: " in problem["msg"], problem
        assert client.get("/campaigns").json() == []


def test_what_schemathesis_found_stays_fixed(pg_app: FastAPI) -> None:
    """A 405 named only one route's methods; an empty variants list queued a campaign of no
    episodes; true/false were read as numbers (thinking: true, a budget of 1 token)."""
    with TestClient(pg_app, headers=AUTH) as client:
        allowed = client.options("/campaigns")
        assert allowed.status_code == 405
        assert set(allowed.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}
        for change in (
            {"variants": []},
            {"variants": {SHUTDOWN: []}},
            {"repeats": True},
            {"cost_limit_usd": True},
            {"generation": {"thinking": True}},
            {"generation": {"seed": False}},
        ):
            response = client.post("/campaigns", json=_spec(**change))
            assert response.status_code == 422, (change, response.text)
        assert client.get("/campaigns").json() == []


def test_lists_have_a_maximum_and_the_episode_cap_is_counted(pg_app: FastAPI) -> None:
    with TestClient(pg_app, headers=AUTH) as client:
        document = client.get("/openapi.json").json()
        spec = document["components"]["schemas"]["CampaignSpec"]["properties"]
        for field in ("scenarios", "models", "personas"):
            assert spec[field]["maxItems"] == 100, field
        too_many = client.post(
            "/campaigns", json=_spec(models=[f"openai/m{i}" for i in range(101)])
        )
        assert too_many.status_code == 422
        over_cap = client.post(
            "/campaigns",
            json=_spec(
                models=[f"openai/m{i}" for i in range(100)],
                personas=["none", "analyst"],
                repeats=1000,
            ),
        )
        assert over_cap.status_code == 422
        assert "200000 episodes is more than 100000" in _reasons(over_cap)
        assert client.get("/campaigns").json() == []


def test_bodies_over_the_limit_are_a_413(pg_app: FastAPI) -> None:
    big = _spec(name="x" * LIMIT)
    with TestClient(pg_app, headers=AUTH) as client:
        declared = client.post("/campaigns", json=big)
        assert declared.status_code == 413
        assert f"larger than {LIMIT} bytes" in declared.json()["detail"]
        assert "FARM_API_MAX_BODY_BYTES" in declared.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
            yield b'{"name": "'
            for _ in range(LIMIT // 512 + 2):
                yield b"x" * 512
            yield b'"}'

        chunked = client.post(
            "/campaigns", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert chunked.status_code == 413, chunked.text
        assert client.post("/campaigns", json=_spec()).status_code == 201  # under the limit
        # unauthenticated: 401 however large
        assert client.post("/campaigns", json=big, headers={"Authorization": ""}).status_code == 401


class Server:
    """The app behind a real uvicorn on a free port, in a thread."""

    def __init__(self, app: FastAPI) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                pytest.fail("uvicorn did not start")
            self.thread.join(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def ask(self, head: bytes, body: bytes = b"") -> bytes:
        """Send ``head`` and only ``body`` of what it announces; the status line back.
        Bounded: a server waiting for the rest of the body fails the test, not hangs it."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as connection:
            connection.sendall(head + body)
            answer = connection.recv(4096)
        return answer.split(b"\r\n", 1)[0]


def test_the_token_and_the_size_are_checked_before_the_body_is_read(
    sqlite_app: FastAPI,
) -> None:
    """Over a socket: the request announces 100 MB and sends a few bytes; the answer comes
    anyway, so the server did not wait for (read) the body."""
    announce = b"POST /campaigns HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with Server(sqlite_app) as server:
        no_token = server.ask(announce + b"Content-Length: 100000000\r\n\r\n", b'{"na')
        assert no_token == b"HTTP/1.1 401 Unauthorized"
        wrong = server.ask(
            announce + b"Authorization: Bearer nope\r\nContent-Length: 100000000\r\n\r\n", b"{"
        )
        assert wrong == b"HTTP/1.1 401 Unauthorized"
        auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
        too_big = server.ask(announce + auth + b"Content-Length: 100000000\r\n\r\n", b'{"na')
        assert too_big == b"HTTP/1.1 413 Request Entity Too Large"
        # chunked, no length: read up to the limit, then refused before the rest arrives
        chunk = b"x" * 1024
        chunked = server.ask(
            announce + auth + b"Transfer-Encoding: chunked\r\n\r\n",
            b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(LIMIT // 1024 + 1)),
        )
        assert chunked == b"HTTP/1.1 413 Request Entity Too Large"
        assert server.ask(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n") == b"HTTP/1.1 200 OK"


def test_a_locked_sqlite_is_a_busy_503(limited: Settings, tmp_path: Path) -> None:
    path = tmp_path / "farm.db"
    ensure_schema(make_engine(f"sqlite:///{path}"), limited.migrations_dir)
    # a short busy timeout, so the test does not wait the default 30 s for the lock
    engine: Engine = create_engine(
        f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 0.2}
    )
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        with TestClient(create_app(limited, engine), headers=AUTH) as client:
            writer.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            response = client.post("/campaigns", json=_spec())
            assert response.status_code == 503, response.text
            assert "busy" in response.json()["detail"]
            assert "database is locked" in response.json()["detail"]
            assert "does not answer" not in response.json()["detail"]
            assert response.headers["Retry-After"].isdigit()
            writer.execute("ROLLBACK")
            assert client.post("/campaigns", json=_spec()).status_code == 201
    finally:
        writer.close()
        engine.dispose()


RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _moments(value: object, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _moments(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _moments(v, key)
    elif key.endswith("_at") and value is not None:
        yield key, str(value)


def test_timestamps_carry_their_utc_offset(sqlite_app: FastAPI) -> None:
    with TestClient(sqlite_app, headers=AUTH) as client:
        campaign = client.post("/campaigns", json=_spec()).json()
        (episode, *_) = client.get("/episodes", params={"campaign_id": campaign["id"]}).json()
        answers = [
            campaign,
            client.get("/campaigns").json(),
            client.get(f"/campaigns/{campaign['id']}").json(),
            client.post(f"/campaigns/{campaign['id']}/cancel").json(),
            client.get("/episodes").json(),
            client.get(f"/episodes/{episode['id']}").json(),
        ]
    moments = [m for answer in answers for m in _moments(answer)]
    assert {k for k, _ in moments} >= {"created_at"}
    assert len(moments) >= 6
    for key, moment in moments:
        assert RFC3339.match(moment), (key, moment)


def test_campaigns_are_paged_like_episodes(sqlite_app: FastAPI) -> None:
    with TestClient(sqlite_app, headers=AUTH) as client:
        ids = [client.post("/campaigns", json=_spec()).json()["id"] for _ in range(3)]
        assert [c["id"] for c in client.get("/campaigns").json()] == ids[::-1]
        assert [c["id"] for c in client.get("/campaigns?limit=2").json()] == ids[:0:-1]
        assert [c["id"] for c in client.get("/campaigns?limit=2&offset=2").json()] == ids[:1]
        for bad in ("limit=0", "limit=501", "offset=-1", "limit=x"):
            assert client.get(f"/campaigns?{bad}").status_code == 422, bad


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("short-token", "has 11 characters; it needs at least 16"),
        (" " + "t" * 20, "contains whitespace"),
        ("t" * 20 + "\n", "contains whitespace"),
        ("t" * 10 + " " + "t" * 10, "contains whitespace"),
    ],
)
def test_farm_serve_refuses_a_weak_token(token: str, reason: str) -> None:
    result = run_farm("serve", "--port", "1", env={"FARM_API_TOKEN": token})
    assert result.returncode == 2, result.stderr
    assert reason in result.stderr
    assert token.strip() not in result.stderr  # the token is not echoed
