"""Turns a model string into a provider.

- ``scripted`` (with a trajectory file) and ``scripted/NAME`` replay trajectories;
- ``openai/MODEL`` speaks Chat Completions, to OpenAI or to ``--base-url``;
- ``anthropic/MODEL`` speaks Messages, to Anthropic or to ``--base-url``;
- ``NAME/MODEL`` for a named endpoint in settings (``FARM_ENDPOINTS``) speaks that
  endpoint's API to its base URL. MODEL may itself contain slashes (``vllm/Qwen/Qwen3-8B``).

API keys come from ``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY`` only, read here and handed to
the SDK client; they are not settings, so nothing that records settings can record them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from orchestrator.agents.generation import GenerationSettings
from orchestrator.agents.provider import Provider
from orchestrator.agents.remote import DEFAULT_BASE_URLS, Api, Connection, RemoteProvider
from orchestrator.agents.retry import RetryPolicy
from orchestrator.agents.scripted import ScriptedProvider
from orchestrator.config import Settings, get_settings
from orchestrator.errors import UserError
from orchestrator.scenarios.loader import Scenario, SpecError, load_trajectory

KEY_VARIABLES: dict[Api, str] = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def _provider_class(api: Api) -> type[RemoteProvider]:
    """Imported on demand: each SDK takes seconds to import, and most commands need neither."""
    if api == "openai":
        from orchestrator.agents.openai_provider import OpenAIProvider

        return OpenAIProvider
    from orchestrator.agents.anthropic_provider import AnthropicProvider

    return AnthropicProvider


class UnknownModelError(UserError, ValueError):
    """The model string cannot be run as given: unknown, missing its key, or settings that
    contradict each other. A usage error (exit 2), never an episode."""


def _available(scenario: Scenario, settings: Settings) -> str:
    named = [f"{name}/MODEL" for name in settings.endpoints]
    return ", ".join(
        [
            "scripted (with --trajectory FILE)",
            "scripted/NAME (NAME one of the scenario's trajectories: "
            f"{', '.join(scenario.trajectory_names())})",
            "openai/MODEL",
            "anthropic/MODEL",
            *named,
        ]
    )


def _scripted(model: str, scenario: Scenario, trajectory_file: Path | None) -> ScriptedProvider:
    if model == "scripted":
        if trajectory_file is None:
            raise UnknownModelError(
                "model 'scripted' needs --trajectory FILE; or use scripted/NAME to replay the "
                f"scenario's own trajectories ({', '.join(scenario.trajectory_names())})"
            )
        return ScriptedProvider(load_trajectory(trajectory_file))
    try:
        return ScriptedProvider(scenario.trajectory(model.removeprefix("scripted/")), model)
    except SpecError as exc:
        raise UnknownModelError(str(exc)) from None


def _remote(
    prefix: str,
    name: str,
    base_url: str | None,
    generation: GenerationSettings | None,
    settings: Settings,
    sleep: Callable[[float], None],
) -> RemoteProvider:
    endpoint = settings.endpoints.get(prefix)
    api: Api = prefix if prefix in KEY_VARIABLES else endpoint.api  # type: ignore[assignment,union-attr]
    base_url = base_url or (endpoint.base_url if endpoint else DEFAULT_BASE_URLS[api])
    key = os.environ.get(KEY_VARIABLES[api]) or None
    if key is None and base_url == DEFAULT_BASE_URLS[api]:
        raise UnknownModelError(
            f"{prefix}/{name} needs {KEY_VARIABLES[api]} in the environment "
            "(a server given with --base-url or as a named endpoint may need none)"
        )
    connection = Connection(
        api=api,
        provider=prefix,
        model=name,
        base_url=base_url,
        api_key=key,
        timeout_seconds=settings.provider_timeout_seconds,
        retry=RetryPolicy(
            settings.retry_attempts,
            settings.retry_base_seconds,
            settings.retry_cap_seconds,
            settings.retry_after_max_seconds,
        ),
        concurrency=settings.concurrency_for(prefix),
    )
    merged = settings.generation.merged(generation or GenerationSettings())
    try:
        return _provider_class(api)(connection, merged, sleep)
    except ValueError as exc:
        raise UnknownModelError(f"{prefix}/{name}: {exc}") from None


def campaign_model_problem(
    model: str, scenarios: Sequence[Scenario], settings: Settings
) -> str | None:
    """Why ``model`` cannot run in a campaign over ``scenarios``, or None if it can.

    Checked when a campaign is submitted, before any key is needed: the API host may hold no
    keys, only the workers do.
    """
    prefix, _, name = model.partition("/")
    if prefix == "scripted":
        names = [set(s.trajectory_names()) for s in scenarios]
        shared = set.intersection(*names) if names else set()
        if not name:
            return (
                "model 'scripted' replays one file; a campaign uses scripted/NAME with NAME a "
                f"trajectory every scenario has: {', '.join(sorted(shared)) or 'none'}"
            )
        lacking = [s.id for s in scenarios if name not in s.trajectory_names()]
        if lacking:
            return (
                f"{model}: no trajectory {name!r} in {', '.join(lacking)}; trajectories every "
                f"scenario of the campaign has: {', '.join(sorted(shared)) or 'none'}"
            )
        return None
    if name and (prefix in KEY_VARIABLES or prefix in settings.endpoints):
        return None
    named = "".join(f", {n}/MODEL" for n in settings.endpoints)
    return (
        f"unknown model {model!r}; available: scripted/NAME, openai/MODEL, anthropic/MODEL{named}"
    )


def make_provider(
    model: str,
    scenario: Scenario,
    trajectory_file: Path | None = None,
    *,
    base_url: str | None = None,
    generation: GenerationSettings | None = None,
    settings: Settings | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Provider, str | None]:
    """The provider for ``model`` and, for replays, the trajectory it replays.

    ``generation`` overrides the settings' defaults field by field; ``sleep`` is how the
    retries wait (tests pass one that records instead).
    """
    settings = settings or get_settings()
    prefix, _, name = model.partition("/")
    if prefix == "scripted":
        if base_url:
            raise UnknownModelError("--base-url is for openai/, anthropic/ and named endpoints")
        provider = _scripted(model, scenario, trajectory_file)
        return provider, (str(trajectory_file) if model == "scripted" else name)
    if name and (prefix in KEY_VARIABLES or prefix in settings.endpoints):
        return _remote(prefix, name, base_url, generation, settings, sleep), None
    raise UnknownModelError(f"unknown model {model!r}; available: {_available(scenario, settings)}")
