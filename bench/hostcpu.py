"""Host CPU of a benchmark run, in core-seconds, from the kernel's accounting (Linux only).

What a :class:`CpuMeter` counts between ``start()`` and ``stop()``:

- **farm**: this process, ``getrusage`` self + reaped children, minus the meter's own
  sampling thread (its ``thread_time``);
- **db**: the Postgres backends serving the benchmark's database (their process title names
  it), own time only;
- **engine**: ``dockerd`` and ``containerd``, each its own time plus its reaped children's
  (``cutime``/``cstime``: the short-lived ``containerd-shim ... start``, mount helpers that
  exit). Shared by every user of the engine: other agents' containers are in this figure;
- **boxes**: the per-container helpers of the benchmark's own containers (found by the
  ``farm.session`` label through the engine's event stream): the ``containerd-shim`` (by
  its ``-id``) with its reaped children (every ``runc`` call, ``docker-init`` and all that
  ran inside the box: the episode's commands, the scenario's services, the farm's probes),
  and the ``fuse-overlayfs`` mount of its writable layer (by its upper dir).

``/proc`` is sampled every ``interval`` seconds. A process that starts and exits between
two samples is counted only through the parent that reaps it (so only when that parent is
one of the above); one whose parent does not reap it (PID 1 here) stays a zombie whose
final times can still be read. What a process used after its last sample and before
being reaped by an untracked parent is lost (at most one interval of it). Not counted:
the kernel's own threads (kworkers, fuse, page cache writeback), the Postgres server's
shared processes, and anything the host spends for other users.
"""

from __future__ import annotations

import os
import re
import resource
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import docker

CLK = os.sysconf("SC_CLK_TCK")
ENGINE = ("dockerd", "containerd")
HELPERS = ("containerd-shim", "fuse-overlayfs", "runc", "docker-init")
_SHIM_ID = re.compile(r"-id\s+([0-9a-f]{64})")
_UPPER = re.compile(r"upperdir=[^,\s]*/([0-9a-f]{64})/diff")


@dataclass
class _Proc:
    pid: int
    comm: str
    started: int  # ticks since boot
    ppid: int
    base: int  # own + children ticks when first counted (0: born during the run)
    total: int  # own + children ticks at the last sample
    own_base: int
    own: int
    cmdline: str
    present: bool = True  # still in /proc (a zombie counts as present)


@dataclass
class CpuReport:
    """Core-seconds between start() and stop()."""

    farm: float
    db: float
    engine: float
    boxes: float
    other_boxes: float  # helpers of containers that are not the benchmark's: the noise
    seconds: float
    containers: int
    # boxes by the helper it was counted on: containerd-shim (with everything it reaped),
    # fuse-overlayfs, and children still alive at the end
    boxes_by: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.farm + self.db + self.engine + self.boxes


def _read_stat(pid: int) -> tuple[str, int, int, int, int] | None:
    """(comm, ppid, own ticks, children ticks, start ticks) of ``pid``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return comm, int(rest[1]), utime + stime, cutime + cstime, int(rest[19])


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _uptime_ticks() -> int:
    with open("/proc/uptime") as f:
        return int(float(f.read().split()[0]) * CLK)


def _pids() -> Iterator[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


@dataclass
class CpuMeter:
    client: docker.DockerClient
    session: str  # the farm.session label of the benchmark's containers
    database: str | None = None  # the benchmark's Postgres database, if any
    interval: float = 0.25
    _procs: dict[tuple[int, int], _Proc] = field(default_factory=dict)
    _ignored: set[int] = field(default_factory=set)
    _containers: set[str] = field(default_factory=set)
    _mounts: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        info = self.client.info()
        self._layerdb = os.path.join(
            info.get("DockerRootDir", "/var/lib/docker"),
            "image",
            info.get("Driver", "overlay2"),
            "layerdb",
            "mounts",
        )
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- the run -----------------------------------------------------------------------------

    def start(self) -> CpuMeter:
        label = f"farm.session={self.session}"
        self._events = self.client.events(
            decode=True, filters={"type": "container", "event": "create", "label": label}
        )
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="cpu-events")
        self._watcher.start()
        self._born_after = _uptime_ticks()
        self._sampler_cpu = 0.0
        self._sample(first=True)
        usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        self._farm_base = sum(u.ru_utime + u.ru_stime for u in usage)
        self._wall = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cpu-sampler")
        self._thread.start()
        return self

    def stop(self) -> CpuReport:
        usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        farm = sum(u.ru_utime + u.ru_stime for u in usage) - self._farm_base
        seconds = time.monotonic() - self._wall
        self._stop.set()
        self._thread.join()
        self._sample()
        self._events.close()
        self._watcher.join(timeout=5)
        return self._report(farm - self._sampler_cpu, seconds)

    def __enter__(self) -> CpuMeter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if not self._stop.is_set():
            self.report = self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            t = time.thread_time()
            self._sample()
            self._sampler_cpu += time.thread_time() - t

    def _watch(self) -> None:
        """Our containers' ids and writable layers, as the engine creates them."""
        try:
            for event in self._events:
                cid = event.get("id") or event.get("Actor", {}).get("ID")
                if not cid:
                    continue
                with self._lock:
                    self._containers.add(cid)
                try:
                    with open(os.path.join(self._layerdb, cid, "mount-id")) as f:
                        mount = f.read().strip()
                except OSError:
                    continue
                with self._lock:
                    self._mounts.add(mount)
        except Exception:  # closed by stop()
            return

    def _sample(self, first: bool = False) -> None:
        seen: set[int] = set()
        for pid in _pids():
            seen.add(pid)
            if pid in self._ignored:
                continue
            stat = _read_stat(pid)
            if stat is None:
                continue
            comm, ppid, own, children, started = stat
            if not self._tracked(comm):
                self._ignored.add(pid)
                continue
            key = (pid, started)
            proc = self._procs.get(key)
            if proc is None:
                born = not first and started >= self._born_after
                base, own_base = (0, 0) if born else (own + children, own)
                proc = _Proc(pid, comm, started, ppid, base, 0, own_base, 0, _cmdline(pid))
                self._procs[key] = proc
            elif comm == "postgres" and self.database and self.database not in proc.cmdline:
                proc.cmdline = _cmdline(pid)  # a new backend sets its title after the fork
            proc.ppid, proc.total, proc.own = ppid, own + children, own
        self._ignored &= seen
        for proc in self._procs.values():
            proc.present = proc.pid in seen

    def _tracked(self, comm: str) -> bool:
        if comm in ENGINE or comm.startswith(HELPERS):
            return True
        return comm == "postgres" and self.database is not None

    # -- attribution -------------------------------------------------------------------------

    def _report(self, farm: float, seconds: float) -> CpuReport:
        with self._lock:
            ours_ids, ours_mounts = set(self._containers), set(self._mounts)
        by_pid = {p.pid: p for p in self._procs.values()}
        db = engine = boxes = other = 0
        boxes_by: dict[str, int] = {}
        for proc in self._procs.values():
            if proc.comm == "postgres":
                if self.database and f" {self.database} " in proc.cmdline + " ":
                    db += proc.own - proc.own_base
                continue
            parent = by_pid.get(proc.ppid)
            if parent is not None and parent.comm != "postgres" and not proc.present:
                continue  # reaped by a tracked parent: in that parent's children times
            used = proc.total - proc.base
            if proc.comm in ENGINE:
                engine += used
            elif self._ours(proc, by_pid, ours_ids, ours_mounts):
                boxes += used
                helper = next((h for h in HELPERS if proc.comm.startswith(h)), proc.comm)
                boxes_by[helper] = boxes_by.get(helper, 0) + used
            else:
                other += used
        return CpuReport(
            farm=farm,
            db=db / CLK,
            engine=engine / CLK,
            boxes=boxes / CLK,
            other_boxes=other / CLK,
            seconds=seconds,
            containers=len(ours_ids),
            boxes_by={name: ticks / CLK for name, ticks in boxes_by.items()},
        )

    def _ours(self, proc: _Proc, by_pid: dict[int, _Proc], ids: set[str], mounts: set[str]) -> bool:
        for _ in range(8):  # the helper itself, or a child of one of ours (runc, docker-init)
            if (m := _SHIM_ID.search(proc.cmdline)) and m.group(1) in ids:
                return True
            if (m := _UPPER.search(proc.cmdline)) and m.group(1) in mounts:
                return True
            parent = by_pid.get(proc.ppid)
            if parent is None:
                return False
            proc = parent
        return False


def per_episode(report: CpuReport, episodes: int) -> dict[str, float]:
    return {
        "farm": report.farm / episodes,
        "db": report.db / episodes,
        "engine": report.engine / episodes,
        "boxes": report.boxes / episodes,
        "total": report.total / episodes,
        "others": report.other_boxes / episodes,
    }


def engine_ticks() -> int:
    """dockerd + containerd, own + reaped children, in ticks."""
    total = 0
    for pid in _pids():
        stat = _read_stat(pid)
        if stat is not None and stat[0] in ENGINE:
            total += stat[2] + stat[3]
    return total


def engine_idle_rate(seconds: float = 3.0) -> float:
    """The engine's CPU (cores) while this benchmark does nothing: other users' share."""
    before, t = engine_ticks(), time.monotonic()
    time.sleep(seconds)
    return (engine_ticks() - before) / CLK / (time.monotonic() - t)
