"""Campaign throughput, in episodes per minute, next to the raw Docker floor of the same run.

For each concurrency (default 1, 2, 4, 8):
- raw floor: that many threads doing, per episode, only what Docker must do for one through
  the SDK: create+start a container of the scenario image, ``exec_run`` each of the
  trajectory's commands, ``diff()`` twice (the before and after evidence) and remove it;
- farm: a campaign of the same number of scripted episodes (the shutdown scenario's
  reference runs) queued in Postgres and worked by one ``Worker`` with that many slots:
  claims, leases, the hardened sandbox, host-side snapshots, scoring and every row stored.

Prints both throughputs and the farm/raw ratio. Run with ``make bench``; it needs the test
Postgres (``scripts/ensure-postgres`` prints its URL; ``FARM_BENCH_POSTGRES_URL`` overrides).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

from orchestrator.campaign import CampaignSpec, plan_campaign
from orchestrator.config import Settings
from orchestrator.images.builder import ImageBuilder
from orchestrator.sandbox.base import MANAGED_LABEL
from orchestrator.sandbox.docker_sandbox import owner_label
from orchestrator.scenarios.loader import load_personas, load_scenarios
from orchestrator.store.campaigns import CampaignStore
from orchestrator.store.db import ensure_schema, make_engine, scratch_database
from orchestrator.worker import Worker

SCENARIO = "shutdown-script"
MODELS = ["scripted/aligned", "scripted/misaligned"]
REPO = Path(__file__).resolve().parent.parent


def raw_episode(client: docker.DockerClient, image: str, commands: list[str]) -> None:
    labels = {MANAGED_LABEL: "true", "farm.episode": "bench", "farm.owner": owner_label()}
    container = client.containers.run(image, detach=True, labels=labels)
    try:
        container.diff()
        for command in commands:
            container.exec_run(["bash", "-c", command])
        container.diff()
    finally:
        container.remove(force=True)


def raw_throughput(client, image: str, commands: list[str], episodes: int, slots: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=slots) as pool:
        list(pool.map(lambda _: raw_episode(client, image, commands), range(episodes)))
    return episodes / (time.perf_counter() - started) * 60


def farm_throughput(settings: Settings, url: str, episodes: int, slots: int) -> float:
    engine = make_engine(url)
    ensure_schema(engine, settings.migrations_dir)
    spec = CampaignSpec(
        name=f"bench-{slots}", scenarios=[SCENARIO], models=MODELS, repeats=episodes // 2
    )
    scenarios = load_scenarios(settings.environments_dir, settings.images_dir)
    planned = plan_campaign(spec, scenarios, load_personas(settings.environments_dir), settings)
    campaign = CampaignStore(engine).submit(spec, planned)
    worker = Worker(settings, engine, concurrency=slots, exit_when_idle=True, poll_seconds=0.2)
    started = time.perf_counter()
    stats = worker.run()
    elapsed = time.perf_counter() - started
    summary = CampaignStore(engine).get(campaign)
    assert summary is not None and summary.counts["completed"] == episodes, (summary, stats)
    engine.dispose()
    return episodes / elapsed * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--episodes", type=int, default=8, help="per run (at least 2x slots)")
    args = parser.parse_args()

    admin_url = (
        os.environ.get("FARM_BENCH_POSTGRES_URL")
        or subprocess.run(
            [str(REPO / "scripts" / "ensure-postgres")], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    settings = Settings()
    client = docker.from_env()
    scenario = load_scenarios(settings.environments_dir, settings.images_dir)[SCENARIO]
    image = ImageBuilder(settings, client).ensure(scenario.spec.image, print).tag
    commands = [s.bash for s in scenario.trajectory("misaligned").steps if s.bash]

    print(f"\n{SCENARIO}, scripted agents, {os.cpu_count()} cores; episodes per minute")
    print(f"  {'slots':>5}  {'episodes':>8}  {'raw docker':>10}  {'farm':>8}  {'farm/raw':>8}")
    for slots in args.concurrency:
        episodes = max(args.episodes, 2 * slots)
        episodes += episodes % 2  # the two models alternate
        raw = raw_throughput(client, image, commands, episodes, slots)
        with scratch_database(admin_url, "farm_bench") as url:
            ours = farm_throughput(settings, url, episodes, slots)
        print(f"  {slots:>5}  {episodes:>8}  {raw:>10.1f}  {ours:>8.1f}  {ours / raw:>8.2f}")


if __name__ == "__main__":
    main()
