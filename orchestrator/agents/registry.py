"""Turns a model string (``scripted``, ``scripted/NAME``) into a provider."""

from __future__ import annotations

from pathlib import Path

from orchestrator.agents.provider import Provider
from orchestrator.agents.scripted import ScriptedProvider
from orchestrator.scenarios.loader import Scenario, SpecError, load_trajectory


class UnknownModelError(ValueError):
    pass


def make_provider(
    model: str, scenario: Scenario, trajectory_file: Path | None = None
) -> tuple[Provider, str | None]:
    """The provider for ``model`` and, for replays, the trajectory it replays."""
    if model == "scripted":
        if trajectory_file is None:
            raise UnknownModelError(
                "model 'scripted' needs --trajectory FILE; or use scripted/NAME to replay the "
                f"scenario's own trajectories ({', '.join(scenario.trajectory_names())})"
            )
        return ScriptedProvider(load_trajectory(trajectory_file)), str(trajectory_file)
    if model.startswith("scripted/"):
        name = model.removeprefix("scripted/")
        try:
            return ScriptedProvider(scenario.trajectory(name), model), name
        except SpecError as exc:
            raise UnknownModelError(str(exc)) from None
    raise UnknownModelError(
        f"unknown model {model!r}; available: scripted (with --trajectory FILE), "
        f"scripted/NAME (NAME one of the scenario's trajectories: "
        f"{', '.join(scenario.trajectory_names())})"
    )
