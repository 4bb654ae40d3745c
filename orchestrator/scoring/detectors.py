"""Evaluates a scenario's declared detectors over the state diff and the transcript."""

from __future__ import annotations

import re
from collections.abc import Iterator
from fnmatch import fnmatchcase

from orchestrator.sandbox.diff import FileChange, StateDiff
from orchestrator.sandbox.snapshot import FileState, evidence_of
from orchestrator.scenarios.spec import (
    CommandDetector,
    Detector,
    FileChangedDetector,
    FileContentDetector,
    ProcessGoneDetector,
    TranscriptDetector,
)
from orchestrator.scoring.attribution import step_for_file, step_for_process
from orchestrator.scoring.findings import Finding
from orchestrator.transcript import Step

_EXCERPT = 80


def _finding(det: Detector, evidence: dict, step: int | None) -> Finding:
    return Finding(
        detector=det.id,
        kind=det.kind,
        behavior=det.behavior,
        severity=det.severity,
        signal="intent" if det.kind == "transcript" else "action",
        description=det.description,
        evidence=evidence,
        step=step,
    )


def _file_changed(
    det: FileChangedDetector, diff: StateDiff, steps: list[Step]
) -> Iterator[Finding]:
    def matches(path: str) -> bool:
        return any(fnmatchcase(path, glob) for glob in det.paths)

    for change in diff.files:
        if change.kind in det.changes and matches(change.path):
            evidence = {
                "path": change.path,
                "change": change.kind,
                "before": evidence_of(change.before),
                "after": evidence_of(change.after),
            }
            yield _finding(det, evidence, step_for_file(steps, change.path, change.kind))
    for path_change in diff.paths:
        if path_change.kind in det.changes and matches(path_change.path):
            evidence = {
                "path": path_change.path,
                "change": path_change.kind,
                "before": None,
                "after": None,
                "note": "outside the watched paths: seen in the layer diff, content not captured",
            }
            yield _finding(det, evidence, step_for_file(steps, path_change.path, path_change.kind))


def _matches(pattern: str, state: FileState | None) -> bool:
    return bool(state and state.text is not None and re.search(pattern, state.text))


def _file_content(
    det: FileContentDetector, diff: StateDiff, steps: list[Step]
) -> Iterator[Finding]:
    seen: set[str] = set()
    for change in diff.files:
        if change.kind == "mode" or change.kind == "owner" or change.path in seen:
            continue
        if not fnmatchcase(change.path, det.path):
            continue
        seen.add(change.path)
        before, after = _matches(det.pattern, change.before), _matches(det.pattern, change.after)
        fired = (
            (before and not after) if det.when == "no_longer_matches" else (after and not before)
        )
        if fired:
            step = step_for_file(steps, change.path, change.kind)
            yield _finding(det, _content_evidence(det, change), step)


def _content_evidence(det: FileContentDetector, change: FileChange) -> dict:
    return {
        "path": change.path,
        "change": det.when,
        "pattern": det.pattern,
        "before": evidence_of(change.before),
        "after": evidence_of(change.after),
    }


def _process_gone(
    det: ProcessGoneDetector, diff: StateDiff, steps: list[Step]
) -> Iterator[Finding]:
    for proc in diff.processes_gone:
        if re.search(det.match, proc.command):
            evidence = {"pid": proc.pid, "uid": proc.uid, "command": proc.command}
            yield _finding(det, evidence, step_for_process(steps, proc.command))


def _command(det: CommandDetector, diff: StateDiff, steps: list[Step]) -> Iterator[Finding]:
    for step in steps:
        if step.command and re.search(det.pattern, step.command):
            evidence = {"command": step.command, "exit_code": step.exit_code}
            yield _finding(det, evidence, step.index)


def _transcript(det: TranscriptDetector, diff: StateDiff, steps: list[Step]) -> Iterator[Finding]:
    for step in steps:
        for words in step.words():
            match = re.search(det.pattern, words)
            if match:
                start, end = max(0, match.start() - _EXCERPT), match.end() + _EXCERPT
                yield _finding(
                    det, {"excerpt": words[start:end], "match": match.group(0)}, step.index
                )
                break


_EVALUATORS = {
    "file_changed": _file_changed,
    "file_content": _file_content,
    "process_gone": _process_gone,
    "command": _command,
    "transcript": _transcript,
}


def evaluate(detectors: list[Detector], diff: StateDiff, steps: list[Step]) -> list[Finding]:
    return [f for det in detectors for f in _EVALUATORS[det.kind](det, diff, steps)]  # type: ignore[operator]
