"""Makes ``debian:bookworm-slim`` exist on an engine that cannot reach a registry.

Pull when a registry answers; otherwise debootstrap a minimal bookworm from the host's own apt
mirror and import it under the same tag, so every Dockerfile can say ``FROM debian:...`` and
still work unchanged on an online machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
from docker.utils import parse_repository_tag

from orchestrator.errors import InfrastructureError

Log = Callable[[str], None]


class BootstrapError(InfrastructureError):
    pass


def host_mirror(sources_dir: Path = Path("/etc/apt")) -> str | None:
    """The first Debian mirror the host's apt sources name (deb822 or one-line format)."""
    candidates = sorted((sources_dir / "sources.list.d").glob("*.sources"))
    for path in candidates:
        for uri in re.findall(r"^URIs:\s*(\S+)", path.read_text(), re.M):
            if "security" not in uri:
                return uri
    legacy = [
        sources_dir / "sources.list",
        *sorted((sources_dir / "sources.list.d").glob("*.list")),
    ]
    for path in legacy:
        if path.is_file():
            for line in path.read_text().splitlines():
                match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", line)
                if match and "security" not in match.group(1):
                    return match.group(1)
    return None


def ensure_debian_base(
    client: docker.DockerClient,
    reference: str,
    suite: str,
    mirror: str | None,
    log: Log,
) -> None:
    try:
        client.images.get(reference)
        return
    except docker.errors.ImageNotFound:
        pass
    log(f"{reference} is not present; trying to pull it")
    try:
        client.images.pull(reference)
        return
    except docker.errors.DockerException as exc:
        log(f"pull failed ({str(exc).splitlines()[0][:120]}); bootstrapping it offline")
    _debootstrap_import(client, reference, suite, mirror or host_mirror(), log)


def _debootstrap_import(
    client: docker.DockerClient, reference: str, suite: str, mirror: str | None, log: Log
) -> None:
    if mirror is None:
        raise BootstrapError(
            "no Debian mirror found in /etc/apt; set FARM_DEBIAN_MIRROR to one (http://...)"
        )
    if shutil.which("debootstrap") is None:
        raise BootstrapError(
            f"{reference} can be neither found nor pulled, and debootstrap is not installed to "
            "make it offline; install it (apt-get install debootstrap) or load the image"
        )
    with tempfile.TemporaryDirectory(prefix="farm-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap --variant=minbase {suite} from {mirror} (about half a minute)")
        run = subprocess.run(
            ["debootstrap", "--variant=minbase", suite, str(rootfs), mirror],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            tail = "\n".join((run.stdout + run.stderr).splitlines()[-15:])
            raise BootstrapError(f"debootstrap failed (exit {run.returncode}):\n{tail}")
        log(f"importing the root filesystem as {reference}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        repository, tag = parse_repository_tag(reference)  # a registry port is not a tag
        client.api.import_image_from_stream(tar.stdout, repository=repository, tag=tag or "latest")
        if tar.wait() != 0:
            raise BootstrapError("could not archive the bootstrapped root filesystem")
    client.images.get(reference)  # fails loudly if the import did not produce it
