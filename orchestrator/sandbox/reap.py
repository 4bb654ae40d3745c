"""Removes farm containers whose runner is gone, by label only, never by name."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import docker
import docker.errors

from orchestrator.sandbox.base import MANAGED_LABEL


def _owner_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True  # another host's runner: we cannot tell, so leave it to `--all`
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap(
    client: docker.DockerClient | None = None,
    *,
    everything: bool = False,
) -> list[str]:
    """Remove stale farm containers and return their names.

    Stale means its owning process (``farm.owner``, host:pid) is no longer running on this
    host; containers owned by other hosts are left alone.
    ``everything`` also removes live ones.
    """
    client = client or docker.from_env()
    return _remove(
        [
            c
            for c in _labelled(client)
            if everything or not _owner_alive(c.labels.get("farm.owner", ""))
        ]
    )


def _remove(containers: list) -> list[str]:  # type: ignore[type-arg]
    removed = []
    for container in containers:
        if container.labels.get(MANAGED_LABEL) != "true":
            continue  # belt and braces: never touch anything without our label
        try:
            container.remove(force=True, v=True)
            removed.append(container.name)
        except docker.errors.NotFound:
            pass
    return removed


def _labelled(client: docker.DockerClient, *labels: str) -> list:  # type: ignore[type-arg]
    filters = {"label": [f"{MANAGED_LABEL}=true", *labels]}
    return client.containers.list(all=True, filters=filters)


def reap_episode(client: docker.DockerClient, episode_id: str) -> list[str]:
    """Remove this engine's containers of one episode (an attempt being taken over)."""
    return _remove(_labelled(client, f"farm.episode={episode_id}"))


def reap_abandoned(
    client: docker.DockerClient,
    abandoned: Callable[[set[tuple[str, int]]], set[tuple[str, int]]],
) -> list[str]:
    """Remove this engine's campaign containers whose attempt no live lease holds.

    ``abandoned`` is asked which of the (episode, attempt) pairs found here are dead; the
    queue answers, so a worker that died on this host is cleaned up by whichever worker next
    shares its engine.
    """
    found = {}
    for container in _labelled(client, "farm.attempt"):
        attempt = container.labels.get("farm.attempt", "")
        if attempt.isdigit():
            found.setdefault((container.labels.get("farm.episode", ""), int(attempt)), []).append(
                container
            )
    dead = abandoned(set(found))
    return _remove([c for pair in dead for c in found[pair]])
