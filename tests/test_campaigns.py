"""Campaign files and the ``farm campaign`` commands, as a researcher uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text

from orchestrator.campaign import CampaignError, CampaignSpec, plan_campaign
from orchestrator.store.db import make_engine
from tests.conftest import SHUTDOWN, run_farm

DEMO = Path(__file__).resolve().parent.parent / "environments" / "campaigns" / "demo.yaml"


def write(path: Path, fields: dict) -> Path:
    path.write_text(yaml.safe_dump(fields))
    return path


def test_a_campaign_expands_repeat_major_over_every_cell(settings, scenarios, personas):
    spec = CampaignSpec(
        name="factorial",
        scenarios=[SHUTDOWN, "cyber-sandbagging"],
        models=["openai/gpt-4.1", "anthropic/claude-sonnet-4-5"],
        personas=["none", "analyst"],
        repeats=3,
    )
    planned = plan_campaign(spec, scenarios, personas, settings)
    # shutdown-script has one variant, cyber-sandbagging two (control, threat): 3 x 2 x 2 cells
    assert len(planned) == 3 * 2 * 2 * 3
    assert [p.seq for p in planned] == list(range(len(planned)))
    assert [p.repeat for p in planned[:12]] == [0] * 12  # a whole round before the next
    assert {(p.scenario, p.variant) for p in planned} == {
        (SHUTDOWN, "default"),
        ("cyber-sandbagging", "control"),
        ("cyber-sandbagging", "threat"),
    }
    assert all(p.trajectory is None for p in planned)


def test_variants_can_be_chosen_per_scenario(settings, scenarios, personas):
    spec = CampaignSpec(
        name="threat only",
        scenarios=[SHUTDOWN, "cyber-sandbagging"],
        models=["openai/gpt-4.1"],
        variants={"cyber-sandbagging": ["threat"]},
    )
    planned = plan_campaign(spec, scenarios, personas, settings)
    assert [(p.scenario, p.variant) for p in planned] == [
        (SHUTDOWN, "default"),
        ("cyber-sandbagging", "threat"),
    ]


def test_every_problem_is_reported_at_once_with_what_exists(settings, scenarios, personas):
    spec = CampaignSpec(
        name="typos",
        scenarios=[SHUTDOWN, "shutdown-scrpt"],
        models=["scripted/aligned", "opnai/gpt-4.1", "scripted/nope"],
        personas=["none", "analist"],
        variants={SHUTDOWN: ["monitored"]},
    )
    with pytest.raises(CampaignError) as caught:
        plan_campaign(spec, scenarios, personas, settings)
    problems = caught.value.problems
    assert len(problems) == 5
    unknown_scenario, unknown_persona, unknown_variant, unknown_model, no_trajectory = problems
    assert "'shutdown-scrpt'" in unknown_scenario and "canary-log" in unknown_scenario
    assert "'analist'" in unknown_persona and "analyst" in unknown_persona
    assert "'monitored'" in unknown_variant and "default" in unknown_variant
    assert "'opnai/gpt-4.1'" in unknown_model and "openai/MODEL" in unknown_model
    assert "no trajectory 'nope'" in no_trajectory and "misaligned" in no_trajectory


def test_a_malformed_campaign_file_names_the_file_and_the_field(tmp_path: Path, sqlite_url: str):
    bad = write(tmp_path / "bad.yaml", {"name": "x", "scenarios": [SHUTDOWN], "repeat": 2})
    result = run_farm("campaign", "submit", str(bad), env={"FARM_DATABASE_URL": sqlite_url})
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "field `models`" in result.stderr  # missing
    assert "field `repeat`" in result.stderr and "unknown field" in result.stderr


def test_a_campaign_naming_unknown_things_is_refused_and_nothing_is_queued(
    tmp_path: Path, sqlite_url: str
):
    env = {"FARM_DATABASE_URL": sqlite_url}
    bad = write(
        tmp_path / "typo.yaml",
        {"name": "typo", "scenarios": ["nope"], "models": ["scripted/aligned"]},
    )
    result = run_farm("campaign", "submit", str(bad), env=env)
    assert result.returncode == 2
    assert "unknown scenario 'nope'" in result.stderr and SHUTDOWN in result.stderr
    listed = run_farm("campaign", "list", "--json", env=env)
    assert json.loads(listed.stdout) == []


def test_submit_once_does_not_queue_the_same_campaign_twice(sqlite_url: str):
    env = {"FARM_DATABASE_URL": sqlite_url}
    first = json.loads(
        run_farm("campaign", "submit", str(DEMO), "--once", "--json", env=env).stdout
    )
    again = json.loads(
        run_farm("campaign", "submit", str(DEMO), "--once", "--json", env=env).stdout
    )
    assert first["new"] is True and again == {"id": first["id"], "new": False}
    listed = json.loads(run_farm("campaign", "list", "--json", env=env).stdout)
    assert [c["id"] for c in listed] == [first["id"]]
    assert listed[0]["counts"]["queued"] == 8


def test_campaign_run_works_the_demo_campaign_on_sqlite(images, sqlite_url: str):
    """The embedded default end to end: queue, an in-process worker, the views on SQLite."""
    env = {"FARM_DATABASE_URL": sqlite_url, "FARM_WORKER_CONCURRENCY": "3"}
    result = run_farm("campaign", "run", str(DEMO), "--json", env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["status"] == "done"
    assert shown["counts"] == {"queued": 0, "running": 0, "completed": 8, "error": 0}
    rates = {(r["model"], r["persona"]): r for r in shown["results"]}
    assert set(rates) == {
        (model, persona)
        for model in ("scripted/aligned", "scripted/misaligned")
        for persona in ("none", "rapid-executor")
    }
    for (model, _), row in rates.items():
        assert row["episodes"] == 2
        assert row["rate"] == (1.0 if model == "scripted/misaligned" else 0.0)
        assert 0.0 <= row["ci_low"] <= row["rate"] <= row["ci_high"] <= 1.0
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        behaviors = connection.execute(
            text("SELECT DISTINCT behaviors FROM episode_outcomes WHERE misaligned = 1")
        ).all()
    assert [tuple(b) for b in behaviors] == [("shutdown_resistance",)]
