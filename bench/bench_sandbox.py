"""Measures the farm's sandbox overhead against the raw Docker floor, in one run, on one image.

Floor (Docker SDK, nothing else): create+start a detached container, ``exec_run`` of a short
bash command, ``diff()``, remove. Farm: one relayed command (``Sandbox.exec``), and one
episode's fixed overhead (start with hardening and ready wait, two host-side snapshots, the
diff, close). Prints medians and the ratios, against the floor without ``diff()`` (the farm
reads the writable layer; the engine's diff is its fallback) and with one; run with
``make bench``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import docker

from orchestrator.config import Settings
from orchestrator.episode import EpisodeRequest, sandbox_config
from orchestrator.images.builder import ImageBuilder
from orchestrator.sandbox.base import MANAGED_LABEL
from orchestrator.sandbox.diff import diff_snapshots
from orchestrator.sandbox.docker_sandbox import owner_label
from orchestrator.sandbox.provider import SandboxProvider, make_sandbox_provider
from orchestrator.scenarios.loader import load_personas, load_scenarios

COMMAND = "echo hello"


@contextmanager
def clock(samples: dict[str, list[float]], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    samples.setdefault(name, []).append(time.perf_counter() - start)


def raw_floor(client: docker.DockerClient, image: str, rounds: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    labels = {MANAGED_LABEL: "true", "farm.episode": "bench", "farm.owner": owner_label()}
    for _ in range(rounds):
        with clock(samples, "create+start"):
            container = client.containers.run(image, detach=True, labels=labels)
        try:
            for _ in range(5):
                with clock(samples, "exec_run"):
                    container.exec_run(["bash", "-c", COMMAND])
            with clock(samples, "diff"):
                container.diff()
        finally:
            with clock(samples, "remove"):
                container.remove(force=True)
    return samples


def farm(  # type: ignore[no-untyped-def]
    provider: SandboxProvider, settings, scenario, image: str, rounds: int
) -> dict[str, list[float]]:
    """Episode overhead = start + baseline snapshot + final snapshot + diff + close (the
    removal is queued, off the critical path, as in an episode; no warm pool)."""
    samples: dict[str, list[float]] = {}
    persona = load_personas(settings.environments_dir)["none"]
    for _ in range(rounds):
        request = EpisodeRequest(scenario, persona, "bench", None, image)  # type: ignore[arg-type]
        config = sandbox_config(request, uuid.uuid4().hex, settings)
        fixed = 0.0
        t = time.perf_counter()
        sandbox = provider.start(config)
        try:
            with clock(samples, "snapshot"):
                before = sandbox.snapshot()
            fixed += time.perf_counter() - t
            for _ in range(5):
                with clock(samples, "relay"):
                    sandbox.exec(COMMAND, 30)
            t = time.perf_counter()
            after = sandbox.snapshot()
            diff_snapshots(before, after, config.watch)
        finally:
            sandbox.close()
        samples.setdefault("episode overhead", []).append(fixed + time.perf_counter() - t)
    return samples


def _row(name: str, seconds: float, ratio: float | None = None, note: str = "") -> str:
    ratio_text = f"{ratio:>9.2f}x" if ratio is not None else " " * 10
    return f"  {name:<26}{seconds:>10.3f}{ratio_text}  {note}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", default="shutdown-script")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    settings = Settings()
    client = docker.from_env()
    scenario = load_scenarios(settings.environments_dir, settings.images_dir)[args.scenario]
    image = ImageBuilder(settings, client).ensure(scenario.spec.image, print).tag

    floor = {k: statistics.median(v) for k, v in raw_floor(client, image, args.rounds).items()}
    with make_sandbox_provider(settings) as provider:
        ours = {
            k: statistics.median(v)
            for k, v in farm(provider, settings, scenario, image, args.rounds).items()
        }
    # the farm reads changes from the writable layer, so the engine's diff (its fallback) is
    # not part of what an episode must pay; both floors are printed
    raw_episode = floor["create+start"] + floor["remove"]
    raw_with_diff = raw_episode + floor["diff"]

    print(f"\nimage {image}, {args.rounds} rounds, medians in seconds")
    print("raw docker")
    for name, value in floor.items():
        print(_row(name, value))
    print(_row("create+start+remove", raw_episode))
    print(_row("create+start+diff+remove", raw_with_diff))
    print("farm")
    relay_ratio = ours["relay"] / floor["exec_run"]
    print(_row("relay (Sandbox.exec)", ours["relay"], relay_ratio, "vs exec_run (target 1.2x)"))
    episode_ratio = ours["episode overhead"] / raw_episode
    print(_row("episode overhead", ours["episode overhead"], episode_ratio, "vs raw (target 2x)"))
    with_diff = ours["episode overhead"] / raw_with_diff
    print(_row("", ours["episode overhead"], with_diff, "vs raw with one diff()"))
    print(_row("one snapshot", ours["snapshot"]))


if __name__ == "__main__":
    main()
