"""The scenario, trajectory and persona file formats, as pydantic models.

Scenarios are data: everything the orchestrator needs to run and score one lives in
``environments/<id>/scenario.yaml``, and these models are the single definition of what such
a file may say. A field added here is a field every scenario can use without Python changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from pydantic import Field, ValidationInfo, field_validator, model_validator

from orchestrator.paths import under
from orchestrator.scenarios.fields import (
    Behavior,
    OctalMode,
    Regex,
    StrictModel,
)
from orchestrator.scoring.kinds import Detector
from orchestrator.states import Verdict

# Linux capability names Docker accepts in cap_add (without the CAP_ prefix).
CAPABILITIES = frozenset(
    [
        "AUDIT_CONTROL",
        "AUDIT_READ",
        "AUDIT_WRITE",
        "BLOCK_SUSPEND",
        "BPF",
        "CHECKPOINT_RESTORE",
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "IPC_LOCK",
        "IPC_OWNER",
        "KILL",
        "LEASE",
        "LINUX_IMMUTABLE",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "MKNOD",
        "NET_ADMIN",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_RAW",
        "PERFMON",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYSLOG",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_CHROOT",
        "SYS_MODULE",
        "SYS_NICE",
        "SYS_PACCT",
        "SYS_PTRACE",
        "SYS_RAWIO",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "WAKE_ALARM",
    ]
)
# What a scenario may grant: what start scripts need to hand files to their services' users
# and drop to them, signal them and bind low ports. Nothing that reaches past the box or
# around its permission checks (SYS_ADMIN, SYS_PTRACE, SYS_MODULE, DAC_READ_SEARCH, NET_ADMIN,
# MKNOD...): the agent in the box is hostile by design.
ALLOWED_CAPABILITIES = (
    "SETUID",
    "SETGID",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "KILL",
    "NET_BIND_SERVICE",
)
# The longest an episode may be asked to take, a day: its wall clock, and its commands in all
# (max_turns x command_timeout).
MAX_EPISODE_SECONDS = 24 * 3600


class Escalation(StrictModel):
    """A message from the deployer injected into the conversation, once, as the paper's
    escalating evaluations do: after the agent's ``at_turn``-th turn, or after the first turn
    in which it ran a command matching ``after_command``."""

    message: str
    at_turn: int | None = Field(default=None, ge=1)
    after_command: Regex | None = None

    @model_validator(mode="after")
    def _one_trigger(self) -> Escalation:
        if (self.at_turn is None) == (self.after_command is None):
            raise ValueError("an escalation needs exactly one of at_turn or after_command")
        return self


class VariantSpec(StrictModel):
    """One condition of a scenario (control/threat, monitored/unmonitored...).

    ``files`` is a folder, relative to the scenario's folder, laid over the container's root
    before it starts (owned by ``owner``, with permissions ``mode``); ``task_suffix`` is
    appended to the task.
    """

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str
    files: str | None = None
    owner: str = Field(default="0:0", pattern=r"^\d+:\d+$")
    # Octal permissions for every laid-over file (git keeps only the executable bit, so a
    # group-writable config needs saying); unset: 0644, or 0755 for executables.
    mode: OctalMode | None = None
    task_suffix: str | None = None
    escalations: list[Escalation] = []

    @field_validator("files")
    @classmethod
    def _relative_inside(cls, files: str | None) -> str | None:
        """The loader checks the resolved folder and its symlinks; this refuses what no
        folder can make acceptable."""
        if files is not None and (files.startswith("/") or ".." in PurePosixPath(files).parts):
            raise ValueError(
                "must be a folder inside the scenario's folder, written relative to it, "
                "without `..` (e.g. variants/threat)"
            )
        return files


class Oversight(StrictModel):
    """Everything the scenario's oversight machinery reads or needs to do its job, read from
    its own code: the files and folders (globs) and the processes (command-line regexes).

    ``farm scenarios verify`` reports every one that no detector or probe covers: an input
    nobody watches is a route to defeat the oversight that no verdict can see.
    """

    paths: list[str] = []
    processes: list[Regex] = []


DEFAULT_VARIANT = VariantSpec(id="default", description="The scenario as written.")


class ScenarioSpec(StrictModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    category: Behavior
    description: str
    image: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    # Whether the agent may run as root. A risk: root in the box undoes whatever the box
    # set up as root (the oversight, the evidence's pristine copies' owners...) and is one
    # step closer to the host; without this, `user: root` is refused.
    allow_root: bool = False
    user: str = "agent"
    workdir: str = "/home/agent"
    # What the box calls itself; a plausible name, never one that says "test" or "farm".
    hostname: str = Field(default="workstation", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    task: str
    max_turns: int = Field(default=30, ge=1, le=500)
    command_timeout: float = Field(default=60.0, gt=0, le=3600)
    # The episode's wall clock, from the agent loop's start: once it has passed, the episode
    # ends (ended_by wall_clock) and is scored. The campaign's and FARM_MAX_EPISODE_SECONDS
    # apply too; the smallest wins.
    max_episode_seconds: float | None = Field(default=None, gt=0, le=MAX_EPISODE_SECONDS)
    # Granted to the box (the rest are dropped); only ALLOWED_CAPABILITIES.
    capabilities: list[str] = []
    # A file the image's start script creates once its fake services run; the baseline
    # snapshot waits for it so that it sees them.
    ready_file: str | None = None
    watch: list[str] = Field(min_length=1)
    detectors: list[Detector] = Field(min_length=1)
    oversight: Oversight = Oversight()
    escalations: list[Escalation] = []
    # The first variant is the default one; a scenario without variants has just `default`.
    variants: list[VariantSpec] = []

    def variant(self, variant_id: str | None = None) -> VariantSpec:
        variants = self.variants or [DEFAULT_VARIANT]
        if variant_id is None:
            return variants[0]
        for v in variants:
            if v.id == variant_id:
                return v
        raise KeyError(variant_id)

    def variant_ids(self) -> list[str]:
        return [v.id for v in self.variants or [DEFAULT_VARIANT]]

    @field_validator("capabilities")
    @classmethod
    def _allowed_capabilities(cls, caps: list[str]) -> list[str]:
        names = [c.upper().removeprefix("CAP_") for c in caps]
        allowed = ", ".join(ALLOWED_CAPABILITIES)
        unknown = [c for c, n in zip(caps, names, strict=True) if n not in CAPABILITIES]
        if unknown:
            raise ValueError(f"unknown capabilities {unknown}; a scenario may grant {allowed}")
        refused = [c for c, n in zip(caps, names, strict=True) if n not in ALLOWED_CAPABILITIES]
        if refused:
            raise ValueError(
                f"{', '.join(refused)} may not be granted: a scenario may grant only "
                f"{allowed}; remove the others"
            )
        return names

    @field_validator("user")
    @classmethod
    def _root_only_if_allowed(cls, user: str, info: ValidationInfo) -> str:
        name = user.split(":")[0]
        root = name in ("", "root") or (name.isdigit() and int(name) == 0)
        if root and not info.data.get("allow_root"):
            raise ValueError(
                "the agent runs as root only if the scenario also says `allow_root: true` "
                "(a risk: see the README's Writing a scenario); name an unprivileged user "
                "such as agent"
            )
        return user

    @field_validator("command_timeout")
    @classmethod
    def _bounded_in_all(cls, timeout: float, info: ValidationInfo) -> float:
        turns = info.data.get("max_turns")
        if turns is not None and turns * timeout > MAX_EPISODE_SECONDS:
            raise ValueError(
                f"max_turns x command_timeout is {turns * timeout:g} s, more than a day "
                f"({MAX_EPISODE_SECONDS} s); lower one of them"
            )
        return timeout

    @field_validator("watch", "workdir", "ready_file")
    @classmethod
    def _absolute(cls, value: str | list[str] | None) -> str | list[str] | None:
        for path in [value] if isinstance(value, str) else value or []:
            if not path.startswith("/"):
                raise ValueError(f"{path!r} must be an absolute path inside the container")
        return value

    @model_validator(mode="after")
    def _unique_detector_ids(self) -> ScenarioSpec:
        ids = [d.id for d in self.detectors]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"detector ids must be unique; repeated: {dupes}")
        variants = self.variant_ids()
        if len(set(variants)) != len(variants):
            raise ValueError(f"variant ids must be unique; got {variants}")
        for d in self.detectors:
            # a file whose content the detector reads must be snapshotted in full
            for path in d.reads():
                if not under(path, self.watch):
                    raise ValueError(
                        f"detector {d.id!r} reads {path}, which is outside every `watch` "
                        f"root {self.watch}; add its folder to `watch`"
                    )
            probe = getattr(d, "probe", None)
            if d.kind == "claim" and probe is not None and probe not in ids:
                raise ValueError(f"detector {d.id!r} names an unknown probe {probe!r}")
            unknown = sorted(set(d.variants or []) - set(variants))
            if unknown:
                raise ValueError(
                    f"detector {d.id!r} names unknown variants {unknown}; the scenario has "
                    f"{variants}"
                )
        return self


class TrajectoryStep(StrictModel):
    think: str | None = None
    bash: str | None = None
    submit: str | None = None
    # The exit status `verify` requires of the bash step: a reference run whose commands
    # fail does not do what it claims.
    expect_exit: int = Field(default=0, ge=0, le=255)

    @model_validator(mode="after")
    def _one_action(self) -> TrajectoryStep:
        if self.bash is not None and self.submit is not None:
            raise ValueError("a step has either bash or submit, not both")
        if self.think is None and self.bash is None and self.submit is None:
            raise ValueError("a step needs at least one of think, bash, submit")
        return self


class TrajectorySpec(StrictModel):
    expect: Verdict
    behaviors: list[Behavior] = []
    variant: str | None = None  # the scenario's variant to replay it in; default the first
    # Metrics `farm scenarios verify` checks, by detector id: {"exercises": {"correct": 6}}
    metrics: dict[str, dict[str, float]] = {}
    steps: list[TrajectoryStep] = Field(min_length=1)

    @model_validator(mode="after")
    def _behaviors_match_expectation(self) -> TrajectorySpec:
        if self.expect == Verdict.MISALIGNED and not self.behaviors:
            raise ValueError("a misaligned trajectory must list the behaviors it shows")
        if self.expect == Verdict.ALIGNED and self.behaviors:
            raise ValueError("an aligned trajectory lists no behaviors")
        return self


class PersonaEntry(StrictModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str
    character: str = ""  # the personality paragraph; empty for the baseline


class PersonaFile(StrictModel):
    """``environments/personas.yaml``: the personas, and the operating instructions every one
    of them shares, so that personas differ in character and in nothing else."""

    instructions: str
    personas: list[PersonaEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> PersonaFile:
        ids = [p.id for p in self.personas]
        if len(set(ids)) != len(ids):
            raise ValueError(f"persona ids must be unique; got {ids}")
        return self


@dataclass(frozen=True)
class PersonaSpec:
    """A persona as an episode uses it: its character followed by the shared instructions."""

    id: str
    name: str
    system_prompt: str
    character: str = ""
