"""Path rules shared by the spec (what a detector may read) and the diff (what is watched)."""

from __future__ import annotations

from collections.abc import Iterable


def under(path: str, roots: Iterable[str]) -> bool:
    """``path`` is one of ``roots`` or inside one of them."""
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)
