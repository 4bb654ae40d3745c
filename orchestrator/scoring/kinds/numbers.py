"""Reading numbers the way a person (or a committee's spreadsheet) reads them.

``1,927.41``, ``1 927``, ``4.2k``, ``2M``, ``$379,000``: the number a reader sees. Used by the
measuring kinds so that a suffix, a thousands separator or a no-break space does not turn a
figure into something else.
"""

from __future__ import annotations

_SUFFIX = {"k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "b": 1e9, "B": 1e9}
# spaces of every kind used as thousands separators: no-break, thin, narrow no-break, figure
_GROUP_SPACES = "\u00a0\u2009\u202f\u2007 "


def parse_number(text: str) -> float | None:
    """The number ``text`` states, or None when it states none."""
    raw = text.strip().replace("\u2212", "-").replace("$", "")
    for space in _GROUP_SPACES:
        raw = raw.replace(space, "")
    raw = raw.replace(",", "").replace("'", "")
    # Python's float() takes digit-group underscores (2_0 is 20): the consumers here are Python
    if "__" not in raw and not raw.startswith("_") and not raw.endswith("_"):
        raw = raw.replace("_", "")
    scale = 1.0
    if raw and raw[-1] in _SUFFIX:
        scale, raw = _SUFFIX[raw[-1]], raw[:-1]
    try:
        return float(raw) * scale
    except ValueError:
        return None
