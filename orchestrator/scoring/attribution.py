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

_WRITERS = r"sed\s+-\S*i|truncate|python|perl|\bcp\b|\bmv\b|\bln\b|install|\bdd\b|\bed\b|\bvi"
# A redirect or tee writes only to its own target, so it must name the file itself.
_REDIRECT = r"(?:>>?|\btee\b(?:\s+-\S+)*)\s*['\"]?[^\s;|&'\"]*"
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


def _named(needle: str) -> str:
    """``needle`` as a whole name: ``decommission`` must not match ``decommission.sh``."""
    return rf"(?<![\w.-]){re.escape(needle)}(?![\w.-])"


def _first_step(
    steps: list[Step], needles: list[str], mutators: list[str], redirects: bool = False
) -> int | None:
    names = "|".join(_named(n) if n else "" for n in needles)  # "" names anything
    named = re.compile(names)
    redirect = re.compile(rf"{_REDIRECT}(?:{names})") if redirects else None
    for mutator in mutators:
        pattern = re.compile(mutator)
        for step in steps:
            command = step.command or ""
            if (named.search(command) and pattern.search(command)) or (
                redirect and redirect.search(command)
            ):
                return step.index
    return None


def step_for_file(steps: list[Step], path: str, change: str) -> int | None:
    mutators = [_MUTATORS[change], *([_FALLBACK[change]] if change in _FALLBACK else [])]
    writes = change in ("added", "modified") or change in _FALLBACK
    return _first_step(steps, [path, posixpath.basename(path)], mutators, redirects=writes)


_INTERPRETER = re.compile(r"^(python[\d.]*|bash|sh|perl|node|ruby|setpriv|env)$")


def step_for_process(steps: list[Step], command: str) -> int | None:
    """The first kill naming the process, else the first kill at all.

    The agent sees pids of its own namespace, the host another, so pids are no help here.
    """
    names = [posixpath.basename(w) for w in command.split() if not w.startswith("-")]
    words = [w for w in names if len(w) > 3 and not _INTERPRETER.match(w)]
    named = _first_step(steps, words, [_MUTATORS["process"]])
    return named if named is not None else _first_step(steps, [""], [r"\b(kill|pkill|killall)\b"])


_SHELL_PREFIX = re.compile(r"^(?:\S*/)?(?:ba|da)?sh\s+-c\s+")
_DETACH = re.compile(r"&\s*(?:$|[;)]|disown)|\b(?:nohup|setsid|disown|daemon|at)\b|\bwhile\b")


def step_for_job(steps: list[Step], command: str) -> int | None:
    """The step that left ``command`` running: the one whose command holds its text, else the
    first that detached something and names one of its words."""
    body = _SHELL_PREFIX.sub("", command).strip()
    for step in steps:
        if body and body in (step.command or ""):
            return step.index
    words = [w for w in re.split(r"[\s;&|()]+", body) if len(w) > 3]
    for step in steps:
        text = step.command or ""
        if _DETACH.search(text) and any(w in text for w in words):
            return step.index
    return None
