"""Strict JSON (RFC 8259) for request bodies.

Python's ``json`` accepts ``NaN``, ``Infinity`` and ``-Infinity``, turns ``1e400`` into
``inf`` and leaves an escaped unpaired surrogate (``"\\ud800"``) in a string. None of these
is JSON, none can be stored or written back out as JSON (Postgres refuses them; an error
message echoing one cannot be serialised), so a body holding one is refused whole, with the
reason, before anything reads it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# A surrogate left in a decoded string is unpaired: json joins escaped pairs into one
# character, and UTF-8 bytes cannot encode a surrogate at all.
SURROGATE = re.compile("[\ud800-\udfff]")


class NotStrictJson(ValueError):
    """Why a body is not strict JSON, and where (a character offset, 0 when unknown)."""

    def __init__(self, reason: str, position: int = 0) -> None:
        super().__init__(reason)
        self.position = position


def _constant(name: str) -> Any:
    raise NotStrictJson(f"{name} is not a JSON number (RFC 8259 has no NaN or Infinity)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotStrictJson(f"the number {text[:40]} is too large for a double")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise NotStrictJson(f"an integer of {len(text)} digits is too large") from None


def strict_loads(body: bytes | str) -> Any:
    """``json.loads``, refusing what is not strict JSON with a :class:`NotStrictJson`."""
    try:
        value = json.loads(body, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise NotStrictJson(exc.msg, exc.pos) from None
    except UnicodeDecodeError as exc:
        raise NotStrictJson(f"the body is not UTF-8 text ({exc.reason})", exc.start) from None
    except RecursionError:
        raise NotStrictJson("the body is nested too deeply") from None
    _refuse_surrogates(value)
    return value


def _refuse_surrogates(value: Any) -> None:
    """Walks the parsed value without recursion, so nesting depth costs no stack."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if SURROGATE.search(item):
                raise NotStrictJson("a string holds an unpaired surrogate (e.g. \\ud800)")
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
