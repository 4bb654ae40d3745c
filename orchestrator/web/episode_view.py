"""One stored episode shaped for its page: the state diff as before/after rows and line diffs,
and each finding tied to the step and the state changes it rests on.

Only shaping happens here; what the episode did is what the store holds
(``EpisodeStore.get``), and a finding's one-line evidence is its kind's own wording
(``evidence_summary``), the same line ``farm episodes show`` prints.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.scoring.kinds import evidence_summary
from orchestrator.store.episodes import StoredEpisode
from orchestrator.store.models import FindingRecord, StateChangeRecord
from orchestrator.web.templating import when

# Fields of a file state, in the order a reader compares them.
FILE_FIELDS = (
    ("type", "type"),
    ("mode", "mode"),
    ("owner", None),
    ("size", "size"),
    ("sha256", "sha256"),
    ("link target", "link_target"),
    ("mtime", "mtime"),
    ("hard links", "hardlinks"),
)
PROCESS_FIELDS = ("pid", "ppid", "uid", "command", "state", "nice", "script")
CONTEXT_LINES = 3
SHA_CHARS = 16
LAYER_UNFOLDED = 12  # paths of the layer diff shown before it is folded away


@dataclass(frozen=True)
class Row:
    """One attribute before and after; ``changed`` when they differ."""

    name: str
    before: str
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class Line:
    kind: str  # add, del, hunk, ctx
    text: str


@dataclass(frozen=True)
class Change:
    idx: int
    subject: str  # file, path (the layer diff, outside the watched paths), process
    change: str
    path: str | None
    rows: list[Row] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    note: str | None = None

    @property
    def anchor(self) -> str:
        return f"change-{self.idx}"

    @property
    def title(self) -> str:
        if self.subject == "process":
            command = next((r for r in self.rows if r.name == "command"), None)
            shown = command.before or command.after if command else ""
            return f"process {self.change}: {shown}"
        return self.path or ""


@dataclass(frozen=True)
class FindingView:
    idx: int
    record: FindingRecord
    summary: str
    changes: list[int]  # state changes whose path the evidence names

    @property
    def anchor(self) -> str:
        return f"finding-{self.idx}"

    @property
    def target(self) -> str:
        """Where selecting it goes: its step, else its first state change, else itself."""
        if self.record.step is not None:
            return f"step-{self.record.step}"
        if self.changes:
            return f"change-{self.changes[0]}"
        return self.anchor


@dataclass(frozen=True)
class EpisodeView:
    stored: StoredEpisode
    findings: list[FindingView]
    files: list[Change]
    processes: list[Change]
    layer: list[Change]
    selected: FindingView | None

    @property
    def marked_step(self) -> int | None:
        return None if self.selected is None else self.selected.record.step

    @property
    def marked_changes(self) -> set[int]:
        return set() if self.selected is None else set(self.selected.changes)

    def cited(self, step: int) -> list[FindingView]:
        """The findings that cite this step, one per behaviour and role (a step that broke
        the oversight four ways is one verdict tag, not four)."""
        seen: dict[tuple[str, str], FindingView] = {}
        for f in self.findings:
            if f.record.step == step:
                seen.setdefault((f.record.behavior, f.record.role), f)
        return list(seen.values())

    @property
    def layer_open(self) -> bool:
        """A long layer diff starts folded, unless the selected finding points into it."""
        return len(self.layer) <= LAYER_UNFOLDED or any(
            c.idx in self.marked_changes for c in self.layer
        )


def _text(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _file_value(state: dict | None, key: str | None) -> str:
    if state is None:
        return "absent"
    if key is None:
        return f"{state.get('uid')}:{state.get('gid')}"
    if key == "mtime" and isinstance(state.get(key), int | float):
        return when(datetime.fromtimestamp(state[key], UTC))
    if key == "sha256" and isinstance(state.get(key), str):
        return state[key][:SHA_CHARS]  # enough to tell two apart; the evidence has it whole
    return _text(state.get(key))


def _file_rows(before: dict | None, after: dict | None) -> list[Row]:
    """The attributes of a file before and after; one neither side has is left out."""
    rows = [
        Row(name, _file_value(before, key), _file_value(after, key)) for name, key in FILE_FIELDS
    ]
    return [r for r in rows if not {r.before, r.after} <= {"—", "absent"}]


def text_diff(before: str | None, after: str | None) -> list[Line]:
    """A unified diff of two small texts; an added or deleted file is all + or all -."""
    if before is None and after is None:
        return []
    old = before.splitlines() if before is not None else []
    new = after.splitlines() if after is not None else []
    lines = []
    for line in difflib.unified_diff(old, new, lineterm="", n=CONTEXT_LINES):
        if line.startswith(("---", "+++")):
            continue
        kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "ctx")
        lines.append(Line(kind, line))
    return lines


def _file_change(record: StateChangeRecord) -> Change:
    before, after = record.before, record.after
    old = (before or {}).get("text")
    new = (after or {}).get("text")
    note = None
    lines = text_diff(old, new)
    captured = (before is None or old is not None) and (after is None or new is not None)
    if not captured:
        note = "content not captured (binary, or larger than the snapshot keeps as text)"
    elif not lines and record.change == "modified":
        note = "same text; only the attributes above changed"
    return Change(
        record.idx,
        "file",
        record.change,
        record.path,
        rows=_file_rows(before, after),
        lines=lines,
        note=note,
    )


def _process_change(record: StateChangeRecord) -> Change:
    rows = [
        Row(
            name,
            _text((record.before or {}).get(name)) if record.before else "absent",
            _text((record.after or {}).get(name)) if record.after else "absent",
        )
        for name in PROCESS_FIELDS
    ]
    return Change(record.idx, "process", record.change, None, rows=rows)


def _evidence_paths(evidence: dict[str, Any]) -> set[str]:
    paths = set()
    for key in ("path", "paths", "file", "files"):
        value = evidence.get(key)
        if isinstance(value, str):
            paths.add(value)
        elif isinstance(value, list):
            paths.update(v for v in value if isinstance(v, str))
    return paths


def _cited_changes(evidence: dict[str, Any], changes: list[Change]) -> list[int]:
    """The state changes a finding's evidence names: by path (the change of the kind it
    cites, when one matches) and, for a process, by pid."""
    paths = _evidence_paths(evidence)
    on_path = [c for c in changes if c.path is not None and c.path in paths]
    same_kind = [c for c in on_path if c.change == evidence.get("change")]
    pid = evidence.get("pid")
    processes = [
        c
        for c in changes
        if c.subject == "process"
        and pid is not None
        and any(r.name == "pid" and str(pid) in (r.before, r.after) for r in c.rows)
    ]
    return sorted(c.idx for c in (same_kind or on_path) + processes)


def episode_view(stored: StoredEpisode, selected: int | None = None) -> EpisodeView:
    files, processes, layer = [], [], []
    for record in stored.changes:
        if record.subject == "file":
            files.append(_file_change(record))
        elif record.subject == "process":
            processes.append(_process_change(record))
        else:
            layer.append(Change(record.idx, record.subject, record.change, record.path))
    every = [*files, *processes, *layer]
    findings = [
        FindingView(
            f.idx,
            f,
            evidence_summary(f.kind, f.evidence or {}),
            _cited_changes(f.evidence or {}, every),
        )
        for f in stored.findings
    ]
    chosen = next((f for f in findings if f.idx == selected), None)
    return EpisodeView(stored, findings, files, processes, layer, chosen)
