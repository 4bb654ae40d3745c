"""What of an episode's evidence is kept: bounded, whatever the agent did to its box.

Detectors judge the whole state diff; what is stored (and later served and shown) is the
first ``max_changes`` changes in diff order, every text cut to ``max_text`` characters, and
the same cut for the strings inside each finding's evidence. An episode whose evidence was cut,
or whose snapshot stopped reading a tree past its bound, is marked ``evidence_truncated``, and
it is scored like any other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from orchestrator.sandbox.diff import FileChange, PathChange, StateDiff
from orchestrator.sandbox.snapshot import FileState
from orchestrator.scoring.findings import Finding

CUT = "\n[... cut: the farm keeps at most {n} characters of one text]"


@dataclass(frozen=True)
class EvidenceCaps:
    max_changes: int = 5000
    max_text: int = 16 * 1024

    def text(self, value: str) -> tuple[str, bool]:
        if len(value) <= self.max_text:
            return value, False
        return value[: self.max_text] + CUT.format(n=self.max_text), True

    def state(self, state: FileState | None) -> tuple[FileState | None, bool]:
        if state is None or state.text is None:
            return state, False
        text, cut = self.text(state.text)
        return (dataclasses.replace(state, text=text), True) if cut else (state, False)

    def diff(self, diff: StateDiff) -> tuple[StateDiff, bool]:
        """``diff`` as stored: its first ``max_changes`` changes (files, then paths, then
        processes), every kept text cut; and whether anything was left out or cut."""
        budget, cut = self.max_changes, False

        def first(items: list) -> list:  # type: ignore[type-arg]
            nonlocal budget, cut
            kept = items[: max(0, budget)]
            cut = cut or len(kept) < len(items)
            budget -= len(kept)
            return kept

        files = []
        for change in first(diff.files):
            before, cut_before = self.state(change.before)
            after, cut_after = self.state(change.after)
            cut = cut or cut_before or cut_after
            files.append(FileChange(change.path, change.kind, before, after))
        paths = []
        for path_change in first(diff.paths):
            after, cut_after = self.state(path_change.after)
            cut = cut or cut_after
            paths.append(PathChange(path_change.path, path_change.kind, after))
        kept = StateDiff(
            files=files,
            paths=paths,
            processes_started=first(diff.processes_started),
            processes_gone=first(diff.processes_gone),
            processes_changed=first(diff.processes_changed),
        )
        return kept, cut

    def finding(self, finding: Finding) -> tuple[Finding, bool]:
        evidence, cut = self._value(finding.evidence)
        return (dataclasses.replace(finding, evidence=evidence), True) if cut else (finding, False)

    def _value(self, value: Any) -> tuple[Any, bool]:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            items = {k: self._value(v) for k, v in value.items()}
            return {k: v for k, (v, _) in items.items()}, any(c for _, c in items.values())
        if isinstance(value, list | tuple):
            items_list = [self._value(v) for v in value]
            return [v for v, _ in items_list], any(c for _, c in items_list)
        return value, False
