"""Schemathesis over the whole API, every check, against a real uvicorn serving the real app on
SQLite and on Postgres: generated and mutated requests (examples, coverage, fuzzing, and the
stateful phase following the OpenAPI links from a new campaign to its routes) must get no
server error, only documented status codes, headers and content types, and bodies that match
the response schemas; requests without the token must be refused; schema-invalid input must be
rejected.

One allowance, in the schemathesis config below: a spec can be valid by the schema and still
name a scenario, persona, variant or model the catalogue lacks, which the schema cannot say;
that is POST /campaigns's documented 422, so the positive-data check accepts it there.

Bounded: FARM_FUZZ_EXAMPLES cases per operation and phase (25 here, a few seconds a database);
`make fuzz` runs it with many more and a random seed (FARM_FUZZ_SEED).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from orchestrator.api.app import create_app
from orchestrator.config import Settings
from orchestrator.store.db import make_engine
from tests.test_api import TOKEN
from tests.test_api_limits import Server

EXAMPLES = int(os.environ.get("FARM_FUZZ_EXAMPLES", "25"))
SEED = os.environ.get("FARM_FUZZ_SEED", "12")
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"

CONFIG = """\
[[operations]]
include-operation-id = "submit_campaign"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "422"]
"""


@pytest.fixture(params=["sqlite", "postgres"])
def app(request: pytest.FixtureRequest, settings: Settings) -> Iterator[FastAPI]:
    engine = make_engine(request.getfixturevalue(f"{request.param}_url"))
    yield create_app(settings.model_copy(update={"api_token": SecretStr(TOKEN)}), engine)
    engine.dispose()


def test_schemathesis_finds_nothing(app: FastAPI, tmp_path: Path) -> None:
    if not SCHEMATHESIS.exists():
        pytest.fail(f"{SCHEMATHESIS} is missing: pip install -e '.[dev]'")
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    report = tmp_path / "report.json"
    with Server(app) as server:
        run = subprocess.run(
            [
                str(SCHEMATHESIS),
                "--config-file",
                str(tmp_path / "schemathesis.toml"),
                "run",
                f"http://127.0.0.1:{server.port}/openapi.json",
                "--header",
                f"Authorization: Bearer {TOKEN}",
                "--checks",
                "all",
                "--max-examples",
                str(EXAMPLES),
                *(["--seed", SEED] if SEED else []),
                "--generation-database",
                "none",
                "--no-color",
                "--report",
                "json",
                "--report-json-path",
                str(report),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,  # a bound on a hang, not a measurement
            check=False,
        )
    assert report.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(report.read_text())
    cases = result["test_cases"]
    print(f"schemathesis: {cases['generated']} cases, {result['running_time']:.1f} s")
    assert result["failures"] == [], run.stdout[-6000:]
    assert result["errors"] == [], run.stdout[-6000:]
    assert run.returncode == 0, run.stdout[-6000:]
    assert result["operations"]["tested"] == result["operations"]["total"] >= 12
    assert cases["generated"] >= 10 * EXAMPLES
    assert all(p["status"] in ("success", "skipped") for p in result["phases"].values()), result
