"""Reads scenarios, trajectories and personas from ``environments/`` into validated specs.

Every failure is a :class:`SpecError` naming the file, the field and what was expected, so a
scenario author can fix a typo without reading a pydantic traceback.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator.errors import UserError
from orchestrator.scenarios.spec import (
    PersonaFile,
    PersonaSpec,
    ScenarioSpec,
    TrajectorySpec,
    VariantSpec,
)

SpecT = TypeVar("SpecT", bound=BaseModel)


class SpecError(UserError, ValueError):
    """A scenario, trajectory or persona file that cannot be used as written."""


@dataclass(frozen=True)
class Scenario:
    spec: ScenarioSpec
    directory: Path

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def spec_hash(self) -> str:
        """The sha256 of the spec as loaded: episodes of one scenario id that ran different
        detectors, variants or task text have different hashes."""
        return hashlib.sha256(self.spec.model_dump_json().encode()).hexdigest()

    def variant(self, variant_id: str | None = None) -> VariantSpec:
        """The named variant (the default one for ``None``); unknown names list what exists."""
        try:
            return self.spec.variant(variant_id)
        except KeyError:
            raise SpecError(
                f"scenario {self.id!r} has no variant {variant_id!r}; "
                f"it has: {', '.join(self.spec.variant_ids())}"
            ) from None

    def variant_files(self, variant: VariantSpec) -> Path | None:
        return self.directory / variant.files if variant.files else None

    def trajectory_names(self) -> list[str]:
        return sorted(p.stem for p in (self.directory / "trajectories").glob("*.yaml"))

    def trajectory(self, name: str) -> TrajectorySpec:
        path = self.directory / "trajectories" / f"{name}.yaml"
        if not path.is_file():
            raise SpecError(
                f"scenario {self.id!r} has no trajectory {name!r}; "
                f"it has: {', '.join(self.trajectory_names()) or 'none'}"
            )
        trajectory = load_trajectory(path)
        if trajectory.variant is not None and trajectory.variant not in self.spec.variant_ids():
            raise SpecError(
                f"{path}: field `variant`: expected one of the scenario's variants "
                f"({', '.join(self.spec.variant_ids())}) (got {trajectory.variant!r})"
            )
        return trajectory


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid ({exc.error_count()} problem{'s' * (exc.error_count() > 1)})"]
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        got = "" if err["type"] == "missing" else f" (got {err.get('input')!r:.60})"
        if err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling"
        lines.append(f"  field `{field}`: {msg}{got}")
    return "\n".join(lines)


def load_model(path: Path, model: type[SpecT]) -> SpecT:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise SpecError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of fields at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_errors(path, exc)) from None


def load_trajectory(path: Path) -> TrajectorySpec:
    return load_model(path, TrajectorySpec)


def load_scenario(directory: Path, images_dir: Path | None = None) -> Scenario:
    path = directory / "scenario.yaml"
    spec = load_model(path, ScenarioSpec)
    if spec.id != directory.name:
        raise SpecError(
            f"{path}: field `id`: must equal the folder name {directory.name!r} (got {spec.id!r})"
        )
    if images_dir is not None and not (images_dir / spec.image / "Dockerfile").is_file():
        raise SpecError(
            f"{path}: field `image`: expected a folder {images_dir / spec.image} with a "
            f"Dockerfile (got {spec.image!r})"
        )
    for i, variant in enumerate(spec.variants):
        if variant.files:
            _check_variant_files(path, f"variants.{i}.files", directory, variant.files)
    return Scenario(spec=spec, directory=directory)


def _check_variant_files(path: Path, field: str, directory: Path, files: str) -> None:
    """A variant's folder is laid over the box's root: it must be a real folder inside the
    scenario's, with no symlink on the way to it or in it (a link's target, a host file,
    would be copied into the box)."""

    def refuse(problem: str) -> SpecError:
        return SpecError(f"{path}: field `{field}`: {problem} (got {files!r})")

    folder = directory / files
    parts = Path(files).parts
    for step in (directory.joinpath(*parts[:k]) for k in range(1, len(parts) + 1)):
        if step.is_symlink():
            raise refuse(f"{step} is a symlink; the files must be in the scenario's folder")
    if not folder.resolve().is_relative_to(directory.resolve()):
        raise refuse(f"{folder} resolves outside the scenario's folder {directory}")
    if not folder.is_dir():
        raise refuse(f"expected a folder {folder}")
    for root, dirs, names in os.walk(folder):
        for name in sorted(dirs + names):
            if (Path(root) / name).is_symlink():
                raise refuse(
                    f"{Path(root) / name} is a symlink; a variant's files may hold no "
                    "symlinks (its target would be copied from the host): copy the file in"
                )


def load_scenarios(environments_dir: Path, images_dir: Path | None = None) -> dict[str, Scenario]:
    scenarios = {}
    for path in sorted(environments_dir.glob("*/scenario.yaml")):
        scenario = load_scenario(path.parent, images_dir)
        scenarios[scenario.id] = scenario
    return scenarios


def load_personas(environments_dir: Path) -> dict[str, PersonaSpec]:
    """Every persona with its full system prompt: character paragraph, then the instructions."""
    file = load_model(environments_dir / "personas.yaml", PersonaFile)
    return {
        p.id: PersonaSpec(
            p.id,
            p.name,
            "\n\n".join(part.strip() for part in (p.character, file.instructions) if part.strip()),
            p.character.strip(),
        )
        for p in file.personas
    }
