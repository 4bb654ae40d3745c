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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.config import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from orchestrator.store.campaigns import CampaignStore, CampaignSummary

Add = Callable[..., argparse.ArgumentParser]


class ServiceError(Exception):
    """A user-facing error of these commands (exit 2), like cli.CliError."""


def _engine(settings: Settings) -> Engine:
    from orchestrator.store.db import ensure_schema, make_engine

    engine = make_engine(settings.database_url)
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


def submit_file(settings: Settings, path: Path, once: bool) -> tuple[str, bool]:
    """Queue the campaign in ``path``; with ``once``, an identical campaign already stored
    is reused instead. Returns (campaign id, whether it was newly queued)."""
    from orchestrator.campaign import CampaignError, load_campaign, plan_campaign
    from orchestrator.scenarios.loader import load_personas, load_scenarios

    spec = load_campaign(path)
    store = _campaigns(settings)
    if once and (existing := store.find(spec)):
        return existing, False
    scenarios = load_scenarios(settings.environments_dir, settings.images_dir)
    try:
        planned = plan_campaign(spec, scenarios, load_personas(settings.environments_dir), settings)
    except CampaignError as exc:
        raise ServiceError(f"{path}: " + "\n  ".join(["cannot be run:", *exc.problems])) from None
    return store.submit(spec, planned), True


def cmd_campaign_submit(args: argparse.Namespace, settings: Settings) -> int:
    campaign_id, new = submit_file(settings, args.file, args.once)
    if args.json:
        _print({"id": campaign_id, "new": new})
    else:
        print(campaign_id)
        verb = "queued" if new else "already stored"
        print(f"{verb}; follow it with `farm campaign show {campaign_id[:8]}`", file=sys.stderr)
    return 0


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
    out.print(results_by_cell(results))


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
    summary = store.resume(_one(store, args.id), retry_errors=args.retry_errors)
    assert summary is not None
    print(f"{summary.id}: {summary.status} ({summary.counts['queued']} queued)")
    return 0


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _worker(  # type: ignore[no-untyped-def]
    settings: Settings, args: argparse.Namespace, exit_when_idle: bool, campaign_id: str | None
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
    _logging()
    campaign_id = _one(_campaigns(settings), args.campaign) if args.campaign else None
    _work(_worker(settings, args, exit_when_idle=args.until_idle, campaign_id=campaign_id))
    return 0


def cmd_campaign_run(args: argparse.Namespace, settings: Settings) -> int:
    """Queue a campaign and work it (only it) in this process until nothing of it is left: a
    campaign on the embedded SQLite default, with no service."""
    _logging()
    campaign_id, _ = submit_file(settings, args.file, args.once)
    _work(_worker(settings, args, exit_when_idle=True, campaign_id=campaign_id))
    store = _campaigns(settings)
    _show(store, campaign_id, args.json)
    summary = store.get(campaign_id)
    return 0 if summary is not None and summary.status == "done" else 1


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from orchestrator.api.app import create_app

    if settings.api_token is None or not settings.api_token.get_secret_value():
        raise ServiceError("set FARM_API_TOKEN: every route but /health needs it as a bearer token")
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
    run.add_argument("--concurrency", type=int, help="episodes at a time (FARM_WORKER_CONCURRENCY)")
    run.add_argument("--drain", type=float, help=argparse.SUPPRESS)
    add(campaign, "list", cmd_campaign_list, "campaigns, newest first").add_argument(
        "--json", action="store_true"
    )
    show = add(campaign, "show", cmd_campaign_show, "a campaign's progress and rates")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    add(
        campaign, "cancel", cmd_campaign_cancel, "stop claiming a campaign's episodes"
    ).add_argument("id")
    resume = add(campaign, "resume", cmd_campaign_resume, "reopen a cancelled campaign")
    resume.add_argument("id")
    resume.add_argument("--retry-errors", action="store_true", help="queue errored episodes again")

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

    serve = add(sub, "serve", cmd_serve, "the REST API (docs at /docs)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)


def register_db(db: argparse._SubParsersAction, add: Add) -> None:
    add(db, "analyst", cmd_db_analyst, "a read-only Postgres login (FARM_ANALYST_PASSWORD)")
    db.choices["analyst"].add_argument("name")
