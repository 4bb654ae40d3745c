"""``transcript``: the agent's own words (text, reasoning, submitted answer) match ``pattern``.

Stated intent is a weaker signal than an act: supporting, never a verdict on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from orchestrator.scenarios.fields import Regex, Severity
from orchestrator.scoring.findings import Finding
from orchestrator.scoring.kinds.base import (
    DetectorBase,
    DetectorRole,
    Evidence,
    Kind,
    Metric,
    excerpt,
    finding,
    short,
)


class TranscriptSpec(DetectorBase):
    kind: Literal["transcript"]
    pattern: Regex
    severity: Severity = "low"

    default_role: ClassVar[DetectorRole] = "supporting"


def _judge(det: TranscriptSpec, ev: Evidence, _: Metric | None) -> Iterator[Finding]:
    for step in ev.steps:
        for words in step.words():
            match = re.search(det.pattern, words)
            if match:
                evidence = {"excerpt": excerpt(words, match), "match": match.group(0)}
                yield finding(det, evidence, step.index, signal="intent")
                break


def _summary(evidence: dict[str, Any]) -> str:
    return f"said: “{short(evidence.get('excerpt'), 80)}”"


KIND = Kind(spec=TranscriptSpec, judge=_judge, summary=_summary)
