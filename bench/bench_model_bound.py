"""Model-bound campaign throughput: how close the farm gets to what the model allows.

A stand-in model (bench/standin_model.py, an OpenAI-compatible server in its own process)
answers every turn after a fixed delay (2 s) with the next step of the shutdown scenario's
aligned reference run: its nine bash calls in order, then its submit, so an episode holds
10 turns x 2 s = 20 s of model time. The farm talks to it through the real ``openai`` SDK
as the named endpoint ``standin`` (model ``standin/aligned``), with provider concurrency high
enough that the client never queues.

For each slot count (default 1, 8, 32, 64), a campaign of ``episodes-per-slot`` x slots
episodes (at least 3 x slots) queued in Postgres and worked by one ``Worker`` with that many
slots. Printed per row: throughput, the ideal (slots x 60 / 20 s episodes a minute) and
the ratio; the median episode wall time (claim to stored) next to its 20 s of model time;
host CPU per episode (bench/hostcpu.py) next to the raw Docker floor's (create+start, exec
the same nine commands, remove; no farm) measured in the same run.

    python bench/bench_model_bound.py [--slots 1,8] [--episodes-per-slot 3] [--delay 2]
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import statistics
import threading
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
from standin_model import calls_of, start_standin

from orchestrator.campaign import CampaignSpec, plan_campaign
from orchestrator.config import Endpoint, Settings
from orchestrator.sandbox.provider import make_sandbox_provider
from orchestrator.scenarios.loader import load_personas, load_scenarios
from orchestrator.store.campaigns import CampaignStore
from orchestrator.worker import EpisodeDone, Worker

SCENARIO = "shutdown-script"
TRAJECTORY = "aligned"
MODEL = f"standin/{TRAJECTORY}"


def farm_run(
    settings: Settings, client: docker.DockerClient, admin: str, slots: int, episodes: int
) -> tuple[float, list[float], CpuReport]:
    """Episodes per minute, each episode's wall time, and the host CPU of the whole run."""
    done: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def finished(episode: EpisodeDone) -> None:
        with lock:
            if episode.status == "completed":
                done.append(episode.seconds)
            else:
                errors[(episode.error or "?")[:300]] += 1

    with campaign_database(admin, settings.migrations_dir) as (engine, database):
        spec = CampaignSpec(
            name=f"bench-model-{slots}", scenarios=[SCENARIO], models=[MODEL], repeats=episodes
        )
        scenarios = load_scenarios(settings.environments_dir, settings.images_dir)
        personas = load_personas(settings.environments_dir)
        planned = plan_campaign(spec, scenarios, personas, settings)
        campaign = CampaignStore(engine).submit(spec, planned)
        worker = Worker(
            settings,
            engine,
            concurrency=slots,
            exit_when_idle=True,  # idle slots poll every 2 s, the worker default
            on_episode=finished,
        )
        assert settings.session is not None
        meter = CpuMeter(client, settings.session, database=database).start()
        started = time.perf_counter()
        stats = worker.run()
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        summary = CampaignStore(engine).get(campaign)
        assert summary is not None, campaign
        completed = summary.counts["completed"]
        if completed != episodes:  # say why, and count only what completed
            print(f"  {slots} slots: {episodes - completed} episodes did not complete ({stats}):")
            for error, count in errors.most_common(5):
                print(f"    {count} x {error}")
    return completed / elapsed * 60, done, cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slots", default="1,8,32,64", help="comma-separated slot counts")
    parser.add_argument("--episodes-per-slot", type=int, default=3)
    parser.add_argument("--delay", type=float, default=2.0, help="the model's seconds per turn")
    args = parser.parse_args()
    slot_counts = [int(s) for s in args.slots.split(",") if s]
    logging.basicConfig(level=logging.WARNING)

    admin = admin_url()
    base = Settings()
    client = docker.from_env()
    scenario = load_scenarios(base.environments_dir, base.images_dir)[SCENARIO]
    trajectory = scenario.trajectory(TRAJECTORY)
    calls = calls_of(trajectory)
    commands = [s.bash for s in trajectory.steps if s.bash]
    model_seconds = len(calls) * args.delay
    import orchestrator.agents.openai_provider  # noqa: F401 - the SDK's import, outside the clock

    server, url = start_standin(calls, args.delay)
    try:
        with make_sandbox_provider(base) as provider:
            image = provider.ensure_image(scenario.spec.image, print).tag
        print(
            f"\n{SCENARIO} against a stand-in model: {len(calls)} turns x {args.delay:g} s = "
            f"{model_seconds:g} s of model time per episode; {os.cpu_count()} cores, "
            f"warm pool {base.warm_pool}, evidence {base.evidence}"
        )
        print(
            f"  {'slots':>5} {'episodes':>8} {'ideal/min':>9} {'farm/min':>8} {'ratio':>5} "
            f"{'median s':>8}  | farm CPU: {CPU_HEADER} {'idle':>5} {'others':>6} "
            f"| raw: {'total':>5}"
        )
        for slots in slot_counts:
            episodes = max(1, args.episodes_per_slot) * slots
            settings = base.model_copy(
                update={
                    "session": new_session(),
                    "endpoints": {"standin": Endpoint(base_url=url, api="openai")},
                    "provider_concurrency_default": max(256, 2 * slots),
                }
            )
            idle = engine_idle()
            per_minute, walls, cpu = farm_run(settings, client, admin, slots, episodes)
            threads = min(slots, 8)
            raw_episodes = min(episodes, 2 * threads)
            _, raw_cpu = raw_floor(client, image, commands, raw_episodes, threads)
            ideal = slots * 60 / model_seconds
            median = statistics.median(walls) if walls else float("nan")
            print(
                f"  {slots:>5} {episodes:>8} {ideal:>9.1f} {per_minute:>8.1f} "
                f"{per_minute / ideal:>5.2f} {median:>8.1f}  | "
                f"{'':>10}{cpu_cells(cpu, episodes)} {idle * cpu.seconds / episodes:>5.2f} "
                f"{cpu.other_boxes / episodes:>6.2f} | "
                f"{'':>5}{raw_cpu.total / raw_episodes:>5.2f}",
                flush=True,
            )
        print(f"  median s: a completed episode's wall time, claim to stored ({model_seconds:g} s")
        print("  of it the model's); farm/min counts completed episodes only, CPU is per episode")
        print("  run; raw: the Docker floor's CPU per episode (same commands, no farm)")
        print("  " + CPU_NOTE.replace("\n", "\n  "))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
