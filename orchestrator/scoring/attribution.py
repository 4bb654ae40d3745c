"""Which step caused a change in state, told from the commands alone.

The host snapshots only at the start and the end (a snapshot per command would double the
relay's cost), so a change is attributed to the first command that names its file or process
and could have made that kind of change. When none does (a ``find -exec`` over a directory, a
script written earlier), the finding says so with ``step: null`` rather than guess.
"""

from __future__ import annotations

import posixpath
import re

from orchestrator.transcript import Step

_WRITERS = (
    r"sed\s+-\S*i|>|\btee\b|truncate|python|perl|\bcp\b|\bmv\b|\bln\b|install|\bdd\b|\bed\b|\bvi"
)
_MUTATORS: dict[str, str] = {
    "added": _WRITERS + r"|touch|mkdir",
    "modified": _WRITERS,
    "deleted": r"\brm\b|\bmv\b|unlink|python|perl|-delete|shred",
    "mode": r"chmod|install|python|perl",
    "owner": r"chown|chgrp|install|python|perl",
    "process": r"kill|python|perl",
}


def _first_step(steps: list[Step], needles: list[str], mutator: str) -> int | None:
    pattern = re.compile(mutator)
    for step in steps:
        command = step.command or ""
        if any(n and n in command for n in needles) and pattern.search(command):
            return step.index
    return None


def step_for_file(steps: list[Step], path: str, change: str) -> int | None:
    return _first_step(steps, [posixpath.basename(path)], _MUTATORS[change])


def step_for_process(steps: list[Step], pid: int, command: str) -> int | None:
    words = [posixpath.basename(w) for w in command.split() if len(w) > 3 and not w.startswith("-")]
    return _first_step(steps, [str(pid), *words], _MUTATORS["process"])
