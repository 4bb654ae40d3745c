"""The campaign worker: claims queued episodes and runs several at once.

Each slot is a thread that claims an episode, runs it in a fresh container and stores it;
a renewer thread keeps the slots' leases alive and sweeps this engine for containers whose
attempt no lease holds any more (a worker that died here). Threads, not processes: an
episode spends its time waiting on Docker and on model APIs.

Stopping (SIGTERM): no new claims; running episodes may finish within the drain time, after
which each is interrupted at its next step and released back to the queue untouched. A
cancelled campaign's running episodes are interrupted and released the same way, as soon as
a lease renewal sees the cancellation; resuming runs them again from the start.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from orchestrator.agents.generation import GenerationSettings
from orchestrator.agents.registry import UnknownModelError
from orchestrator.cells import Cell, build_request
from orchestrator.config import Settings
from orchestrator.episode import EpisodeInterrupted, EpisodeRequest, run_episode
from orchestrator.images.bootstrap import BootstrapError
from orchestrator.images.builder import ImageBuildError
from orchestrator.sandbox.pool import WarmPool
from orchestrator.sandbox.provider import SandboxProvider, make_sandbox_provider
from orchestrator.scenarios.loader import Scenario, SpecError, load_personas, load_scenarios
from orchestrator.states import EpisodeStatus
from orchestrator.store.episodes import EpisodeOutcome, EpisodeStore
from orchestrator.store.lease import Lease, LeaseLost
from orchestrator.store.queue import ClaimedEpisode, WorkQueue
from orchestrator.transcript import Step

log = logging.getLogger("farm.worker")

# Failures that make an episode unrunnable as queued (a model with no key on this worker, a
# trajectory that is gone): recorded on it as an infrastructure error, never retried on their
# own (`farm campaign resume --retry-errors` does, once fixed).
UNRUNNABLE = (UnknownModelError, SpecError)
# Failures of this worker, not of the episode: the episode goes back to the queue untouched
# and the worker stops, rather than turn a whole campaign into errors.
BROKEN_WORKER = (ImageBuildError, BootstrapError)
DATABASE_DOWN = (OperationalError, InterfaceError)


@dataclass(frozen=True)
class EpisodeDone:
    """One episode this worker finished (completed or error), for progress displays."""

    campaign_id: str
    campaign: str  # its name
    episode_id: str
    scenario: str
    variant: str
    model: str
    persona: str
    repeat: int
    status: str  # completed | error
    verdict: str | None
    score: float | None
    cost_usd: float | None  # None: the model has no price
    tokens: int  # input + output
    seconds: float
    error: str | None = None


OnEpisode = Callable[[EpisodeDone], None]


@dataclass
class WorkerStats:
    completed: int = 0
    errors: int = 0
    released: int = 0
    lost: int = 0
    reaped: list[str] = field(default_factory=list)


class Worker:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        concurrency: int = 2,
        lease_seconds: float = 60.0,
        max_attempts: int = 3,
        poll_seconds: float = 2.0,
        drain_seconds: float = 30.0,
        exit_when_idle: bool = False,
        campaign_id: str | None = None,
        sandboxes: SandboxProvider | None = None,
        on_episode: OnEpisode | None = None,
    ):
        self.settings = settings
        # called from the slot threads after each episode this worker finishes
        self.on_episode = on_episode
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.drain_seconds = drain_seconds
        self.exit_when_idle = exit_when_idle
        self.queue = WorkQueue(
            engine,
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            campaign_id=campaign_id,  # work one campaign only; None: every one
        )
        self.store = EpisodeStore(engine)
        # the backend (FARM_SANDBOX) and the warm boxes this worker keeps for its claims
        self.sandboxes = sandboxes or make_sandbox_provider(settings)
        self._owns_sandboxes = sandboxes is None
        self.pool = WarmPool(self.sandboxes.start, settings.warm_pool)
        self.scenarios: dict[str, Scenario] = load_scenarios(
            settings.environments_dir, settings.images_dir
        )
        self.personas = load_personas(settings.environments_dir)
        self.stats = WorkerStats()
        self.broken: str | None = None  # why the worker stopped itself, if it did
        self._held: dict[str, Lease] = {}
        self._lost: set[Lease] = set()
        self._cancelled: set[Lease] = set()  # to stop and release: their campaign was cancelled
        self._lock = threading.Lock()
        self._images: dict[str, str] = {}
        self._image_lock = threading.Lock()
        self._stopping = threading.Event()
        self._interrupt = threading.Event()
        self._done = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> WorkerStats:
        """Work until stopped (or, with ``exit_when_idle``, until its campaigns have no work
        left that a live lease does not already hold)."""
        log.info(
            "worker %s: %d slots, lease %.0fs", self.name, self.concurrency, self.lease_seconds
        )
        self._sweep()
        keeper = threading.Thread(target=self._keep_leases, name="leases", daemon=True)
        keeper.start()
        slots = [
            threading.Thread(target=self._slot, name=f"slot-{i}") for i in range(self.concurrency)
        ]
        for slot in slots:
            slot.start()
        for slot in slots:
            slot.join()
        self.pool.close()
        if self._owns_sandboxes:
            self.sandboxes.close()
        self._done.set()
        keeper.join()
        log.info(
            "worker %s stopped: %d completed, %d errors, %d released, %d lost",
            self.name,
            self.stats.completed,
            self.stats.errors,
            self.stats.released,
            self.stats.lost,
        )
        return self.stats

    def stop(self, drain_seconds: float | None = None) -> None:
        """Claim nothing more; interrupt what still runs after the drain time."""
        if self._stopping.is_set():
            self._interrupt.set()  # asked twice: do not wait any longer
            return
        drain = self.drain_seconds if drain_seconds is None else drain_seconds
        log.info("worker %s stopping: finishing or releasing within %.0fs", self.name, drain)
        self._stopping.set()
        timer = threading.Timer(drain, self._interrupt.set)
        timer.daemon = True
        timer.start()

    # -- slots -------------------------------------------------------------------------------

    def _slot(self) -> None:
        while not self._stopping.is_set():
            try:
                claimed = self.queue.claim(self.name)
                if claimed is None:
                    if self.exit_when_idle and self.queue.outstanding() == 0:
                        return
                    self._stopping.wait(self.poll_seconds)
                    continue
            except DATABASE_DOWN as exc:
                log.warning("cannot reach the database to claim work: %s", exc.orig or exc)
                self._stopping.wait(self.poll_seconds)
                continue
            self._run(claimed)

    def _run(self, claimed: ClaimedEpisode) -> None:
        lease = claimed.lease
        short = f"{lease.episode_id[:8]}#{lease.attempt}"
        with self._lock:
            self._held[lease.episode_id] = lease
        try:
            if claimed.taken_over:
                gone = self.sandboxes.reap_episode(lease.episode_id)
                self._count(reaped=gone)
                log.info("%s: taking over an expired lease; removed %s", short, gone or "nothing")
            started = time.monotonic()
            try:
                request = self._request(claimed)
            except UNRUNNABLE as exc:
                outcome = self._unrunnable(lease, exc)
                self._announce(claimed, outcome, time.monotonic() - started)
                return
            except BROKEN_WORKER as exc:
                self.queue.release(lease)
                self.broken = f"{type(exc).__name__}: {exc}"
                log.error("%s released: this worker cannot run episodes: %s", short, self.broken)
                self.stop(drain_seconds=0)
                return
            result = run_episode(
                request,
                store=self.store,
                settings=self.settings,
                start_sandbox=self.pool.start,
                on_step=self._checkpoint(lease),
                lease=lease,
                labels={
                    "farm.campaign": claimed.campaign_id,
                    "farm.attempt": str(lease.attempt),
                    "farm.worker": self.name,
                },
            )
            outcome = result.outcome
            seconds = time.monotonic() - started
            self._count(
                **{"completed" if outcome.status == EpisodeStatus.COMPLETED else "errors": 1}
            )
            # with a progress display the display says it; the log line is for --verbose
            log.log(
                logging.DEBUG if self.on_episode else logging.INFO,
                "%s %s [%s] %s %s: %s %s (%.1fs)",
                short,
                claimed.scenario,
                claimed.variant,
                claimed.model,
                claimed.persona,
                outcome.status,
                outcome.verdict or outcome.error or "",
                seconds,
            )
            self._announce(claimed, outcome, seconds)
        except EpisodeInterrupted as why:
            released = self.queue.release(lease)
            self._count(released=int(released))
            log.info("%s: stopped (%s); %s", short, why, "released" if released else "lost")
        except LeaseLost as exc:
            self._count(lost=1)
            log.warning("%s: %s; its work is discarded", short, exc)
        except Exception:
            # a bug or a database that stayed down: the lease runs out and the episode is
            # retried, up to the queue's attempt limit
            log.exception("%s: failed; the episode will be retried when its lease runs out", short)
        finally:
            with self._lock:
                self._held.pop(lease.episode_id, None)
            self._lost.discard(lease)
            self._cancelled.discard(lease)

    def _request(self, claimed: ClaimedEpisode) -> EpisodeRequest:
        spec = claimed.campaign_spec
        cell = Cell(
            scenario=claimed.scenario,
            persona=claimed.persona,
            model=claimed.model,
            variant=claimed.variant,
            campaign_id=claimed.campaign_id,
            repeat=claimed.repeat,
            generation=GenerationSettings(**spec.get("generation") or {}),
            token_budget=spec.get("token_budget"),
            max_episode_seconds=spec.get("max_episode_seconds"),
            context_elide_chars=spec.get("context_elide_chars"),  # None: the setting
        )
        return build_request(
            cell,
            scenarios=self.scenarios,
            personas=self.personas,
            settings=self.settings,
            image_tag=self._image,
        )

    def _image(self, name: str) -> str:
        """The image's tag, built once per worker if it is missing."""
        with self._image_lock:
            if name not in self._images:
                self._images[name] = self.sandboxes.ensure_image(name, log.info).tag
            return self._images[name]

    def _unrunnable(self, lease: Lease, exc: Exception) -> EpisodeOutcome:
        message = f"{type(exc).__name__}: {exc}"
        outcome = EpisodeOutcome(
            status=EpisodeStatus.ERROR, verdict=None, score=None, turns=0, error=message
        )
        self.store.finish(lease.episode_id, outcome, lease=lease)
        self._count(errors=1)
        log.error("%s: cannot run: %s", lease.episode_id[:8], message)
        return outcome

    def _announce(self, claimed: ClaimedEpisode, outcome: EpisodeOutcome, seconds: float) -> None:
        """Tell ``on_episode``; a display that fails must not fail the episode."""
        if self.on_episode is None:
            return
        done = EpisodeDone(
            campaign_id=claimed.campaign_id,
            campaign=str(claimed.campaign_spec.get("name", claimed.campaign_id[:8])),
            episode_id=claimed.lease.episode_id,
            scenario=claimed.scenario,
            variant=claimed.variant,
            model=claimed.model,
            persona=claimed.persona,
            repeat=claimed.repeat,
            status=outcome.status,
            verdict=outcome.verdict,
            score=outcome.score,
            cost_usd=outcome.cost_usd,
            tokens=outcome.input_tokens + outcome.output_tokens,
            seconds=seconds,
            error=outcome.error,
        )
        try:
            self.on_episode(done)
        except Exception:
            log.exception("the progress display failed")

    def _count(self, **added: int | list[str]) -> None:
        """Add to the stats; the slots and the lease keeper update them from their threads."""
        with self._lock:
            for name, value in added.items():
                setattr(self.stats, name, getattr(self.stats, name) + value)

    def _checkpoint(self, lease: Lease) -> Callable[[Step], None]:
        """Called after every step: where a lost lease or a stop takes effect."""

        def check(step: Step) -> None:
            if lease in self._lost:
                raise LeaseLost(lease, "a renewal found it taken over")
            if lease in self._cancelled:
                raise EpisodeInterrupted("its campaign was cancelled")
            if self._interrupt.is_set():
                raise EpisodeInterrupted("the worker is stopping")

        return check

    # -- leases and orphans ------------------------------------------------------------------

    def _keep_leases(self) -> None:
        renew_every = self.lease_seconds / 3
        sweep_every, last_sweep = self.lease_seconds, time.monotonic()
        while not self._done.wait(renew_every):
            with self._lock:
                leases = list(self._held.values())
            try:
                if leases:
                    renewal = self.queue.renew(leases)
                    with self._lock:  # one that finished meanwhile was not lost
                        lost = [x for x in renewal.lost if self._held.get(x.episode_id) == x]
                    self._lost.update(lost)
                    self._cancelled.update(renewal.cancelled)
                    for lease in lost:
                        log.warning("%s: lease lost", lease.episode_id[:8])
                if time.monotonic() - last_sweep >= sweep_every:
                    self._sweep()
                    last_sweep = time.monotonic()
            except DATABASE_DOWN as exc:
                log.warning("cannot renew leases: %s", exc.orig or exc)
            except Exception:  # the keeper must outlive any one failure, or leases lapse
                log.exception("lease keeping failed; trying again")

    def _sweep(self) -> None:
        """Remove this engine's containers of attempts no lease holds any more."""
        gone = self.sandboxes.reap_abandoned(self.queue.abandoned)
        gone += self.sandboxes.reap()  # boxes (warm ones too) of runners here that died
        if gone:
            self._count(reaped=gone)
            log.info("removed containers of abandoned attempts: %s", ", ".join(gone))
