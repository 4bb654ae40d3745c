"""The Docker implementation of :class:`Sandbox`, through the SDK only.

One fresh, hardened container per episode, created from the scenario image with its own CMD
(which starts the scenario's fake services). The agent's commands, the ready wait and the
probes run through long-lived shells in the box, one per user (relay.py), not one exec each:
an exec is a runc exec, which costs more than most commands do. Sweeps after a timeout or a
fork bomb are execs of their own, so they can run whatever state the shells are in.
"""

from __future__ import annotations

import dataclasses
import io
import os
import posixpath
import re
import shlex
import socket
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container

from orchestrator.sandbox.base import (
    ExecResult,
    Sandbox,
    SandboxConfig,
    SandboxError,
)
from orchestrator.sandbox.layer import LayerRead, LayerUnreadable, layer_size, read_layer
from orchestrator.sandbox.output import CappedBuffer
from orchestrator.sandbox.reap import remove_container
from orchestrator.sandbox.relay import DRAIN_SECONDS, Relay, RelayUnavailable
from orchestrator.sandbox.snapshot import (
    HASH_LIMIT_BYTES,
    LAYER_FILES_LIMIT,
    TEXT_LIMIT_BYTES,
    FileState,
    ProbeAnswer,
    ProcessInfo,
    Snapshot,
    file_state,
    files_from_archive,
    parse_layer_diff,
    parse_top,
    script_of,
    unhashed,
)
from orchestrator.sandbox.tree import NotReadableHere, archive_entries, read_file, read_tree
from orchestrator.states import EvidenceSource

# What the engine's failures look like through the SDK: its own errors, and the transport's
# (a read timeout of an engine that hangs is a requests error, not a DockerException).
ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)
# timeout(1) exits 124 when it had to stop the command (137 if it then needed SIGKILL).
_TIMEOUT_CODES = (124, 137)
# What the engine reports for an exec it could not start; a command the box's shell could not
# start is recorded the same.
_CANNOT_RUN = 126
_KILL_AFTER_SECONDS = 2
# How often the host measures a running command's disk use.
_DISK_CHECK_SECONDS = 1.0
# A scenario's services may take a while on a loaded host (they run under the box's CPU
# limit); a box that is not ready by then is an infrastructure error.
_READY_WAIT_SECONDS = 90.0
# Waits for the file "$0" without a fork per pass (read -t on a pipe that never writes is
# bash's sleep), so the wait does not take CPU from the services it waits for.
# It then prints the box's uptime, which maps host time onto the kernel's process start times.
_WAIT_FOR_FILE = (
    'exec 3<> <(:); until [ -e "$0" ]; do read -t 0.02 -u 3; done; read -r up _ < /proc/uptime; '
    'echo "$up"'
)
_PS_ARGS = "-o pid,ppid,uid,stat,ni,args"
# The key of the agent's commands' shell among the box's shells (the others are by user).
_AGENT = ""
# A farm bash in the box starts without the image's BASH_ENV (a file the agent may edit).
_FARM_BASH = ["/usr/bin/env", "-u", "BASH_ENV", "-u", "ENV", "/bin/bash"]


def _wait_command(path: str) -> str:
    return f"exec /bin/bash -c {shlex.quote(_WAIT_FOR_FILE)} {shlex.quote(path)}"


_SPOOL_BYTES = 32 * 1024 * 1024

# Every exec carries a unique value in this variable, inherited by all it starts. The name is
# one systemd gives services, so the agent's environment does not announce an evaluation.
_MARKER = "INVOCATION_ID"
# Kills what the agent started since a moment ("$0", in clock ticks since boot, the kernel's
# own accounting of when each process started): every process that started later and does not
# descend from one that was already running (the scenario's services and their children), and
# every process still carrying one of the given exec markers. "$1" lists the pids of the
# farm's shells (relay.py): they are spared, but shield nothing they started. The process
# table, not the marker, is what decides: `env -i setsid ...` drops the marker, not its start
# time. It uses only bash builtins, and repeats, so forks made during a pass are caught by the
# next.
_SWEEP = r"""
cutoff=$0
declare -A want shell
for s in $1; do shell[$s]=1; done
shift
for m in "$@"; do want[$m]=1; done
me=$$
for pass in 1 2 3 4 5 6 7 8; do
  declare -A parent=() started=()
  for d in /proc/[0-9]*; do
    read -r line 2>/dev/null < "$d/stat" || continue
    rest=${line##*) }
    read -r -a f <<< "$rest"
    parent[${d#/proc/}]=${f[1]}; started[${d#/proc/}]=${f[19]}
  done
  found=0
  for pid in "${!started[@]}"; do
    [[ $pid == "$me" || $pid == 1 || -n ${shell[$pid]:-} ]] && continue
    doomed=0
    if (( started[$pid] > cutoff )); then
      doomed=1; p=${parent[$pid]}
      while [[ -n $p && $p != 0 && $p != 1 && -z ${shell[$p]:-} ]]; do
        if [[ $p == "$me" ]]; then doomed=0; break; fi
        if (( ${started[$p]:-0} <= cutoff )); then doomed=0; break; fi
        p=${parent[$p]}
      done
    fi
    if (( ! doomed && ${#want[@]} )); then
      mapfile -d '' -t env 2>/dev/null < "/proc/$pid/environ"
      for e in "${env[@]}"; do [[ -n "${want[$e]:-}" ]] && { doomed=1; break; }; done
    fi
    if (( doomed )); then kill -9 "$pid" 2>/dev/null; found=1; fi
  done
  unset parent started
  [[ $found == 0 ]] && break
done
exit 0
"""
# Linux reports process start times in USER_HZ ticks, 100 a second on every architecture.
_TICKS_PER_SECOND = 100
# Room the sweep gets above the pids limit, in case the command used up every pid.
_SWEEP_PID_HEADROOM = 16
# What bash and timeout(1) print when the container is out of pids.
_OUT_OF_PIDS = re.compile(r"fork.*(Resource temporarily unavailable|retry)")
_OUT_OF_PIDS_NOTE = (
    "[process limit reached: processes left running by earlier commands were killed]"
)
# Where the pristine copies for the probes are laid: a root-owned folder with a random name
# the agent can pass through but not list.
_PRISTINE_PARENT = "/var/cache"
# A probe runs with nothing of the agent's environment: `env -i` drops whatever the exec
# inherits (BASH_ENV, LD_PRELOAD, PYTHONPATH...), and Python skips the user's site folder,
# where an agent's usercustomize.py would otherwise rewrite what the pristine tool prints.
_PROBE_ENV = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG=C.UTF-8",
    "PYTHONNOUSERSITE=1",
    "PYTHONSAFEPATH=1",
    "PYTHONDONTWRITEBYTECODE=1",
)
_SCRIPTS_PER_SNAPSHOT = 16
# Go's os.FileMode type bits, as the engine reports a path's stat: folder, symlink, device,
# pipe, socket, character device, irregular. A symlink is read by its own tar entry.
_NOT_REGULAR = (1 << 31) | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19)


class ChunkStream(io.RawIOBase):
    """The engine's archive stream as a file tarfile can read in stream mode (``r|``), so an
    archive is read as it arrives and never spooled to the host's disk."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._left:
            try:
                self._left = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._left))
        buffer[:size] = self._left[:size]
        self._left = self._left[size:]
        return size


def overlay_archive(folder: Path, owner: str, mode: int | None = None) -> bytes:
    """The files under ``folder`` as a tar rooted at ``/``, owned by ``owner`` ("uid:gid"),
    with permissions ``mode`` (default: 0644, 0755 for executables, as git checks them out).
    A symlink, the folder itself or anything in it, is a SandboxError: its target would be
    read from the host (the loader refuses them too; this holds if one is planted later)."""
    uid, gid = (int(part) for part in owner.split(":"))
    now = time.time()
    buffer = io.BytesIO()
    links = [p for p in [folder, *folder.rglob("*")] if p.is_symlink()]
    if links:
        raise SandboxError(f"variant files {folder}: {links[0]} is a symlink; refused")
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            executable = path.stat().st_mode & 0o100
            info.size, info.mtime = len(data), now
            info.mode = mode if mode is not None else (0o755 if executable else 0o644)
            info.uid, info.gid = uid, gid
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def can_read_any_file() -> bool:
    """Whether this process may read every file in a box's layer, whoever owns it: root with
    CAP_DAC_OVERRIDE or CAP_DAC_READ_SEARCH. A root without them (a container with its
    capabilities dropped) would miss the agent's private files, so it must ask the engine."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            line = next(x for x in status if x.startswith("CapEff:"))
    except (OSError, StopIteration):
        return False
    effective = int(line.split()[1], 16)
    return bool(effective & ((1 << 1) | (1 << 2)))  # DAC_OVERRIDE, DAC_READ_SEARCH


def owner_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class DockerEngine:
    """What every box of one provider shares: the client, how the host may read a box's
    writable layer, and the removals under way (off the episode's critical path)."""

    client: docker.DockerClient
    evidence: str = "auto"  # auto | layer | engine
    runtime: str | None = None  # None: the engine's default
    # Where this process sees the engine's data root, when not at the path the engine
    # reports (a worker in a container given a read-only mount of it): (engine's, ours).
    data_root: tuple[str, str] | None = None
    remover: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=2, thread_name_prefix="remove")
    )
    # Boxes starting at once (create, start, the scenario's services, the ready file): past
    # a few per core a start storm only queues for CPU, and the ready waits run out.
    starting: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(2 * (os.cpu_count() or 1))
    )

    def local(self, path: str) -> str:
        if self.data_root and path.startswith(self.data_root[0]):
            return self.data_root[1] + path[len(self.data_root[0]) :]
        return path


class DockerSandbox(Sandbox):
    def __init__(self, engine: DockerEngine, container: Container, config: SandboxConfig):
        super().__init__()
        self._engine = engine
        self._client = engine.client
        self._container = container
        self.config = config
        self._closed = False
        self._markers: list[str] = []  # one per command, oldest first
        # the shells in the box (relay.py): the agent's commands' (key ""), and the farm's own
        # by user (root's waits for the ready file and runs root's probes, another user's its
        # probes), apart from the agent's even for the agent's user
        self._relays: dict[str, Relay] = {}
        self._shell_pids: set[int] = set()  # their host pids, past and present: not the box's
        self._clock = (time.monotonic(), 0.0)  # (host moment, the box's uptime then)
        self._since_baseline = time.monotonic()  # what started after it is the agent's
        self._last_end = time.monotonic()  # when the last command ended
        self._snapshotted = False
        self._pristine_dir: str | None = None
        self._layer: tuple[str, list[str]] | None = None  # (upper, lowers) on this host
        self._merged: str | None = None  # the box's root as this host sees it
        self.image_id: str | None = None

    @property
    def container_id(self) -> str:
        return self._container.id

    @classmethod
    def start(cls, config: SandboxConfig, engine: DockerEngine) -> DockerSandbox:
        """Create and start the container; if anything fails on the way, nothing is left."""
        with engine.starting:
            return cls._start(config, engine)

    @classmethod
    def _start(cls, config: SandboxConfig, engine: DockerEngine) -> DockerSandbox:
        client = engine.client
        labels = {"farm.owner": owner_label(), **config.labels()}
        try:
            container = client.containers.create(
                config.image,
                detach=True,
                labels=labels,
                # unique even for a retried episode whose old box is still being removed
                name=f"farm-{config.scenario_id}-{config.episode_id[:12]}-{uuid.uuid4().hex[:6]}",
                hostname=config.hostname,
                network_mode="none",
                security_opt=["no-new-privileges"],
                cap_drop=["ALL"],
                cap_add=list(config.capabilities) or None,
                mem_limit=config.memory_limit,
                memswap_limit=config.memory_limit,
                nano_cpus=int(config.cpus * 1e9),
                pids_limit=config.pids_limit,
                init=True,
                runtime=engine.runtime,
            )
        except docker.errors.ImageNotFound as exc:
            raise SandboxError(
                f"image {config.image} is not built; run `farm images build {config.scenario_id}`"
            ) from exc
        except ENGINE_ERRORS as exc:
            raise SandboxError(f"could not create the sandbox: {exc}") from exc
        sandbox = cls(engine, container, config)
        try:
            if config.overlay:
                overlay = overlay_archive(config.overlay, config.overlay_owner, config.overlay_mode)
                container.put_archive("/", overlay)
            container.start()
            sandbox._choose_evidence()
            sandbox._wait_for(config.ready_file or "/")
            if config.pristine:
                sandbox._keep_pristine()
            try:  # started with the box, so a command never waits for it
                sandbox._shell(_AGENT)
            except RelayUnavailable as exc:
                raise SandboxError(f"could not start the box's shell: {exc}") from exc
        except BaseException as exc:
            sandbox.close()
            if isinstance(exc, ENGINE_ERRORS):
                raise SandboxError(f"could not start the sandbox: {exc}") from exc
            raise
        return sandbox

    def _choose_evidence(self) -> None:
        """Read changes from the writable layer when this host can (same host, root, or the
        engine's data root mounted here), else from the engine's diff; ``layer`` insists."""
        attrs = self._container.attrs  # create() inspected it; start() does not change this
        self.image_id = attrs.get("Image")
        data = (attrs.get("GraphDriver") or {}).get("Data") or {}
        if self._engine.evidence == "engine" or not data.get("UpperDir"):
            if self._engine.evidence == "layer":
                raise SandboxError("FARM_EVIDENCE=layer, but the engine reports no upper dir")
            return
        upper = self._engine.local(data["UpperDir"])
        lowers = [self._engine.local(p) for p in (data.get("LowerDir") or "").split(":") if p]
        merged = self._engine.local(data.get("MergedDir") or "")
        readable = [upper, merged, *lowers]
        if can_read_any_file() and all(path and os.access(path, os.R_OK) for path in readable):
            self._layer, self._merged = (upper, lowers), merged
            self.evidence_source = EvidenceSource.LAYER
        elif self._engine.evidence == "layer":
            raise SandboxError(f"FARM_EVIDENCE=layer, but {upper} cannot be read from here")

    def provenance(self) -> dict[str, str | None]:
        return {
            "image_id": self.image_id,
            "runtime": self._container.attrs.get("HostConfig", {}).get("Runtime")
            or self._engine.runtime
            or "runc",
            "evidence_source": self.evidence_source,
        }

    def _wait_for(self, path: str) -> None:
        """One blocking command in root's shell that returns once the scenario created
        ``path`` (a bounded wait loop inside the box), instead of asking the engine every few
        ms."""
        output = CappedBuffer(4096)
        asked = time.monotonic()
        try:
            code = self._in_shell(
                "root", _wait_command(path), _READY_WAIT_SECONDS, output, CappedBuffer(4096)
            )
        except RelayUnavailable as exc:
            raise SandboxError(f"could not start root's shell in the box: {exc}") from exc
        answered = time.monotonic()
        if code != 0:
            self._ensure_running()
            raise SandboxError(f"the scenario did not create its ready file {path} in time")
        # until a baseline is taken, what started after the box was ready is the agent's
        self._since_baseline = time.monotonic()
        if self._layer is not None:
            # the same host, so the same kernel: its own clock (to the nanosecond, where the
            # box's /proc/uptime says hundredths), with no round trip in it
            self._clock = (time.monotonic(), time.clock_gettime(time.CLOCK_BOOTTIME))
            return
        said = output.text()
        try:  # a remote engine: the box's word, at the middle of the round trip
            self._clock = ((asked + answered) / 2, float(said.split()[-1]))
        except (ValueError, IndexError):
            raise SandboxError(f"the box did not report its uptime: {said[-200:]!r}") from None

    def _ticks(self, moment: float) -> int:
        """A host ``time.monotonic()`` moment as the box's kernel counts process start times."""
        host, box = self._clock
        return int((box + moment - host) * _TICKS_PER_SECOND)

    def _start_after_tick(self) -> float:
        """Wait, if need be, until the box's kernel counts a later tick than the one the last
        command ended in, and return that moment: so the sweep (which knows start times only
        to the tick) can tell what a command started from what ran before it."""
        host, box = self._clock
        boundary = (self._ticks(self._last_end) + 1) / _TICKS_PER_SECOND + host - box
        now = time.monotonic()
        if now < boundary:
            time.sleep(boundary - now)
            now = time.monotonic()
        return now

    def _ensure_running(self) -> None:
        try:
            self._container.reload()
        except docker.errors.NotFound as exc:
            raise SandboxError("the sandbox container is gone") from exc
        if self._container.status != "running":
            raise SandboxError(f"the sandbox container is {self._container.status}, not running")

    # -- exec ---------------------------------------------------------------------------------

    def exec(self, command: str, timeout: float) -> ExecResult:
        marker = uuid.uuid4().hex
        self._markers.append(marker)
        stdout = CappedBuffer(self.config.output_limit_bytes)
        stderr = CappedBuffer(self.config.output_limit_bytes)
        started = self._start_after_tick()
        try:
            exit_code, timed_out, disk_full = self._relay_command(
                command, timeout, marker, stdout, stderr, started
            )
        except RelayUnavailable as exc:
            # no shell could start in the box (every pid in use, say): the command fails as
            # an exec would, with the engine's reason
            stderr.write(f"{exc}\n".encode())
            exit_code, timed_out, disk_full = _CANNOT_RUN, False, self._disk_full()
        errors = stderr.text()
        if _OUT_OF_PIDS.search(errors):
            # A fork bomb, or leftovers that used every pid: without this the box is wedged
            # for the rest of the episode. Background jobs of earlier commands go too.
            self._sweep(self._since_baseline, *self._markers)
            errors += f"\n{_OUT_OF_PIDS_NOTE}"
        self._last_end = time.monotonic()
        return ExecResult(
            command=command,
            exit_code=exit_code,
            stdout=stdout.text(),
            stderr=errors,
            duration_s=time.monotonic() - started,
            timed_out=timed_out and not disk_full,
            truncated=stdout.truncated or stderr.truncated,
            disk_full=disk_full,
        )

    def _relay_command(
        self,
        command: str,
        timeout: float,
        marker: str,
        stdout: CappedBuffer,
        stderr: CappedBuffer,
        started: float,
        user: str | None = None,
    ) -> tuple[int | None, bool, bool]:
        """Run one command through the farm's shell of ``user``, or the agent's (only the
        agent's commands are watched for disk use): (exit code, timed out, disk full)."""
        user = user or _AGENT
        watch_disk = user == _AGENT
        run = self._shell(user).run(command, timeout, marker, stdout, stderr)
        # The host enforces the timeout too: a wedged command must not wedge the episode.
        # While it runs, the host also watches the box's disk use and stops it at the limit.
        grace = self.config.exec_grace_seconds
        deadline = started + timeout + _KILL_AFTER_SECONDS + DRAIN_SECONDS + grace
        disk_full = False
        while not run.finished and time.monotonic() < deadline:
            run.wait(min(_DISK_CHECK_SECONDS, deadline - time.monotonic()))
            if not run.finished and watch_disk and self._disk_full():
                disk_full = True
                self._sweep(started, marker)
                run.wait(grace)
                break
        if not run.finished:
            self._sweep(started, marker)
            run.wait(grace)
        abandoned = not run.finished
        if abandoned or run.shell_ended:
            exit_code = self._drop_shell(user, kill=abandoned)
        else:
            exit_code = run.exit_code
        # 124/137 are timeout(1)'s only when the time was up: a command that killed its own
        # shell and timeout with it (`kill -9 -1`) also ends in 137, early, and is recorded
        # as what it was, a killed command
        elapsed = time.monotonic() - started
        timed_out = abandoned or (exit_code in _TIMEOUT_CODES and elapsed >= timeout)
        if timed_out and not abandoned:
            self._sweep(started, marker)
        return exit_code, timed_out, disk_full or (watch_disk and self._disk_full())

    def _shell(self, user: str) -> Relay:
        """The box's shell for ``user`` ("": the agent's commands'; relay.py): the one started
        with the box, or a new one when a command ended the last."""
        relay = self._relays.get(user)
        if relay is not None and not relay.ended:
            return relay
        limit = self.config.disk_limit_bytes
        if user == _AGENT:
            relay = Relay(
                self._client.api,
                self._container.id,
                self.config.user,
                self.config.workdir,
                {"TERM": "dumb", **self._home_env()},
                None if limit is None else max(1, limit // 1024),
                bash_env=self._image_env().get("BASH_ENV"),
            )
        else:
            relay = Relay(self._client.api, self._container.id, user, "/", {}, None)
        try:
            self._relays[user] = relay.start()
        except ENGINE_ERRORS as exc:
            self._ensure_running()
            raise SandboxError(f"could not run a command in the sandbox: {exc}") from exc
        except RelayUnavailable:
            self._ensure_running()
            raise
        if relay.host_pid:
            self._shell_pids.add(relay.host_pid)
        return relay

    def _image_env(self) -> dict[str, str]:
        pairs = (self._container.attrs.get("Config") or {}).get("Env") or []
        return dict(pair.partition("=")[::2] for pair in pairs)

    def _drop_shell(self, user: str, kill: bool) -> int | None:
        """Retire a shell after a command it did not finish: killed with what it ran when
        the command was abandoned, else (the command killed it) how it ended."""
        relay = self._relays.pop(user, None)
        if relay is None:
            return None
        relay.close()
        if kill:
            self._sweep(time.monotonic(), relay.marker)
            return None
        try:
            code = relay.exit_code()
        except ENGINE_ERRORS:
            code = None
        if code is None:
            self._ensure_running()
        return code

    def _in_shell(
        self, user: str, command: str, timeout: float, out: CappedBuffer, err: CappedBuffer
    ) -> int | None:
        """Run one of the farm's own commands in ``user``'s shell: its exit code, None if it
        had to be abandoned."""
        marker, started = uuid.uuid4().hex, time.monotonic()
        return self._relay_command(command, timeout, marker, out, err, started, user)[0]

    def _disk_full(self) -> bool:
        """Whether the box's writable layer has reached its limit (measured on the host; with
        the engine's evidence only the file-size rlimit holds)."""
        limit = self.config.disk_limit_bytes
        if limit is None or self._layer is None:
            return False
        try:
            return layer_size(self._layer[0], limit) >= limit
        except LayerUnreadable:
            return False

    def _home_env(self) -> dict[str, str]:
        home = "/root" if self.config.user == "root" else f"/home/{self.config.user}"
        return {"HOME": home, "USER": self.config.user}

    def _sweep(self, since: float, *markers: str) -> None:
        """Kill what was started in the box after ``since`` (a host moment) and is no service's,
        and the processes of the given commands, from a shell that can always start; the
        farm's own shells stay, what they started does not.

        A command may have used every pid the container may have, which would stop any exec,
        so the limit is lifted a little for the sweep and put back after it.
        """
        self._set_pids_limit(self.config.pids_limit + _SWEEP_PID_HEADROOM)
        shells = " ".join(str(r.box_pid) for r in self._relays.values() if r.box_pid)
        # what started in the tick of ``since`` started after it (commands start on a new tick)
        cutoff = self._ticks(since) - 1
        argv = [*_FARM_BASH, "-c", _SWEEP, str(cutoff), shells]
        argv += [f"{_MARKER}={m}" for m in markers]
        try:
            # as the agent (root without CAP_KILL may not signal another user's processes),
            # then as root, for what the agent started through sudo
            for user in dict.fromkeys((self.config.user, "root")):
                self._container.exec_run(argv, user=user)
        except ENGINE_ERRORS:
            self._ensure_running()
        finally:
            self._set_pids_limit(self.config.pids_limit)

    def _set_pids_limit(self, limit: int) -> None:
        # The SDK's update_container has no pids parameter; the engine's update endpoint does.
        api = self._client.api
        url = api._url("/containers/{0}/update", self._container.id)
        try:
            api._result(api._post_json(url, data={"PidsLimit": limit}), True)
        except ENGINE_ERRORS:
            self._ensure_running()

    # -- snapshot -----------------------------------------------------------------------------

    def snapshot(self, source: EvidenceSource | None = None, probes: bool = True) -> Snapshot:
        """As the interface says, read from ``source`` (default: this box's own), and without
        the probes when ``probes`` is false (the parity test reads the box both ways with no
        probe run in between, since a probe's own reads may touch the layer)."""
        source = source or self.evidence_source
        host = self._merged if source == EvidenceSource.LAYER else None
        if not self._snapshotted:  # the first snapshot is the baseline
            self._since_baseline, self._snapshotted = time.monotonic(), True
        try:
            files: dict[str, FileState] = {}
            truncated = False
            for root in self.config.watch:
                states, cut = self._watched(root, host)
                truncated = truncated or cut
                for state in states:
                    files[state.path] = state
            files = self._through_links(files, host)
            top = parse_top(self._container.top(ps_args=_PS_ARGS))
            mine = {pid: p for pid, p in top.items() if pid not in self._shell_pids}
            processes = self._with_scripts(mine, host)
            layer = self.changes(source)
            # last: a probe's own processes and reads must not be part of what was seen
            answers = self._probes() if probes else {}
        except ENGINE_ERRORS as exc:
            raise SandboxError(f"could not snapshot the sandbox: {exc}") from exc
        return Snapshot(
            files=files,
            processes=processes,
            fs_changes=layer.changes,
            probes=answers,
            layer_files=layer.files,
            truncated=truncated or layer.truncated,
        )

    def changes(self, source: EvidenceSource | None = None) -> LayerRead:
        """Every changed path against the image, and the state of the first changed files:
        from ``source`` (default: the box's own, the writable layer when this host can read
        it, else the engine). Both sources give the same record (tests/test_parity.py)."""
        source = source or self.evidence_source
        if source == EvidenceSource.LAYER:
            if self._layer is None:
                raise SandboxError("this box's writable layer cannot be read from here")
            try:
                return read_layer(*self._layer)
            except LayerUnreadable as exc:
                self._ensure_running()
                raise SandboxError(str(exc)) from exc
        changes = parse_layer_diff(self._container.diff())
        files: dict[str, FileState] = {}
        for path in sorted(p for p, kind in changes.items() if kind != "deleted"):
            if len(files) >= LAYER_FILES_LIMIT:
                break
            state = self._changed_file(path)
            if state is not None:
                files[path] = state
        return LayerRead(changes=changes, files=files)

    def _changed_file(self, path: str) -> FileState | None:
        """A changed path's state as the engine's archive of it gives it (None for a
        folder); a file past HASH_LIMIT_BYTES by its header only."""
        try:
            stream, stat = self._client.api.get_archive(self._container.id, path)
        except docker.errors.NotFound:
            return None
        if stat.get("mode", 0) & (1 << 31):
            stream.close()
            return None
        big = stat.get("size", 0) > HASH_LIMIT_BYTES
        try:
            with tarfile.open(fileobj=ChunkStream(stream), mode="r|") as archive:  # type: ignore[call-overload]
                info = archive.next()
                if info is None:
                    return None
                if big and info.isfile():
                    return unhashed(path, info)
                data = archive.extractfile(info) if info.isfile() else None
                return file_state(path, info, data)
        finally:
            stream.close()

    def _with_scripts(
        self, processes: dict[int, ProcessInfo], host: str | None
    ) -> dict[int, ProcessInfo]:
        """Each process with the text of the script it runs, read by the host, for the first
        few processes that name one (a job left behind is often ``bash ./later.sh``); scripts
        root owns are the box's own tools and are left out."""
        budget = _SCRIPTS_PER_SNAPSHOT
        result = {}
        for pid, proc in processes.items():
            script = script_of(proc.command)
            if script is not None and budget > 0:
                budget -= 1
                home = f"/home/{self.config.user}"
                path = posixpath.join(self.config.workdir, script.replace("~", home, 1))
                state = self._regular_file(posixpath.normpath(path), host)
                # root's own programs (the box's tools, run by a harmless loop) are not the
                # agent's job text: only a script someone but root owns is read as one
                if state is not None and state.uid != 0 and state.text is not None:
                    proc = dataclasses.replace(proc, script=state.text)
            result[pid] = proc
        return result

    def _through_links(self, files: dict[str, FileState], host: str | None) -> dict[str, FileState]:
        """Each watched symlink whose target lies outside the watched roots carries the
        target's hash and text: whoever opens the path reads the target (a ledger swapped for
        a link to a copy in ~/.cache is the copy's content)."""
        budget = _SCRIPTS_PER_SNAPSHOT
        for path, state in list(files.items()):
            target, hops = state, 0
            while target.type == "symlink" and target.link_target and hops < 8 and budget > 0:
                hops += 1
                budget -= 1
                next_path = posixpath.normpath(
                    posixpath.join(posixpath.dirname(target.path), target.link_target)
                )
                found = files.get(next_path) or self._regular_file(next_path, host)
                if found is None:
                    break
                target = found
            if target is not state and target.type == "file":
                files[path] = dataclasses.replace(state, sha256=target.sha256, text=target.text)
        return files

    def _regular_file(self, path: str, host: str | None) -> FileState | None:
        """A small regular file (or a symlink) read by the host (from the merged root
        ``host``, else through the engine); None for anything else."""
        if host is not None:
            return read_file(host, path, TEXT_LIMIT_BYTES)
        try:
            chunks, stat = self._container.get_archive(path)
        except docker.errors.NotFound:
            return None
        if stat.get("size", 0) > TEXT_LIMIT_BYTES or stat.get("mode", 0) & _NOT_REGULAR:
            return None
        states = files_from_archive(path, io.BytesIO(b"".join(chunks)))
        return states[0] if len(states) == 1 else None

    # -- probes -------------------------------------------------------------------------------

    def _keep_pristine(self) -> None:
        """Copy the probes' tools out of the box and lay them, as they are now (before any
        agent command), under a fresh root-owned folder the probes read them from. The agent
        may pass through it (a probe may run as another user) but owns nothing in it."""
        folder = f".{uuid.uuid4().hex[:12]}"
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as out:
            top = tarfile.TarInfo(folder)
            top.type, top.mode, top.mtime = tarfile.DIRTYPE, 0o711, time.time()
            out.addfile(top)
            for path in self.config.pristine:
                self._copy_into(out, path, folder)
        self._container.put_archive(_PRISTINE_PARENT, buffer.getvalue())
        self._pristine_dir = f"{_PRISTINE_PARENT}/{folder}"

    def _copy_into(self, out: tarfile.TarFile, path: str, folder: str) -> None:
        prefix = posixpath.join(folder, posixpath.dirname(path).lstrip("/"))
        for info, data in self._pristine_entries(path):
            # root's and read-only, whoever owned the original: not the agent's to edit
            info.uid, info.gid, info.uname, info.gname = 0, 0, "root", "root"
            info.mode &= ~0o022
            info.name = posixpath.join(prefix, info.name)
            if info.islnk():
                info.linkname = posixpath.join(prefix, info.linkname)
            out.addfile(info, data)

    def _pristine_entries(self, path: str) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
        """``path`` and what is under it, read on the host when it can be (the box has only
        just started: nothing of the agent's is in it yet), else from the engine's archive."""
        if self._merged is not None:
            try:
                entries = archive_entries(self._merged, path, _SPOOL_BYTES)
            except FileNotFoundError:
                raise SandboxError(f"a probe's pristine path {path} is not in the image") from None
            except NotReadableHere:
                pass  # past the host's limit: the engine's archive is spooled
            else:
                for info, data in entries:
                    yield info, None if data is None else io.BytesIO(data)
                return
        try:
            chunks, _ = self._container.get_archive(path)
        except docker.errors.NotFound:
            raise SandboxError(f"a probe's pristine path {path} is not in the image") from None
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            for chunk in chunks:
                spool.write(chunk)
            spool.seek(0)
            with tarfile.open(fileobj=spool, mode="r|") as archive:  # type: ignore[call-overload]
                for info in archive:
                    yield info, archive.extractfile(info) if info.isfile() else None

    def _probes(self) -> dict[str, ProbeAnswer]:
        """Every probe's answer, each run in the shell of its user (no exec per probe), from
        the folder root, in a clean environment, under its own timeout."""
        answers: dict[str, ProbeAnswer] = {}
        for probe in self.config.probes:
            run = probe.run.replace("{pristine}", self._pristine_dir or "")
            home = "/root" if probe.user in ("root", "0") else f"/home/{probe.user}"
            command = " ".join(
                (
                    "cd / && exec /usr/bin/env -i",
                    *_PROBE_ENV,
                    shlex.quote(f"HOME={home}"),
                    shlex.quote(f"USER={probe.user}"),
                    f"/usr/bin/timeout --kill-after={_KILL_AFTER_SECONDS} {probe.timeout:g}",
                    "/bin/bash --noprofile --norc -c",
                    shlex.quote(run),
                    "2>&1",
                )
            )
            output = CappedBuffer(self.config.output_limit_bytes)
            try:
                # the shell's own timeout only backs up the probe's
                limit = probe.timeout + 2 * _KILL_AFTER_SECONDS
                code = self._in_shell(probe.user, command, limit, output, output)
            except RelayUnavailable as exc:
                output.write(str(exc).encode())
                code = None
            answers[probe.id] = ProbeAnswer(exit_code=code, output=output.text())
        return answers

    def _watched(self, root: str, host: str | None) -> tuple[list[FileState], bool]:
        """A watched root, read from the box's merged root ``host`` on this host when it can
        be, else through the engine's archive (the same states either way)."""
        if host is not None:
            try:
                return read_tree(host, root)
            except NotReadableHere:
                pass  # a link above the root: the engine resolves it inside the box
        return self._archive(root), False

    def _archive(self, root: str) -> list[FileState]:
        try:
            chunks, _ = self._container.get_archive(root)
        except docker.errors.NotFound:
            return []  # the watched path does not exist (yet, or any more)
        # read as it streams: a watched folder the agent filled must not fill the host's disk
        return list(files_from_archive(root, ChunkStream(chunks)))

    # -- close --------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for relay in self._relays.values():
            relay.close()
        # the removal is not on the episode's critical path, but it always happens: the
        # remover's threads are joined at exit, and a killed process leaves a box whose owner
        # is dead, which any reap removes
        try:
            self._engine.remover.submit(remove_container, self._client, self._container.id)
        except RuntimeError:  # the remover is shut down (interpreter exit): remove it here
            remove_container(self._client, self._container.id)
