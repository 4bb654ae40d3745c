"""Measures the farm's sandbox overhead against the raw Docker floor, in one run, on one image.

Floor (Docker SDK, nothing else): create+start a detached container, ``exec_run`` of a short
bash command, ``diff()``, remove. Farm: one relayed command (``Sandbox.exec``), and one
episode's fixed overhead (start with hardening and ready wait, two host-side snapshots, the
diff, close). Prints medians and the ratios; run with ``make bench``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable

import docker

from orchestrator.config import Settings
from orchestrator.episode import EpisodeRequest, sandbox_config
from orchestrator.images.builder import ImageBuilder
from orchestrator.sandbox.base import MANAGED_LABEL
from orchestrator.sandbox.diff import diff_snapshots
from orchestrator.sandbox.docker_sandbox import DockerSandbox, owner_label
from orchestrator.scenarios.loader import load_personas, load_scenarios

COMMAND = "echo hello"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def raw_floor(client: docker.DockerClient, image: str, rounds: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"create+start": [], "exec_run": [], "diff": [], "remove": []}
    labels = {MANAGED_LABEL: "true", "farm.episode": "bench", "farm.owner": owner_label()}
    for _ in range(rounds):
        box: list = []
        samples["create+start"].append(
            timed(lambda: box.append(client.containers.run(image, detach=True, labels=labels)))
        )
        container = box[0]
        try:
            for _ in range(5):
                samples["exec_run"].append(
                    timed(lambda: container.exec_run(["bash", "-c", COMMAND]))
                )
            samples["diff"].append(timed(container.diff))
        finally:
            samples["remove"].append(timed(lambda: container.remove(force=True)))
    return samples


def farm(client, settings, scenario, image: str, rounds: int) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    samples: dict[str, list[float]] = {"relay": [], "episode overhead": [], "snapshot": []}
    persona = load_personas(settings.environments_dir)["none"]
    for _ in range(rounds):
        request = EpisodeRequest(scenario, persona, "bench", None, image)  # type: ignore[arg-type]
        config = sandbox_config(request, uuid.uuid4().hex, settings)
        started = time.perf_counter()
        sandbox = DockerSandbox.start(config, client)
        try:
            t = time.perf_counter()
            before = sandbox.snapshot()
            samples["snapshot"].append(time.perf_counter() - t)
            overhead = time.perf_counter() - started
            for _ in range(5):
                samples["relay"].append(timed(lambda: sandbox.exec(COMMAND, 30)))
            t = time.perf_counter()
            after = sandbox.snapshot()
            diff_snapshots(before, after, config.watch)
        finally:
            sandbox.close()
        samples["episode overhead"].append(overhead + time.perf_counter() - t)
    return samples


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
    ours = {
        k: statistics.median(v)
        for k, v in farm(client, settings, scenario, image, args.rounds).items()
    }
    raw_episode = floor["create+start"] + floor["diff"] + floor["remove"]

    print(f"\nimage {image}, {args.rounds} rounds, medians")
    print(f"{'raw docker':<28}{'seconds':>10}")
    for name, value in floor.items():
        print(f"  {name:<26}{value:>10.3f}")
    print(f"  {'create+start+diff+remove':<26}{raw_episode:>10.3f}")
    print(f"{'farm':<28}{'seconds':>10}{'ratio':>10}")
    print(
        f"  {'relay (Sandbox.exec)':<26}{ours['relay']:>10.3f}{ours['relay'] / floor['exec_run']:>9.2f}x  vs exec_run (target 1.2x)"
    )
    print(
        f"  {'episode overhead':<26}{ours['episode overhead']:>10.3f}"
        f"{ours['episode overhead'] / raw_episode:>9.2f}x  vs create+start+diff+remove (target 2x)"
    )
    print(f"  {'one snapshot':<26}{ours['snapshot']:>10.3f}")


if __name__ == "__main__":
    main()
