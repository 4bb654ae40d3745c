"""The campaign cost cap: once a campaign's recorded spend reaches its limit, nothing more of
it is claimed, running episodes finish, the campaign says why it paused, and resuming with a
higher limit carries on. On SQLite and Postgres."""

from __future__ import annotations

import json

import pytest
import yaml
from sqlalchemy import Engine

from orchestrator.store.campaigns import CampaignStore
from orchestrator.store.db import ensure_schema, make_engine
from orchestrator.store.episodes import EpisodeOutcome, EpisodeStore
from orchestrator.store.queue import WorkQueue
from tests.conftest import KEY, SHUTDOWN, queue_campaign, run_farm
from tests.fake_llm import Call, FakeLLM, Reply, Usage

MODEL = "fake-model"
PRICE = {"input": 2.0, "output": 8.0}  # USD per million tokens
USAGE = Usage(input=1000, output=50)
EPISODE_COST = (USAGE.input * PRICE["input"] + USAGE.output * PRICE["output"]) / 1_000_000


@pytest.fixture
def engine(database_url: str, settings) -> Engine:  # type: ignore[no-untyped-def]
    engine = make_engine(database_url)
    ensure_schema(engine, settings.migrations_dir)
    yield engine
    engine.dispose()


def finish(store: EpisodeStore, lease, cost: float) -> None:  # type: ignore[no-untyped-def]
    outcome = EpisodeOutcome(
        status="completed", verdict="aligned", score=0.0, turns=1, cost_usd=cost
    )
    store.finish(lease.episode_id, outcome, lease=lease)


def test_claims_stop_at_the_cap_running_episodes_finish_and_resume_raises_it(
    engine, settings, scenarios, personas
):
    campaign_id = queue_campaign(
        engine,
        settings,
        scenarios,
        personas,
        models=["scripted/aligned"],
        personas=["none", "analyst", "rapid-executor"],
        repeats=2,
        cost_limit_usd=1.0,
    )  # 6 episodes
    queue, store, campaigns = WorkQueue(engine), EpisodeStore(engine), CampaignStore(engine)
    first, second = queue.claim("w1"), queue.claim("w2")
    assert first and second
    finish(store, first.lease, 0.6)
    third = queue.claim("w1")  # $0.60 of $1.00: still open
    assert third is not None
    finish(store, third.lease, 0.5)  # $1.10: at the cap, with one episode still running

    assert queue.claim("w1") is None
    summary = campaigns.get(campaign_id)
    assert summary.status == "paused"
    assert summary.status_reason == "cost limit reached: $1.1000 spent of $1.0000"
    assert summary.counts == {"queued": 3, "running": 1, "completed": 2, "error": 0}
    assert queue.outstanding() == 0  # a worker with --until-idle may leave

    finish(store, second.lease, 0.25)  # the running one finishes and is recorded
    summary = campaigns.get(campaign_id)
    assert (summary.status, summary.counts["completed"], summary.counts["queued"]) == (
        "paused",
        3,
        3,
    )
    assert summary.cost_usd == pytest.approx(1.35)

    # a resume that does not raise the limit leaves it paused; one that does reopens it
    assert campaigns.resume(campaign_id).status == "paused"
    assert queue.claim("w1") is None
    resumed = campaigns.resume(campaign_id, cost_limit_usd=2.0)
    assert (resumed.status, resumed.status_reason, resumed.cost_limit_usd) == ("running", None, 2.0)
    assert campaigns.get(campaign_id).spec["cost_limit_usd"] == 1.0  # the spec as submitted
    fourth = queue.claim("w1")
    assert fourth is not None
    finish(store, fourth.lease, 1.0)  # $2.35
    assert queue.claim("w1") is None
    assert campaigns.get(campaign_id).status == "paused"

    # cancelling a paused campaign cancels it; a campaign with no limit is never paused
    assert campaigns.cancel(campaign_id).status == "cancelled"
    other = queue_campaign(engine, settings, scenarios, personas, models=["scripted/aligned"])
    claimed = queue.claim("w1")
    assert claimed is not None and claimed.campaign_id == other
    finish(store, claimed.lease, 1000.0)
    assert campaigns.get(other).status == "done"


def campaign_file(tmp_path, **fields) -> str:  # type: ignore[no-untyped-def]
    spec = {
        "name": "capped",
        "scenarios": [SHUTDOWN],
        "models": [f"fake/{MODEL}"],
        "personas": ["none", "analyst", "rapid-executor"],
        "repeats": 2,
        **fields,
    }
    path = tmp_path / "capped.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_a_capped_campaign_against_a_model_server_pauses_and_resumes(
    database_url, images, tmp_path
):
    """Each episode is one submit costing EPISODE_COST; the cap lets three be claimed."""
    submit = Reply(calls=(Call("submit", {"answer": "Nothing to do."}),), usage=USAGE)
    with FakeLLM([submit] * 6) as fake:
        env = {
            "FARM_DATABASE_URL": database_url,
            "FARM_ENDPOINTS": json.dumps({"fake": {"base_url": fake.openai_url, "api": "openai"}}),
            "FARM_PRICES": json.dumps({MODEL: PRICE}),
            "OPENAI_API_KEY": KEY,
            "FARM_WORKER_CONCURRENCY": "1",
        }
        limit = 2.5 * EPISODE_COST  # reached by the third episode
        ran = run_farm(
            "campaign", "run", campaign_file(tmp_path), "--cost-limit", str(limit), "--json",
            env=env,
        )  # fmt: skip
        assert ran.returncode == 1, ran.stderr  # not done: paused
        shown = json.loads(ran.stdout)
        assert shown["status"] == "paused"
        assert shown["counts"] == {"queued": 3, "running": 0, "completed": 3, "error": 0}
        assert shown["cost_usd"] == pytest.approx(3 * EPISODE_COST)
        assert shown["cost_limit_usd"] == pytest.approx(limit)
        assert shown["status_reason"].startswith("cost limit reached: $0.0072 spent of $0.0060")
        assert len(fake.requests) == 3

        text = run_farm("campaign", "show", shown["id"][:8], env=env)
        assert "paused: cost limit reached" in text.stdout
        assert "--cost-limit" in text.stdout

        resumed = run_farm("campaign", "resume", shown["id"][:8], "--cost-limit", "1", env=env)
        assert resumed.returncode == 0, resumed.stderr
        assert "running (3 queued)" in resumed.stdout
        worked = run_farm(
            "worker", "--campaign", shown["id"][:8], "--until-idle", "--concurrency", "1", env=env
        )
        assert worked.returncode == 0, worked.stderr
    listed = json.loads(run_farm("campaign", "list", "--json", env=env).stdout)
    (done,) = listed
    assert done["status"] == "done" and done["status_reason"] is None
    assert done["counts"]["completed"] == 6
    assert done["cost_usd"] == pytest.approx(6 * EPISODE_COST)
    assert len(fake.requests) == 6


def test_a_cost_limit_must_be_positive(tmp_path, sqlite_url):
    env = {"FARM_DATABASE_URL": sqlite_url}
    spec = campaign_file(tmp_path, models=["scripted/aligned"], cost_limit_usd=0)
    result = run_farm("campaign", "submit", spec, env=env)
    assert result.returncode == 2 and "cost_limit_usd" in result.stderr
    spec = campaign_file(tmp_path, models=["scripted/aligned"])
    result = run_farm("campaign", "submit", spec, "--cost-limit", "-1", env=env)
    assert result.returncode == 2 and "--cost-limit" in result.stderr
    assert json.loads(run_farm("campaign", "list", "--json", env=env).stdout) == []
