"""The one entry point, ``farm``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NoReturn, TextIO, get_args

from rich.console import Console
from rich.markup import escape

from orchestrator import cli_service
from orchestrator.agents.generation import GenerationSettings, ReasoningEffort
from orchestrator.config import Settings, get_settings
from orchestrator.errors import InfrastructureError, UserError
from orchestrator.states import EpisodeStatus

if TYPE_CHECKING:  # the commands import their modules lazily, to keep `farm --help` quick
    from orchestrator.episode import EpisodeResult
    from orchestrator.scenarios.loader import Scenario
    from orchestrator.scenarios.spec import PersonaSpec
    from orchestrator.store.episodes import EpisodeStore
    from orchestrator.verify import Check


def _console(stream: TextIO) -> Console:
    """Rich lays out for 80 columns when not on a terminal; logs and pipes get room for
    tables (COLUMNS still wins)."""
    width = None if stream.isatty() or "COLUMNS" in os.environ else 140
    return Console(file=stream, highlight=False, width=width)


out = _console(sys.stdout)
err = _console(sys.stderr)

DEMO_SCENARIO = "shutdown-script"
DEMO_MODELS = ("scripted/aligned", "scripted/misaligned")


class CliError(UserError):
    """A user-facing error: printed as one clear message, exit status 2."""


def _log(message: str) -> None:
    err.print(f"[dim]{message}[/dim]")


def _scenarios(settings: Settings) -> dict[str, Scenario]:
    from orchestrator.scenarios.loader import load_scenarios

    return load_scenarios(settings.environments_dir, settings.images_dir)


def _chosen(settings: Settings, ids: list[str]) -> list[Scenario]:
    """The scenarios named (all of them when none are), loading the catalogue once."""
    scenarios = _scenarios(settings)
    unknown = [i for i in ids if i not in scenarios]
    if unknown:
        named = ", ".join(map(repr, unknown))
        raise CliError(f"unknown scenario {named}; available: {', '.join(scenarios)}")
    return [scenarios[i] for i in ids] if ids else list(scenarios.values())


def _scenario(settings: Settings, scenario_id: str) -> Scenario:
    (scenario,) = _chosen(settings, [scenario_id])
    return scenario


def _personas(settings: Settings) -> dict[str, PersonaSpec]:
    from orchestrator.scenarios.loader import load_personas

    return load_personas(settings.environments_dir)


def _persona(settings: Settings, persona_id: str) -> PersonaSpec:
    personas = _personas(settings)
    if persona_id not in personas:
        raise CliError(f"unknown persona {persona_id!r}; available: {', '.join(personas)}")
    return personas[persona_id]


def _store(settings: Settings, url: str | None = None) -> EpisodeStore:
    from orchestrator.store.episodes import EpisodeStore

    return EpisodeStore.open(url or settings.database_url, settings.migrations_dir)


@dataclass(frozen=True)
class ModelOptions:
    """How to run a real model: where it is, how it generates, its token budget and its
    context policy."""

    base_url: str | None = None
    generation: GenerationSettings | None = None
    token_budget: int | None = None
    context_elide_chars: int | None = None


def _model_options(args: argparse.Namespace) -> ModelOptions:
    from pydantic import ValidationError

    fields = ("temperature", "max_tokens", "seed", "reasoning_effort", "thinking")
    try:
        generation = GenerationSettings(**{f: getattr(args, f) for f in fields})
    except ValidationError as exc:
        problems = "; ".join(
            f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in exc.errors()
        )
        raise CliError(problems) from None
    if args.token_budget is not None and args.token_budget <= 0:
        raise CliError("--token-budget must be a positive number of tokens")
    if args.context_elide_chars is not None and args.context_elide_chars <= 0:
        raise CliError("--context-elide-chars must be a positive number of characters")
    return ModelOptions(args.base_url, generation, args.token_budget, args.context_elide_chars)


def _thinking(value: str) -> int | Literal["adaptive"]:
    return "adaptive" if value == "adaptive" else int(value)


def _run_one(
    settings: Settings,
    scenario_id: str,
    model: str,
    persona_id: str,
    trajectory: Path | None,
    live: bool,
    options: ModelOptions = ModelOptions(),
    variant: str | None = None,
) -> EpisodeResult:
    from orchestrator.cells import Cell, build_request
    from orchestrator.episode import run_episode
    from orchestrator.render import step_line
    from orchestrator.sandbox.provider import make_sandbox_provider

    scenario = _scenario(settings, scenario_id)
    personas = _personas(settings)
    with make_sandbox_provider(settings) as sandboxes:
        request = build_request(
            Cell(
                scenario=scenario_id,
                persona=persona_id,
                model=model,
                variant=variant,
                trajectory_file=trajectory,
                base_url=options.base_url,
                generation=options.generation,
                token_budget=options.token_budget,
                context_elide_chars=options.context_elide_chars,  # None: the setting
            ),
            scenarios={scenario.id: scenario},
            personas=personas,
            settings=settings,
            image_tag=lambda name: sandboxes.ensure_image(name, _log).tag,
        )
        if ignored := request.provider.describe().get("ignored"):
            _log(f"{model} cannot take {', '.join(ignored)}: not sent (recorded as ignored)")
        if live:
            where = escape(f"{scenario.id} [{request.variant}] · {model} · persona {persona_id}")
            err.print(f"[bold]{where}[/bold]")
        return run_episode(
            request,
            store=_store(settings),
            settings=settings,
            start_sandbox=sandboxes.start,
            on_step=(lambda step: err.print(step_line(step), highlight=False, markup=False))
            if live
            else (lambda s: None),
        )


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.render import print_result, result_json

    result = _run_one(
        settings,
        args.scenario,
        args.model,
        args.persona,
        args.trajectory,
        live=not args.json,
        options=_model_options(args),
        variant=args.variant,
    )
    if args.json:
        print(json.dumps(result_json(result), indent=2, default=str))
    else:
        print_result(out, result)
    return 0 if result.outcome.status == EpisodeStatus.COMPLETED else 1


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.render import print_result, results_table

    results = []
    for model in DEMO_MODELS:
        result = _run_one(settings, DEMO_SCENARIO, model, "none", None, live=True)
        print_result(out, result)
        out.print()
        results.append(result)
    out.print(results_table(results))
    out.print(f"[dim]stored in {settings.database_url}; `farm episodes show ID` for details[/dim]")
    return 0 if all(r.outcome.status == EpisodeStatus.COMPLETED for r in results) else 1


def cmd_scenarios_list(args: argparse.Namespace, settings: Settings) -> int:
    scenarios = _scenarios(settings)
    rows = [
        {
            "id": s.id,
            "title": s.spec.title,
            "category": s.spec.category,
            "image": s.spec.image,
            "variants": s.spec.variant_ids(),
            "trajectories": s.trajectory_names(),
        }
        for s in scenarios.values()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table

    table = Table()
    for column in ("id", "category", "variants", "trajectories"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["id"], row["category"], ", ".join(row["variants"]), ", ".join(row["trajectories"])
        )
    out.print(table)
    return 0


def cmd_scenarios_verify(args: argparse.Namespace, settings: Settings) -> int:
    import tempfile

    from orchestrator.render import verify_table
    from orchestrator.sandbox.provider import make_sandbox_provider
    from orchestrator.verify import Verifier, scenario_checks

    chosen = _chosen(settings, args.ids)
    with (
        make_sandbox_provider(settings) as sandboxes,
        tempfile.TemporaryDirectory(prefix="farm-verify-") as scratch,
    ):
        images = {s.spec.image: sandboxes.ensure_image(s.spec.image, _log).tag for s in chosen}
        url = settings.database_url if args.keep else f"sqlite:///{scratch}/verify.db"
        verifier = Verifier(
            settings=settings,
            store=_store(settings, url),
            persona=_persona(settings, "none"),
            images=images,
            start_sandbox=sandboxes.start,
        )

        def progress(check: Check) -> None:
            mark = "[green]pass[/green]" if check.passed else "[bold red]FAIL[/bold red]"
            err.print(f"  {mark} {check.scenario}/{check.trajectory} ({check.seconds:.1f}s)")

        checks = verifier.run(chosen, jobs=args.jobs, on_check=progress)
    scenarios = scenario_checks(chosen, checks)
    failed = [c for c in checks if not c.passed]
    bad = [s for s in scenarios if not s.passed]
    if args.json:
        print(
            json.dumps(
                {
                    "trajectories": [{**asdict(c), "passed": c.passed} for c in checks],
                    "scenarios": [{**asdict(s), "problems": s.problems} for s in scenarios],
                },
                indent=2,
            )
        )
    else:
        out.print(verify_table(checks))
        for s in bad:
            out.print(f"[bold red]{s.scenario}[/bold red]: " + "; ".join(s.problems))
        out.print(
            f"{len(checks) - len(failed)} of {len(checks)} trajectories pass; "
            f"{len(scenarios) - len(bad)} of {len(scenarios)} scenarios have no dead "
            "detector and no uncovered oversight input"
        )
    return 1 if failed or bad else 0


def cmd_personas_list(args: argparse.Namespace, settings: Settings) -> int:
    personas = _personas(settings)
    if args.json:
        print(json.dumps([asdict(p) for p in personas.values()], indent=2))
        return 0
    from rich.table import Table

    table = Table(show_lines=True, caption="each prompt continues with the shared instructions")
    for column in ("id", "name", "character"):
        table.add_column(column, overflow="fold")
    for p in personas.values():
        table.add_row(p.id, p.name, p.character or "(none: the instructions only)")
    out.print(table)
    return 0


def cmd_scenarios_show(args: argparse.Namespace, settings: Settings) -> int:
    scenario = _scenario(settings, args.id)
    data = scenario.spec.model_dump(mode="json")
    data["trajectories"] = scenario.trajectory_names()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    import yaml

    out.print(yaml.safe_dump(data, sort_keys=False, width=100), end="")
    return 0


def cmd_images_build(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.sandbox.provider import make_sandbox_provider

    names = [s.spec.image for s in _chosen(settings, args.ids)]
    with make_sandbox_provider(settings) as sandboxes:
        log = lambda m: err.print(m, highlight=False)  # noqa: E731
        for ref in sandboxes.build_images(names, log, force=args.force, verbose=args.verbose):
            out.print(ref.tag)
    return 0


def cmd_sandbox_reap(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.sandbox.provider import make_sandbox_provider

    with make_sandbox_provider(settings) as sandboxes:
        removed = sandboxes.reap(everything=args.all)
    for name in removed:
        out.print(f"removed {name}")
    out.print(f"{len(removed)} container(s) removed")
    return 0


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.store.db import make_engine, upgrade

    upgrade(make_engine(settings.database_url), settings.migrations_dir)
    out.print(f"schema is current on {settings.database_url.split('@')[-1]}")
    return 0


def cmd_episodes_show(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.render import print_stored

    store = _store(settings)
    matches = store.find_prefix(args.id)
    if len(matches) != 1:
        raise CliError(
            f"no episode {args.id!r}" if not matches else f"{args.id!r} is ambiguous; give more"
        )
    stored = store.get(matches[0])
    assert stored is not None
    print_stored(out, stored)
    return 0


def cmd_episodes_list(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator.render import episodes_table

    rows = _store(settings).search(
        args.limit, scenario=args.scenario, campaign_id=args.campaign, status=args.status
    )
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        out.print(episodes_table(rows))
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    """The report of one or more campaigns: tables here, files in --out."""
    from orchestrator.report.build import build_report
    from orchestrator.report.data import ReportError
    from orchestrator.report.tables import report_tables
    from orchestrator.report.write import default_dir, report_json, write_report

    try:
        report = build_report(_store(settings).engine, args.campaigns)
    except ReportError as exc:
        raise CliError(str(exc)) from None
    directory = args.out or default_dir(report)
    written = write_report(report, directory)
    if args.json:
        print(report_json(report), end="")
    else:
        out.print(report_tables(report))
        out.print(f"wrote {escape(str(directory))}/: " + ", ".join(p.name for p in written))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="farm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(
        parent: argparse._SubParsersAction, name: str, func: Callable, help: str
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    run = add(sub, "run", cmd_run, "run one episode and print its verdict")
    run.add_argument("--scenario", required=True)
    run.add_argument(
        "--model",
        required=True,
        help="scripted, scripted/NAME, openai/MODEL, anthropic/MODEL or ENDPOINT/MODEL",
    )
    run.add_argument("--trajectory", type=Path, help="trajectory file for --model scripted")
    run.add_argument("--persona", default="none")
    run.add_argument(
        "--variant", help="the scenario's variant (default: a replay's own, else the first)"
    )
    run.add_argument("--json", action="store_true", help="print one JSON object")
    model = run.add_argument_group(
        "real models (defaults: FARM_GENERATION, FARM_TOKEN_BUDGET, FARM_CONTEXT_ELIDE_CHARS)"
    )
    model.add_argument("--base-url", help="any server speaking the model's API (vLLM, Ollama...)")
    model.add_argument("--temperature", type=float)
    model.add_argument("--max-tokens", type=int, help="per turn, reasoning included")
    model.add_argument("--seed", type=int, help="where the API takes one")
    model.add_argument("--reasoning-effort", choices=get_args(ReasoningEffort))
    model.add_argument(
        "--thinking", type=_thinking, help="Anthropic extended thinking: a token budget or adaptive"
    )
    model.add_argument(
        "--token-budget", type=int, help="end the episode once input + output tokens reach it"
    )
    model.add_argument(
        "--context-elide-chars",
        type=int,
        metavar="N",
        help="past N characters of conversation, elide old tool outputs in what the model is sent",
    )

    add(sub, "demo", cmd_demo, "run the shutdown scenario's reference trajectories")

    scenarios = sub.add_parser("scenarios", help="list and inspect scenarios").add_subparsers(
        dest="action", required=True
    )
    add(scenarios, "list", cmd_scenarios_list, "list scenarios").add_argument(
        "--json", action="store_true"
    )
    show = add(scenarios, "show", cmd_scenarios_show, "show one scenario's spec")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    verify = add(
        scenarios,
        "verify",
        cmd_scenarios_verify,
        "replay every trajectory in its real container and check its declared verdict",
    )
    verify.add_argument("ids", nargs="*", metavar="ID", help="scenario ids (default: all)")
    verify.add_argument("--jobs", type=int, default=2, help="episodes at a time (default 2)")
    verify.add_argument("--keep", action="store_true", help="store episodes in FARM_DATABASE_URL")
    verify.add_argument("--json", action="store_true")

    personas = sub.add_parser("personas", help="the system prompts episodes vary").add_subparsers(
        dest="action", required=True
    )
    add(personas, "list", cmd_personas_list, "list personas").add_argument(
        "--json", action="store_true"
    )

    images = sub.add_parser("images", help="build scenario images").add_subparsers(
        dest="action", required=True
    )
    build = add(images, "build", cmd_images_build, "build the base and scenario images")
    build.add_argument("ids", nargs="*", metavar="ID", help="scenario ids (default: all)")
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build.add_argument("--verbose", action="store_true", help="stream every line of the build")

    sandbox = sub.add_parser("sandbox", help="manage sandbox containers").add_subparsers(
        dest="action", required=True
    )
    reap = add(sandbox, "reap", cmd_sandbox_reap, "remove stale farm containers (by label)")
    reap.add_argument("--all", action="store_true", help="also those of live runners")

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    add(db, "upgrade", cmd_db_upgrade, "run pending migrations")
    cli_service.register_db(db, add)
    cli_service.register(sub, add)

    report = add(
        sub,
        "report",
        cmd_report,
        "a campaign report: rates, the normalised aggregate, figures, report.html",
    )
    report.add_argument(
        "campaigns", nargs="+", metavar="CAMPAIGN", help="an id, a unique id prefix or a name"
    )
    report.add_argument("--out", type=Path, help="directory (default reports/<name>/)")
    report.add_argument("--json", action="store_true", help="print report.json")

    episodes = sub.add_parser("episodes", help="stored episodes").add_subparsers(
        dest="action", required=True
    )
    add(episodes, "show", cmd_episodes_show, "transcript, diff and findings").add_argument("id")
    listing = add(episodes, "list", cmd_episodes_list, "the latest episodes, newest first")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--scenario")
    listing.add_argument("--campaign", help="a campaign's full id")
    # plain values, since argparse names a wrong choice by the choices' repr
    statuses = tuple(s.value for s in EpisodeStatus if s != EpisodeStatus.PENDING)
    listing.add_argument("--status", choices=statuses)
    listing.add_argument("--json", action="store_true")
    return parser


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/bold red] {message}", highlight=False)
    sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    # SIGTERM unwinds like Ctrl-C, so every open sandbox is removed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = _parser().parse_args(argv)
    try:
        return args.func(args, get_settings())
    except (UserError, InfrastructureError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted")


if __name__ == "__main__":
    sys.exit(main())
