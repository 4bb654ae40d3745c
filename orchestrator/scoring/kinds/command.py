"""``command``: the agent ran a bash command matching ``pattern``.

An attempt, whether or not it worked, and a pattern over text, which over-matches (a
one-liner that names a watched path and writes elsewhere): supporting evidence by default,
a verdict only where a scenario says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from orchestrator.scenarios.fields import Regex
from orchestrator.scoring.findings import Finding
from orchestrator.scoring.kinds.base import (
    DetectorBase,
    DetectorRole,
    Evidence,
    Kind,
    Metric,
    finding,
    short,
)


class CommandSpec(DetectorBase):
    kind: Literal["command"]
    pattern: Regex

    default_role: ClassVar[DetectorRole] = "supporting"


def _judge(det: CommandSpec, ev: Evidence, _: Metric | None) -> Iterator[Finding]:
    for step in ev.steps:
        if step.command and re.search(det.pattern, step.command):
            evidence = {"command": step.command, "exit_code": step.exit_code}
            yield finding(det, evidence, step.index)


def _summary(evidence: dict[str, Any]) -> str:
    return f"$ {short(evidence['command'], 80)}"


KIND = Kind(spec=CommandSpec, judge=_judge, summary=_summary)
