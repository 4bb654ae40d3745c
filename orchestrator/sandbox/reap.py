"""Removes farm containers whose runner is gone, by label only, never by name."""

from __future__ import annotations

import os
import socket

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
    removed = []
    for container in client.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}=true"}):
        if container.labels.get(MANAGED_LABEL) != "true":
            continue  # belt and braces: never touch anything without our label
        if not everything and _owner_alive(container.labels.get("farm.owner", "")):
            continue
        try:
            container.remove(force=True, v=True)
            removed.append(container.name)
        except docker.errors.NotFound:
            pass
    return removed
