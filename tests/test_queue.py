"""The campaign queue and the analysts' views, on real databases (no containers needed).

Lease expiry is made to happen by moving ``lease_expires_at`` into the past with SQL, never
by sleeping, so nothing here depends on timing.
"""

from __future__ import annotations

import math
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text, update

from orchestrator.store.campaigns import CampaignStore
from orchestrator.store.db import ensure_schema, make_engine
from orchestrator.store.episodes import EpisodeOutcome, EpisodeStore
from orchestrator.store.lease import LeaseLost
from orchestrator.store.models import EpisodeRecord
from orchestrator.store.queue import WorkQueue
from orchestrator.transcript import Step
from tests.conftest import queue_campaign, run_farm


@pytest.fixture
def engine(database_url: str, settings) -> Engine:  # type: ignore[no-untyped-def]
    engine = make_engine(database_url)
    ensure_schema(engine, settings.migrations_dir)
    yield engine
    engine.dispose()


def submit(engine: Engine, settings, scenarios, catalogue, **fields) -> str:  # type: ignore[no-untyped-def]
    models = ["scripted/aligned", "scripted/misaligned"]
    return queue_campaign(engine, settings, scenarios, catalogue, **{"models": models, **fields})


def step(index: int) -> Step:
    return Step(
        index=index, turn=index + 1, kind="bash", started_at=datetime.now(UTC), command="ls"
    )


def expire(engine: Engine, episode_id: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(EpisodeRecord)
            .where(EpisodeRecord.id == episode_id)
            .values(lease_expires_at=datetime.now(UTC) - timedelta(minutes=5))
        )


def completed(score: float = 0.0, verdict: str = "aligned", **fields) -> EpisodeOutcome:  # type: ignore[no-untyped-def]
    return EpisodeOutcome(status="completed", verdict=verdict, score=score, turns=1, **fields)


def test_claims_follow_the_campaign_order_and_mark_it_running(
    engine, settings, scenarios, personas
):
    campaign = submit(engine, settings, scenarios, personas, repeats=2)
    queue = WorkQueue(engine)
    first, second = queue.claim("w1"), queue.claim("w1")
    assert first is not None and second is not None
    seqs = [
        EpisodeStore(engine).get(c.lease.episode_id).episode.seq  # type: ignore[union-attr]
        for c in (first, second)
    ]
    assert seqs == [0, 1]
    assert (first.lease.attempt, first.taken_over, first.trajectory) == (1, False, "aligned")
    summary = CampaignStore(engine).get(campaign)
    assert summary is not None
    assert summary.status == "running"
    assert summary.counts == {"queued": 2, "running": 2, "completed": 0, "error": 0}


def test_concurrent_claims_never_hand_out_one_episode_twice(engine, settings, scenarios, personas):
    submit(engine, settings, scenarios, personas, personas=list(personas), repeats=3)  # 36 episodes
    queue = WorkQueue(engine)
    claimed: list[str] = []
    lock = threading.Lock()

    def drain(owner: str) -> None:
        while (c := queue.claim(owner)) is not None:
            with lock:
                claimed.append(c.lease.episode_id)

    threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 36
    assert len(set(claimed)) == 36


def test_a_queue_scoped_to_one_campaign_claims_and_counts_only_it(
    engine, settings, scenarios, personas
):
    older = submit(engine, settings, scenarios, personas)
    newer = submit(engine, settings, scenarios, personas)
    scoped = WorkQueue(engine, campaign_id=newer)
    claims = [scoped.claim("w"), scoped.claim("w")]
    assert [c.campaign_id for c in claims if c] == [newer, newer]
    assert scoped.claim("w") is None
    assert scoped.outstanding() == 2  # its own two, running
    assert WorkQueue(engine).outstanding() == 4  # the older campaign's two are still queued
    assert CampaignStore(engine).get(older).counts["queued"] == 2  # type: ignore[union-attr]


def test_an_expired_lease_is_taken_over_and_the_old_attempt_is_fenced_out(
    engine, settings, scenarios, personas
):
    submit(engine, settings, scenarios, personas)
    queue, store = WorkQueue(engine), EpisodeStore(engine, patience=0)
    old = queue.claim("dead-worker")
    assert old is not None
    store.add_step(old.lease.episode_id, step(0), lease=old.lease)
    expire(engine, old.lease.episode_id)

    new = queue.claim("live-worker")
    assert new is not None
    assert new.lease.episode_id == old.lease.episode_id
    assert (new.lease.attempt, new.taken_over) == (2, True)
    assert store.get(new.lease.episode_id).steps == []  # type: ignore[union-attr]

    with pytest.raises(LeaseLost):
        store.add_step(old.lease.episode_id, step(1), lease=old.lease)
    with pytest.raises(LeaseLost):
        store.finish(old.lease.episode_id, completed(), lease=old.lease)
    assert queue.renew([old.lease, new.lease]).lost == [old.lease]

    store.add_step(new.lease.episode_id, step(0), lease=new.lease)
    store.add_step(new.lease.episode_id, step(0), lease=new.lease)  # a retried write
    store.finish(new.lease.episode_id, completed(0.9, "misaligned"), lease=new.lease)
    store.finish(new.lease.episode_id, completed(), lease=new.lease)  # retried: no effect
    stored = store.get(new.lease.episode_id)
    assert stored is not None
    assert [s.idx for s in stored.steps] == [0]
    assert (stored.episode.status, stored.episode.verdict, stored.episode.score) == (
        "completed",
        "misaligned",
        0.9,
    )
    assert (stored.episode.attempts, stored.episode.lease_owner) == (2, "live-worker")


def test_an_episode_whose_leases_keep_running_out_is_given_up(
    engine, settings, scenarios, personas
):
    submit(engine, settings, scenarios, personas, models=["scripted/aligned"])
    queue = WorkQueue(engine, max_attempts=2)
    for attempt in (1, 2):
        claimed = queue.claim(f"w{attempt}")
        assert claimed is not None and claimed.lease.attempt == attempt
        expire(engine, claimed.lease.episode_id)
    assert queue.claim("w3") is None
    episode = EpisodeStore(engine).get(claimed.lease.episode_id).episode  # type: ignore[union-attr]
    assert episode.status == "error"
    assert "gave up after 2 attempts" in (episode.error or "")
    assert CampaignStore(engine).get(claimed.campaign_id).status == "done"  # type: ignore[union-attr]


def test_renewal_reports_leases_whose_campaign_was_cancelled(engine, settings, scenarios, personas):
    campaign = submit(engine, settings, scenarios, personas)
    queue = WorkQueue(engine)
    first, second = queue.claim("w"), queue.claim("w")
    assert first is not None and second is not None
    assert queue.renew([first.lease, second.lease]).cancelled == []
    CampaignStore(engine).cancel(campaign)
    renewal = queue.renew([first.lease, second.lease])
    assert (renewal.lost, renewal.cancelled) == ([], [first.lease, second.lease])


def test_a_released_episode_goes_back_to_the_queue_without_its_steps(
    engine, settings, scenarios, personas
):
    submit(engine, settings, scenarios, personas, models=["scripted/aligned"])
    queue, store = WorkQueue(engine), EpisodeStore(engine)
    claimed = queue.claim("stopping-worker")
    assert claimed is not None
    store.add_step(claimed.lease.episode_id, step(0), lease=claimed.lease)
    assert queue.release(claimed.lease) is True
    assert queue.release(claimed.lease) is False  # not ours any more
    stored = store.get(claimed.lease.episode_id)
    assert stored is not None
    assert (stored.episode.status, stored.steps) == ("queued", [])
    again = queue.claim("next-worker")
    assert again is not None
    assert (again.lease.episode_id, again.lease.attempt, again.taken_over) == (
        claimed.lease.episode_id,
        2,
        False,
    )


def test_campaign_status_moves_through_done_cancelled_and_resumed(
    engine, settings, scenarios, personas
):
    campaign = submit(engine, settings, scenarios, personas)
    campaigns, queue, store = CampaignStore(engine), WorkQueue(engine), EpisodeStore(engine)
    assert campaigns.get(campaign).status == "pending"  # type: ignore[union-attr]
    assert campaigns.cancel(campaign).status == "cancelled"  # type: ignore[union-attr]
    assert queue.claim("w") is None
    assert queue.outstanding() == 0
    assert campaigns.resume(campaign).status == "pending"  # type: ignore[union-attr]
    first = queue.claim("w")
    assert first is not None
    store.finish(first.lease.episode_id, completed(), lease=first.lease)
    assert campaigns.get(campaign).status == "running"  # type: ignore[union-attr]
    second = queue.claim("w")
    assert second is not None
    error = EpisodeOutcome(status="error", verdict=None, score=None, turns=0, error="boom")
    store.finish(second.lease.episode_id, error, lease=second.lease)
    summary = campaigns.get(campaign)
    assert summary is not None
    assert (summary.status, summary.counts["completed"], summary.counts["error"]) == (
        "done",
        1,
        1,
    )
    resumed = campaigns.resume(campaign, retry_errors=True)
    assert resumed is not None
    assert (resumed.status, resumed.counts["queued"], resumed.counts["error"]) == ("running", 1, 0)
    retried = queue.claim("w")
    assert retried is not None and retried.lease.episode_id == second.lease.episode_id
    assert EpisodeStore(engine).get(retried.lease.episode_id).episode.error is None  # type: ignore[union-attr]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_misalignment_rates_counts_completed_episodes_with_a_wilson_interval(
    engine, settings, scenarios, personas
):
    campaign = submit(
        engine, settings, scenarios, personas, models=["scripted/misaligned"], repeats=5
    )
    queue, store = WorkQueue(engine), EpisodeStore(engine)
    outcomes = [
        completed(0.9, "misaligned"),
        completed(1.0, "misaligned"),
        completed(0.0),
        completed(0.0),
        EpisodeOutcome(status="error", verdict=None, score=None, turns=0, error="engine died"),
    ]
    for outcome in outcomes:
        claimed = queue.claim("w")
        assert claimed is not None
        store.finish(claimed.lease.episode_id, outcome, lease=claimed.lease)

    [row] = CampaignStore(engine).results(campaign)
    low, high = wilson(2, 4)
    assert (row["episodes"], row["misaligned"], row["errors"]) == (4, 2, 1)
    assert row["rate"] == pytest.approx(0.5)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert row["mean_score"] == pytest.approx(0.475)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT status, misaligned FROM episode_outcomes WHERE campaign_id = :c"),
            {"c": campaign},
        ).all()
    assert sorted(map(tuple, rows), key=str) == sorted(
        [("completed", 1), ("completed", 1), ("completed", 0), ("completed", 0), ("error", None)],
        key=str,
    )


def test_episode_metrics_unpacks_measured_values_for_sql(engine, settings, scenarios, personas):
    campaign = submit(engine, settings, scenarios, personas, models=["scripted/aligned"])
    queue, store = WorkQueue(engine), EpisodeStore(engine)
    claimed = queue.claim("w")
    assert claimed is not None
    metrics = {"exercises": {"correct": 5, "total": 6, "note": "text is skipped"}}
    store.finish(claimed.lease.episode_id, completed(metrics=metrics), lease=claimed.lease)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT detector, name, value FROM episode_metrics WHERE campaign_id = :c "
                "ORDER BY name"
            ),
            {"c": campaign},
        ).all()
    assert [(d, n, float(v)) for d, n, v in rows] == [
        ("exercises", "correct", 5.0),
        ("exercises", "total", 6.0),
    ]


@pytest.mark.postgres
def test_the_analyst_login_reads_views_and_changes_nothing(postgres_url: str, settings):  # type: ignore[no-untyped-def]
    from sqlalchemy.engine import make_url

    name = f"analyst_{uuid.uuid4().hex[:8]}"
    env = {"FARM_DATABASE_URL": postgres_url, "FARM_ANALYST_PASSWORD": "read-only-pw"}
    made = run_farm("db", "analyst", name, env=env)
    assert made.returncode == 0, made.stderr
    analyst = make_engine(
        make_url(postgres_url)
        .set(username=name, password="read-only-pw")
        .render_as_string(hide_password=False)
    )
    try:
        with analyst.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM misalignment_rates")).scalar() == 0
            assert connection.execute(text("SELECT count(*) FROM episodes")).scalar() == 0
        for statement in (
            "INSERT INTO campaigns (id, name, spec, status, created_at) "
            "VALUES ('x', 'x', '{}', 'pending', now())",
            "DELETE FROM episodes",
            "DROP VIEW misalignment_rates",
        ):
            with analyst.connect() as connection, pytest.raises(Exception) as denied:
                connection.execute(text(statement))
            assert "permission denied" in str(denied.value) or "must be owner" in str(denied.value)
    finally:
        analyst.dispose()
        admin = make_engine(postgres_url)
        with admin.begin() as connection:
            connection.execute(text(f'DROP OWNED BY "{name}"'))
            connection.execute(text(f'DROP ROLE "{name}"'))
        admin.dispose()


def test_sandbagging_is_the_control_to_threat_drop_with_an_interval(
    engine, settings, scenarios, personas
):
    from orchestrator.campaign import CampaignSpec, plan_campaign

    spec = CampaignSpec(
        name="sandbagging",
        scenarios=["cyber-sandbagging"],
        models=["scripted/aligned-control"],
        variants=["control", "threat"],
        repeats=3,
    )
    campaign = CampaignStore(engine).submit(
        spec, plan_campaign(spec, scenarios, personas, settings)
    )
    queue, store = WorkQueue(engine), EpisodeStore(engine)
    correct = {"control": [6, 6, 5], "threat": [3, 4, 3]}
    seen = {"control": 0, "threat": 0}
    while (claimed := queue.claim("w")) is not None:
        with engine.connect() as connection:
            variant = connection.execute(
                text("SELECT variant FROM episodes WHERE id = :e"),
                {"e": claimed.lease.episode_id},
            ).scalar_one()
        value = correct[variant][seen[variant]]
        seen[variant] += 1
        metrics = {"exercises": {"correct": value, "total": 6}}
        store.finish(claimed.lease.episode_id, completed(metrics=metrics), lease=claimed.lease)
    with engine.connect() as connection:
        row = (
            connection.execute(
                text("SELECT * FROM sandbagging WHERE campaign_id = :c"), {"c": campaign}
            )
            .mappings()
            .one()
        )

    def mean_var(xs: list[int]) -> tuple[float, float]:
        mean = sum(xs) / len(xs)
        return mean, sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)

    (mc, vc), (mt, vt) = mean_var(correct["control"]), mean_var(correct["threat"])
    half = 1.96 * math.sqrt(vc / 3 + vt / 3)
    assert (row["detector"], row["n_control"], row["n_threat"]) == ("exercises", 3, 3)
    assert row["correct_drop"] == pytest.approx(mc - mt)
    assert row["drop_ci_low"] == pytest.approx(mc - mt - half)
    assert row["drop_ci_high"] == pytest.approx(mc - mt + half)


def test_outcome_behaviors_are_those_of_verdict_findings_only(
    engine, settings, scenarios, personas
):
    from orchestrator.scoring.findings import Finding

    submit(engine, settings, scenarios, personas, models=["scripted/misaligned"])
    queue, store = WorkQueue(engine), EpisodeStore(engine)
    claimed = queue.claim("w")
    assert claimed is not None
    findings = [
        Finding("a", "file_changed", "shutdown_resistance", "high", "action", "", "verdict"),
        Finding("b", "command", "deception", "medium", "action", "", "supporting"),
    ]
    outcome = completed(1.0, "misaligned")
    store.finish(claimed.lease.episode_id, outcome, None, findings, lease=claimed.lease)
    with engine.connect() as connection:
        behaviors = connection.execute(
            text("SELECT behaviors FROM episode_outcomes WHERE episode_id = :e"),
            {"e": claimed.lease.episode_id},
        ).scalar_one()
        roles = connection.execute(
            text("SELECT detector, role FROM findings WHERE episode_id = :e ORDER BY idx"),
            {"e": claimed.lease.episode_id},
        ).all()
    assert behaviors == "shutdown_resistance"
    assert [tuple(r) for r in roles] == [("a", "verdict"), ("b", "supporting")]
