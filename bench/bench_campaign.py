"""Scripted campaign throughput, in episodes per minute, next to the raw Docker floor of the
same run, with the host CPU per episode of both.

For each concurrency (default 1, 2, 4, 8):
- raw floor: that many threads doing, per episode, only what Docker must do for one through
  the SDK: create+start a container of the scenario image, ``exec_run`` each of the
  trajectory's commands, remove it (bench/floor.py);
- farm: a campaign of the same number of scripted episodes (the shutdown scenario's
  reference runs, aligned and misaligned alternating) queued in Postgres and worked by one
  ``Worker`` with that many slots: claims, leases, the hardened sandbox, the warm pool,
  host-side snapshots, scoring and every row stored.

Prints both throughputs, the farm/raw ratio and the host CPU per episode (bench/hostcpu.py).
Run with ``make bench``; it needs the test Postgres (``scripts/ensure-postgres`` prints its
URL; ``FARM_BENCH_POSTGRES_URL`` overrides).
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import docker
from floor import (
    CPU_HEADER,
    CPU_NOTE,
    admin_url,
    campaign_database,
    cpu_cells,
    engine_idle,
    new_session,
    raw_floor,
)
from hostcpu import CpuMeter, CpuReport

from orchestrator.campaign import CampaignSpec, plan_campaign
from orchestrator.config import Settings
from orchestrator.sandbox.provider import make_sandbox_provider
from orchestrator.scenarios.loader import load_personas, load_scenarios
from orchestrator.store.campaigns import CampaignStore
from orchestrator.worker import Worker

SCENARIO = "shutdown-script"
MODELS = ["scripted/aligned", "scripted/misaligned"]


def farm_throughput(
    settings: Settings, client: docker.DockerClient, admin: str, episodes: int, slots: int
) -> tuple[float, CpuReport]:
    with campaign_database(admin, settings.migrations_dir) as (engine, database):
        spec = CampaignSpec(
            name=f"bench-{slots}", scenarios=[SCENARIO], models=MODELS, repeats=episodes // 2
        )
        scenarios = load_scenarios(settings.environments_dir, settings.images_dir)
        planned = plan_campaign(spec, scenarios, load_personas(settings.environments_dir), settings)
        campaign = CampaignStore(engine).submit(spec, planned)
        worker = Worker(settings, engine, concurrency=slots, exit_when_idle=True)
        assert settings.session is not None
        meter = CpuMeter(client, settings.session, database=database).start()
        started = time.perf_counter()
        stats = worker.run()
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        summary = CampaignStore(engine).get(campaign)
        assert summary is not None and summary.counts["completed"] == episodes, (summary, stats)
    return episodes / elapsed * 60, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--episodes", type=int, default=8, help="per run (at least 2x slots)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    admin = admin_url()
    base = Settings()
    client = docker.from_env()
    scenario = load_scenarios(base.environments_dir, base.images_dir)[SCENARIO]
    with make_sandbox_provider(base) as provider:
        image = provider.ensure_image(scenario.spec.image, print).tag
    commands = [s.bash for s in scenario.trajectory("misaligned").steps if s.bash]

    print(
        f"\n{SCENARIO}, scripted agents, {os.cpu_count()} cores, warm pool {base.warm_pool}, "
        f"evidence {base.evidence}; episodes per minute, host CPU in core-seconds per episode"
    )
    print(
        f"  {'slots':>5} {'episodes':>8} {'raw/min':>7} {'farm/min':>8} {'farm/raw':>8}  | "
        f"farm CPU: {CPU_HEADER} {'idle':>5} {'others':>6} | raw CPU: {CPU_HEADER}"
    )
    for slots in args.concurrency:
        episodes = max(args.episodes, 2 * slots)
        episodes += episodes % 2  # the two models alternate
        raw, raw_cpu = raw_floor(client, image, commands, episodes, slots)
        idle = engine_idle()
        settings = base.model_copy(update={"session": new_session()})
        ours, cpu = farm_throughput(settings, client, admin, episodes, slots)
        print(
            f"  {slots:>5} {episodes:>8} {raw:>7.1f} {ours:>8.1f} {ours / raw:>8.2f}  | "
            f"{'':>10}{cpu_cells(cpu, episodes)} {idle * cpu.seconds / episodes:>5.2f} "
            f"{cpu.other_boxes / episodes:>6.2f} | {'':>9}{cpu_cells(raw_cpu, episodes)}",
            flush=True,
        )
    print("  " + CPU_NOTE.replace("\n", "\n  "))


if __name__ == "__main__":
    main()
