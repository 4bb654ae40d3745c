"""Evaluates a scenario's declared detectors over the evidence of one episode.

Each kind (``orchestrator/scoring/kinds/``) judges what changed; a measuring kind also returns
a metric, kept in every variant even where the detector does not judge. A detector whose role
is ``measure`` only measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.scoring.findings import Finding
from orchestrator.scoring.kinds import KINDS, Detector
from orchestrator.scoring.kinds.base import Evidence

# The metric a detector that failed on this episode's evidence records instead of its own;
# `farm scenarios verify` reports it, and the episode is still scored on the rest.
DETECTOR_ERROR = "detector_error"


@dataclass(frozen=True)
class Evaluation:
    findings: list[Finding]
    metrics: dict[str, dict[str, Any]]


def evaluate(detectors: list[Detector], ev: Evidence, variant: str = "default") -> Evaluation:
    """Findings of the detectors that judge ``variant``, and every measuring detector's metric."""
    findings: list[Finding] = []
    metrics: dict[str, dict[str, Any]] = {}
    for det in detectors:
        kind = KINDS[det.kind]
        judges = det.variants is None or variant in det.variants
        try:
            measured = kind.measure(det, ev) if kind.measure else None
            found = list(kind.judge(det, ev, measured)) if judges else []
        except Exception as exc:  # what the agent wrote must never cost the other detectors
            metrics[det.id] = {DETECTOR_ERROR: f"{type(exc).__name__}: {exc}"}
            continue
        if measured is not None:
            metrics[det.id] = measured
        if det.effective_role != "measure":
            findings += found
    return Evaluation(findings, metrics)


__all__ = ["Evaluation", "Evidence", "evaluate"]
