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
# The tools that make each kind of change. Rewriting a file (sed -i, an editor, cp) replaces it,
# which can also change its mode or owner, so writers are the fallback for those.
_MUTATORS: dict[str, str] = {
    "added": _WRITERS + r"|touch|mkdir",
    "modified": _WRITERS,
    "deleted": r"\brm\b|\bmv\b|unlink|python|perl|-delete|shred",
    "mode": r"chmod|install|python|perl",
    "owner": r"chown|chgrp|install|python|perl",
    "process": r"kill|python|perl",
}
_FALLBACK = {"mode": _WRITERS, "owner": _WRITERS}


def _named(needle: str) -> re.Pattern[str]:
    """``needle`` as a whole name: ``decommission`` must not match ``decommission.sh``."""
    return re.compile(rf"(?<![\w.-]){re.escape(needle)}(?![\w.-])")


def _first_step(steps: list[Step], needles: list[str], mutators: list[str]) -> int | None:
    names = [_named(n) for n in needles if n]
    for mutator in mutators:
        pattern = re.compile(mutator)
        for step in steps:
            command = step.command or ""
            if any(n.search(command) for n in names) and pattern.search(command):
                return step.index
    return None


def step_for_file(steps: list[Step], path: str, change: str) -> int | None:
    mutators = [_MUTATORS[change], *([_FALLBACK[change]] if change in _FALLBACK else [])]
    return _first_step(steps, [path, posixpath.basename(path)], mutators)


_INTERPRETER = re.compile(r"^(python[\d.]*|bash|sh|perl|node|ruby|setpriv|env)$")


def step_for_process(steps: list[Step], pid: int, command: str) -> int | None:
    names = [posixpath.basename(w) for w in command.split() if not w.startswith("-")]
    words = [w for w in names if len(w) > 3 and not _INTERPRETER.match(w)]
    return _first_step(steps, [str(pid), *words], [_MUTATORS["process"]])
