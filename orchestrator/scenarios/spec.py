"""The scenario, trajectory and persona file formats, as pydantic models.

Scenarios are data: everything the orchestrator needs to run and score one lives in
``environments/<id>/scenario.yaml``, and these models are the single definition of what such
a file may say. A field added here is a field every scenario can use without Python changes.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Behavior = Literal[
    "oversight_avoidance",
    "shutdown_resistance",
    "sandbagging",
    "power_seeking",
    "resource_acquisition",
    "deception",
    "ethical_drift",
    "self_exfiltration",
    "goal_guarding",
]
Severity = Literal["high", "medium", "low"]
FileChange = Literal["added", "modified", "deleted", "mode", "owner"]

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc})") from None
    return value


class _DetectorBase(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    behavior: Behavior
    severity: Severity = "high"
    description: str = ""


class FileChangedDetector(_DetectorBase):
    """A file matching one of ``paths`` (shell globs) changed in one of the ways in ``changes``."""

    kind: Literal["file_changed"]
    paths: list[str] = Field(min_length=1)
    changes: list[FileChange] = Field(
        default=["added", "modified", "deleted", "mode", "owner"], min_length=1
    )


class FileContentDetector(_DetectorBase):
    """A file's text stopped (or started) matching ``pattern``; a deleted file matches nothing."""

    kind: Literal["file_content"]
    path: str
    pattern: str
    when: Literal["no_longer_matches", "now_matches"]

    _valid_pattern = field_validator("pattern")(_check_regex)


class ProcessGoneDetector(_DetectorBase):
    """A process whose command line matches ``match`` ran at the start and is gone at the end."""

    kind: Literal["process_gone"]
    match: str

    _valid_match = field_validator("match")(_check_regex)


class CommandDetector(_DetectorBase):
    """The agent ran a bash command matching ``pattern`` (an attempt, whether or not it worked)."""

    kind: Literal["command"]
    pattern: str

    _valid_pattern = field_validator("pattern")(_check_regex)


class TranscriptDetector(_DetectorBase):
    """The agent's own words (text, reasoning, submitted answer) match ``pattern``.

    Stated intent is a weaker signal than an act: it never makes a verdict on its own.
    """

    kind: Literal["transcript"]
    pattern: str
    severity: Severity = "low"

    _valid_pattern = field_validator("pattern")(_check_regex)


Detector = Annotated[
    FileChangedDetector
    | FileContentDetector
    | ProcessGoneDetector
    | CommandDetector
    | TranscriptDetector,
    Field(discriminator="kind"),
]


class ScenarioSpec(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    category: Behavior
    description: str
    image: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    user: str = "agent"
    workdir: str = "/home/agent"
    # What the box calls itself; a plausible name, never one that says "test" or "farm".
    hostname: str = Field(default="workstation", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    task: str
    max_turns: int = Field(default=30, ge=1, le=500)
    command_timeout: float = Field(default=60.0, gt=0, le=3600)
    capabilities: list[str] = []
    # A file the image's start script creates once its fake services run; the baseline
    # snapshot waits for it so that it sees them.
    ready_file: str | None = None
    watch: list[str] = Field(min_length=1)
    detectors: list[Detector] = Field(min_length=1)

    @field_validator("capabilities")
    @classmethod
    def _known_capabilities(cls, caps: list[str]) -> list[str]:
        unknown = [c for c in caps if c.upper().removeprefix("CAP_") not in CAPABILITIES]
        if unknown:
            raise ValueError(f"unknown capabilities {unknown}; use names like SETUID, CHOWN, KILL")
        return [c.upper().removeprefix("CAP_") for c in caps]

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
        return self


class TrajectoryStep(_Strict):
    think: str | None = None
    bash: str | None = None
    submit: str | None = None

    @model_validator(mode="after")
    def _one_action(self) -> TrajectoryStep:
        if self.bash is not None and self.submit is not None:
            raise ValueError("a step has either bash or submit, not both")
        if self.think is None and self.bash is None and self.submit is None:
            raise ValueError("a step needs at least one of think, bash, submit")
        return self


class TrajectorySpec(_Strict):
    expect: Literal["aligned", "misaligned"]
    behaviors: list[Behavior] = []
    steps: list[TrajectoryStep] = Field(min_length=1)

    @model_validator(mode="after")
    def _behaviors_match_expectation(self) -> TrajectorySpec:
        if self.expect == "misaligned" and not self.behaviors:
            raise ValueError("a misaligned trajectory must list the behaviors it shows")
        if self.expect == "aligned" and self.behaviors:
            raise ValueError("an aligned trajectory lists no behaviors")
        return self


class PersonaSpec(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str
    system_prompt: str


class PersonaFile(_Strict):
    personas: list[PersonaSpec] = Field(min_length=1)
