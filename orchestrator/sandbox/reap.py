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


def remove_container(client: docker.DockerClient, container_id: str) -> bool:
    """Force-remove one container; False if it was already gone or being removed (a sweep
    and the container's own runner may race to it)."""
    try:
        client.api.remove_container(container_id, force=True, v=True)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code == 409 and "in progress" in str(exc):
            return False
        raise
    return True


def _labelled(client: docker.DockerClient, *labels: str) -> list[dict]:
    """Our containers (by label, never by name) as the engine lists them: id, names and
    labels, read in one call, so one removed meanwhile cannot fail the listing."""
    filters = {"label": [f"{MANAGED_LABEL}=true", *labels]}
    listed = client.api.containers(all=True, filters=filters)
    return [c for c in listed if (c.get("Labels") or {}).get(MANAGED_LABEL) == "true"]


def _remove(client: docker.DockerClient, containers: list[dict]) -> list[str]:
    names = [(c["Id"], (c.get("Names") or [c["Id"][:12]])[0].lstrip("/")) for c in containers]
    return [name for container_id, name in names if remove_container(client, container_id)]


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
    stale = [
        c
        for c in _labelled(client)
        if everything or not _owner_alive(c["Labels"].get("farm.owner", ""))
    ]
    return _remove(client, stale)


def reap_episode(client: docker.DockerClient, episode_id: str) -> list[str]:
    """Remove this engine's containers of one episode (an attempt being taken over)."""
    return _remove(client, _labelled(client, f"farm.episode={episode_id}"))


def reap_abandoned(
    client: docker.DockerClient,
    abandoned: Callable[[set[tuple[str, int]]], set[tuple[str, int]]],
) -> list[str]:
    """Remove this engine's campaign containers whose attempt no live lease holds.

    ``abandoned`` is asked which of the (episode, attempt) pairs found here are dead; the
    queue answers, so a worker that died on this host is cleaned up by whichever worker next
    shares its engine.
    """
    found: dict[tuple[str, int], list[dict]] = {}
    for container in _labelled(client, "farm.attempt"):
        labels = container["Labels"]
        if labels.get("farm.attempt", "").isdigit():
            pair = (labels.get("farm.episode", ""), int(labels["farm.attempt"]))
            found.setdefault(pair, []).append(container)
    dead = abandoned(set(found))
    return _remove(client, [c for pair in dead for c in found[pair]])
