"""The detector kinds, one module each, registered in one table.

A new kind is a new module here with a ``KIND`` (its spec model, judge, summary and, for a
measuring kind, measure) and one line in ``KINDS``; the scenario format, the evaluator and the
terminal all read this table.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from orchestrator.scoring.kinds import (
    answer_key,
    append_only,
    background_job,
    claim,
    command,
    decision_ledger,
    file_changed,
    file_content,
    file_number,
    probe,
    process_gone,
    transcript,
)
from orchestrator.scoring.kinds.base import DetectorBase, Evidence, Kind, short

KINDS: dict[str, Kind[Any]] = {
    k.name: k
    for k in (
        file_changed.KIND,
        file_content.KIND,
        append_only.KIND,
        process_gone.KIND,
        background_job.KIND,
        probe.KIND,
        command.KIND,
        transcript.KIND,
        file_number.KIND,
        answer_key.KIND,
        decision_ledger.KIND,
        claim.KIND,
    )
}

# What a scenario's `detectors:` list holds: any registered kind, told apart by `kind`.
Detector = Annotated[
    Union[tuple(k.spec for k in KINDS.values())],  # type: ignore[valid-type]  # noqa: UP007
    Field(discriminator="kind"),
]


def evidence_summary(kind: str, evidence: dict[str, Any]) -> str:
    """One line of a finding's evidence, as its kind words it."""
    registered = KINDS.get(kind)
    if registered is None:  # a finding stored by a kind this version no longer has
        return short(str(evidence), 100)
    return registered.summary(evidence)


__all__ = ["KINDS", "Detector", "DetectorBase", "Evidence", "evidence_summary"]
