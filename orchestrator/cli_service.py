"""The campaign service's commands: ``farm campaign ...``, ``farm worker``, ``farm serve`` and
``farm db analyst``. Kept apart from cli.py, which runs single episodes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.config import Settings
from orchestrator.errors import UserError
from orchestrator.states import CampaignStatus, EpisodeStatus

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from orchestrator.store.campaigns import CampaignStore, CampaignSummary
    from orchestrator.worker import EpisodeDone

Add = Callable[..., argparse.ArgumentParser]


class ServiceError(UserError):
    """A user-facing error of these commands (exit 2), like cli.CliError."""


def _engine(settings: Settings) -> Engine:
    from orchestrator.store.db import ensure_schema, make_engine

    # every slot of a worker may hold a connection, and the lease keeper one more
    engine = make_engine(settings.database_url, connections=max(5, settings.worker_concurrency + 2))
    ensure_schema(engine, settings.migrations_dir)
    return engine


def _campaigns(settings: Settings) -> CampaignStore:
    from orchestrator.store.campaigns import CampaignStore

    return CampaignStore(_engine(settings))


def _summary_json(summary: CampaignSummary) -> dict:
    """The campaign as the API returns it: one JSON shape for the CLI and the API."""
    from orchestrator.api.schemas import CampaignOut

    return CampaignOut.of(summary).model_dump(mode="json")


def _print(payload: object) -> None:
    print(json.dumps(payload, indent=2, default=str))


def submit_file(
    settings: Settings, path: Path, once: bool, cost_limit: float | None = None
) -> tuple[str, bool]:
    """Queue the campaign in ``path``; with ``once``, an identical campaign already stored
    is reused instead (``cost_limit`` then becomes its limit). ``cost_limit`` overrides the
    spec's ``cost_limit_usd``. Returns (campaign id, whether it was newly queued)."""
    from orchestrator.campaign import CampaignError, load_campaign, plan_campaign
    from orchestrator.scenarios.loader import load_personas, load_scenarios

    spec = load_campaign(path)
    store = _campaigns(settings)
    if once and (existing := store.find(spec)):
        if cost_limit is not None:
            store.resume(existing, cost_limit_usd=cost_limit)
        return existing, False
    scenarios = load_scenarios(settings.environments_dir, settings.images_dir)
    try:
        planned = plan_campaign(spec, scenarios, load_personas(settings.environments_dir), settings)
    except CampaignError as exc:
        raise ServiceError(f"{path}: " + "\n  ".join(["cannot be run:", *exc.problems])) from None
    return store.submit(spec, planned, cost_limit_usd=cost_limit), True


def cmd_campaign_submit(args: argparse.Namespace, settings: Settings) -> int:
    campaign_id, new = submit_file(settings, args.file, args.once, _cost_limit(args))
    if args.json:
        _print({"id": campaign_id, "new": new})
    else:
        print(campaign_id)
        verb = "queued" if new else "already stored"
        print(f"{verb}; follow it with `farm campaign show {campaign_id[:8]}`", file=sys.stderr)
    return 0


def _cost_limit(args: argparse.Namespace) -> float | None:
    limit = getattr(args, "cost_limit", None)
    if limit is not None and limit <= 0:
        raise ServiceError("--cost-limit must be a positive number of US dollars")
    return limit


def _one(store: CampaignStore, prefix: str) -> str:
    matches = [c.id for c in store.list() if c.id.startswith(prefix)]
    if len(matches) != 1:
        raise ServiceError(
            f"no campaign {prefix!r}" if not matches else f"{prefix!r} is ambiguous; give more"
        )
    return matches[0]


def resolve_campaign(store: CampaignStore, ref: str) -> str:
    """A campaign by its id, a unique id prefix or its name (the newest campaign of that
    name is not guessed: several of one name need an id)."""
    campaigns = store.list()
    if any(c.id == ref for c in campaigns):
        return ref
    matches = [c.id for c in campaigns if c.id.startswith(ref)] or [
        c.id for c in campaigns if c.name == ref
    ]
    if len(matches) != 1:
        if not matches:
            raise ServiceError(f"no campaign {ref!r} (an id, a unique id prefix or a name)")
        listed = ", ".join(m[:8] for m in matches)
        raise ServiceError(f"{ref!r} is ambiguous ({listed}); give more of an id")
    return matches[0]


def cmd_export_inspect(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.export_inspect import Catalogue, InspectMissing, export_campaign
    from orchestrator.scenarios.loader import load_personas, load_scenarios

    store = _campaigns(settings)
    campaign_id = resolve_campaign(store, args.campaign)
    catalogue = Catalogue(
        load_scenarios(settings.environments_dir, settings.images_dir),
        load_personas(settings.environments_dir),
    )
    try:
        written = export_campaign(store.engine, campaign_id, args.dir, catalogue, args.format)
    except InspectMissing as exc:
        from rich.markup import escape

        raise ServiceError(escape(str(exc))) from None  # printed as markup: keep [inspect]
    for item in written:
        print(item.path)
        print(f"  {item.model}: {item.samples} samples", file=sys.stderr)
    print(f"open them with `inspect view --log-dir {args.dir}`", file=sys.stderr)
    return 0


def cmd_campaign_list(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.cli import out
    from orchestrator.render import campaigns_table

    summaries = _campaigns(settings).list()
    if args.json:
        _print([_summary_json(s) for s in summaries])
    else:
        out.print(campaigns_table(summaries))
    return 0


def _show(store: CampaignStore, campaign_id: str, as_json: bool) -> None:
    from orchestrator.cli import out
    from orchestrator.render import results_by_cell, summary_line

    summary = store.get(campaign_id)
    assert summary is not None
    results = store.results(campaign_id)
    if as_json:
        _print({**_summary_json(summary), "results": results})
        return
    out.print(summary_line(summary))
    out.print(spend_line(summary), markup=False, highlight=False)
    out.print(results_by_cell(results))


def spend_line(summary: CampaignSummary) -> str:
    """What the campaign has cost, its limit, and why it is paused if it is."""
    line = f"spent ${summary.cost_usd:.4f}"
    if summary.cost_limit_usd is not None:
        line += f" of a ${summary.cost_limit_usd:.4f} limit"
    if summary.status_reason:
        line += f"; {summary.status}: {summary.status_reason}"
        if summary.status == CampaignStatus.PAUSED:
            line += f" (raise it: farm campaign resume {summary.id[:8]} --cost-limit USD)"
    return line


def cmd_campaign_show(args: argparse.Namespace, settings: Settings) -> int:
    store = _campaigns(settings)
    _show(store, _one(store, args.id), args.json)
    return 0


def cmd_campaign_cancel(args: argparse.Namespace, settings: Settings) -> int:
    store = _campaigns(settings)
    summary = store.cancel(_one(store, args.id))
    assert summary is not None
    print(f"{summary.id}: {summary.status}; running episodes stop and go back to the queue")
    return 0


def cmd_campaign_resume(args: argparse.Namespace, settings: Settings) -> int:
    store = _campaigns(settings)
    summary = store.resume(
        _one(store, args.id), retry_errors=args.retry_errors, cost_limit_usd=_cost_limit(args)
    )
    assert summary is not None
    print(f"{summary.id}: {summary.status} ({summary.counts[EpisodeStatus.QUEUED]} queued)")
    if summary.status == CampaignStatus.PAUSED:
        print(spend_line(summary), file=sys.stderr)
    return 0


# The SDKs log every request at INFO ("HTTP Request: POST ..."): WARNING unless --verbose.
# (anthropic's and openai's SDKs may bring the httpx2 fork along: the same lines.)
CHATTY_LOGGERS = ("httpx", "httpcore", "httpx2", "httpcore2", "openai", "anthropic")


def _logging(verbose: bool = False) -> None:
    """Log lines on stderr; on a terminal through rich, so they print above the progress bar."""
    from orchestrator.cli import err

    if err.is_terminal:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=err, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("farm").setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


class EpisodeProgress:
    """Episodes as a worker finishes them: on a terminal a progress bar (done / total, errors,
    episodes per minute, ETA, tokens and cost so far), else one line per episode on stderr
    (campaign, cell, verdict, score, cost). Called from the worker's slot threads."""

    def __init__(self, total: Callable[[int], int], done: int = 0, errors: int = 0):
        from orchestrator.cli import err

        self.console = err
        self.total = total  # given the episodes finished here, the total to show
        self.done, self.errors = done, errors
        self.here = 0  # finished by this process
        self.tokens, self.cost, self.unpriced = 0, 0.0, 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._bar = None
        self._task = None

    def __enter__(self) -> EpisodeProgress:
        if self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("episodes"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[stats]}"),
                console=self.console,
            )
            self._bar.start()
            total = self.total(0)
            self._task = self._bar.add_task(
                "episodes", total=total, completed=self.done, stats=self._stats(total)
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def _stats(self, total: int) -> str:
        minutes = (time.monotonic() - self.started) / 60
        rate = self.here / minutes if self.here and minutes > 0 else 0.0
        left = max(total - self.done, 0)
        eta = "--:--"
        if rate > 0:
            seconds = int(left / rate * 60)
            eta = f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        unpriced = f" (+{self.unpriced} unpriced)" if self.unpriced else ""
        return (
            f"{self.errors} errors  {rate:.1f}/min  ETA {eta}  "
            f"{self.tokens:,} tokens  ${self.cost:.4f}{unpriced}"
        )

    def __call__(self, episode: EpisodeDone) -> None:
        with self._lock:
            self.here += 1
            self.done += 1
            self.errors += episode.status == EpisodeStatus.ERROR
            self.tokens += episode.tokens
            if episode.cost_usd is None:
                self.unpriced += 1
            else:
                self.cost += episode.cost_usd
            total = self.total(self.here)
            if self._bar is not None:
                self._bar.update(
                    self._task, total=total, completed=self.done, stats=self._stats(total)
                )
                return
            print(episode_line(episode, self.done, total), file=sys.stderr, flush=True)


def episode_line(episode: EpisodeDone, done: int, total: int) -> str:
    """One finished episode, for logs: campaign, progress, cell, verdict, score, cost."""
    if episode.status == EpisodeStatus.COMPLETED:
        score = "-" if episode.score is None else f"{episode.score:.2f}"
        result = f"{episode.verdict} score {score}"
    else:
        result = f"error: {(episode.error or '').splitlines()[0][:120] if episode.error else ''}"
    cost = "cost unknown" if episode.cost_usd is None else f"${episode.cost_usd:.4f}"
    cell = (
        f"{episode.scenario} [{episode.variant}] {episode.model} {episode.persona} "
        f"repeat {episode.repeat}"
    )
    return (
        f"{episode.campaign} {done}/{total}  {cell}: {result}  {cost}  "
        f"{episode.tokens} tokens ({episode.seconds:.1f}s)"
    )


def _worker(  # type: ignore[no-untyped-def]
    settings: Settings,
    args: argparse.Namespace,
    exit_when_idle: bool,
    campaign_id: str | None,
    on_episode: Callable | None = None,
):
    from orchestrator.worker import Worker

    worker = Worker(
        settings,
        _engine(settings),
        concurrency=args.concurrency or settings.worker_concurrency,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
        drain_seconds=settings.drain_seconds if args.drain is None else args.drain,
        exit_when_idle=exit_when_idle,
        campaign_id=campaign_id,
        on_episode=on_episode,
    )
    # A first SIGTERM or Ctrl-C drains; a second one interrupts at once.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    return worker


def _work(worker) -> None:  # type: ignore[no-untyped-def]
    worker.run()
    if worker.broken:
        raise ServiceError(f"the worker stopped: {worker.broken}")


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    _logging(args.verbose)
    campaign_id = _one(_campaigns(settings), args.campaign) if args.campaign else None
    worker = _worker(settings, args, exit_when_idle=args.until_idle, campaign_id=campaign_id)
    # the total: what this worker finished and what its queue still holds
    progress = EpisodeProgress(lambda here: here + worker.queue.outstanding())
    worker.on_episode = progress
    with progress:
        _work(worker)
    return 0


def cmd_campaign_run(args: argparse.Namespace, settings: Settings) -> int:
    """Queue a campaign and work it (only it) in this process until nothing of it is left: a
    campaign on the embedded SQLite default, with no service."""
    _logging(args.verbose)
    campaign_id, _ = submit_file(settings, args.file, args.once, _cost_limit(args))
    before = _campaigns(settings).get(campaign_id)
    assert before is not None
    progress = EpisodeProgress(
        lambda here: before.episodes,
        before.counts[EpisodeStatus.COMPLETED],
        before.counts[EpisodeStatus.ERROR],
    )
    with progress:
        _work(_worker(settings, args, True, campaign_id, on_episode=progress))
    store = _campaigns(settings)
    _show(store, campaign_id, args.json)
    summary = store.get(campaign_id)
    return 0 if summary is not None and summary.status == CampaignStatus.DONE else 1


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from orchestrator.api.app import create_app
    from orchestrator.api.auth import token_problem

    token = "" if settings.api_token is None else settings.api_token.get_secret_value()
    if problem := token_problem(token):
        raise ServiceError(problem)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def cmd_db_analyst(args: argparse.Namespace, settings: Settings) -> int:
    """Create (or update) a read-only login in the farm_analyst role."""
    from psycopg import sql
    from sqlalchemy import text

    if not ROLE_NAME.match(args.name):
        raise ServiceError(f"{args.name!r}: a role name is lowercase letters, digits and _")
    password = os.environ.get("FARM_ANALYST_PASSWORD")
    if not password:
        raise ServiceError("set FARM_ANALYST_PASSWORD to the analyst's password")
    engine = _engine(settings)
    if engine.dialect.name != "postgresql":
        raise ServiceError("analyst roles are a Postgres feature; SQLite has no users")
    with engine.begin() as connection:
        raw = connection.connection.driver_connection
        literal = sql.Literal(password).as_string(raw)
        exists = connection.execute(
            text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": args.name}
        ).first()
        verb = "ALTER" if exists else "CREATE"
        connection.execute(text(f'{verb} ROLE "{args.name}" LOGIN PASSWORD {literal}'))
        connection.execute(text(f'GRANT farm_analyst TO "{args.name}"'))
    print(f"{args.name}: may log in and read every table and view, and change nothing")
    return 0


def register(sub: argparse._SubParsersAction, add: Add) -> None:
    campaign = sub.add_parser("campaign", help="factorial campaigns of episodes").add_subparsers(
        dest="action", required=True
    )
    submit = add(campaign, "submit", cmd_campaign_submit, "queue a campaign file's episodes")
    run = add(campaign, "run", cmd_campaign_run, "queue a campaign and work it here until done")
    for p in (submit, run):
        p.add_argument("file", type=Path)
        p.add_argument("--once", action="store_true", help="reuse an identical stored campaign")
        p.add_argument("--json", action="store_true")
        p.add_argument(
            "--cost-limit",
            type=float,
            metavar="USD",
            help="stop claiming its episodes once their recorded cost reaches this "
            "(overrides the spec's cost_limit_usd)",
        )
    run.add_argument("--concurrency", type=int, help="episodes at a time (FARM_WORKER_CONCURRENCY)")
    run.add_argument("--drain", type=float, help=argparse.SUPPRESS)
    run.add_argument("--verbose", action="store_true", help="log every model request")
    add(campaign, "list", cmd_campaign_list, "campaigns, newest first").add_argument(
        "--json", action="store_true"
    )
    show = add(campaign, "show", cmd_campaign_show, "a campaign's progress and rates")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    add(
        campaign, "cancel", cmd_campaign_cancel, "stop claiming a campaign's episodes"
    ).add_argument("id")
    resume = add(campaign, "resume", cmd_campaign_resume, "reopen a cancelled or paused campaign")
    resume.add_argument("id")
    resume.add_argument("--retry-errors", action="store_true", help="queue errored episodes again")
    resume.add_argument(
        "--cost-limit", type=float, metavar="USD", help="the campaign's new cost limit"
    )

    export = sub.add_parser("export", help="write a campaign in other tools' formats")
    exports = export.add_subparsers(dest="action", required=True)
    inspect = add(
        exports,
        "inspect",
        cmd_export_inspect,
        "Inspect eval logs, one per model, that `inspect view` opens (needs the inspect extra)",
    )
    inspect.add_argument("campaign", metavar="CAMPAIGN", help="an id, a unique id prefix or a name")
    inspect.add_argument("dir", metavar="DIR", type=Path, help="where to write the logs")
    inspect.add_argument(
        "--format", choices=("eval", "json"), default="eval", help="Inspect's log format"
    )

    worker = add(sub, "worker", cmd_worker, "claim and run queued episodes until stopped")
    worker.add_argument("--concurrency", type=int, help="episodes at a time")
    worker.add_argument("--drain", type=float, help="seconds to finish running episodes on stop")
    worker.add_argument("--until-idle", action="store_true", help="exit when nothing is queued")
    worker.add_argument("--campaign", help="work this campaign only (an id or its prefix)")
    worker.add_argument("--verbose", action="store_true", help="log every model request")

    serve = add(sub, "serve", cmd_serve, "the REST API (docs at /docs)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)


def register_db(db: argparse._SubParsersAction, add: Add) -> None:
    add(db, "analyst", cmd_db_analyst, "a read-only Postgres login (FARM_ANALYST_PASSWORD)")
    db.choices["analyst"].add_argument("name")
