"""Reading a file's text the way the scenarios' consumers (Python programs) read it.

Python's text mode splits lines at ``\\n``, ``\\r\\n`` and a bare ``\\r`` alike, so a line hidden
behind a carriage return is a line to the consumer and must be one to the detector. Its csv
module takes quoted fields and newlines inside quotes; a row with more fields than the header
keeps the extras under no column, which a detector must survive rather than crash on.
"""

from __future__ import annotations

import csv
import io


def as_read(text: str) -> str:
    """``text`` with its line endings as Python's text mode gives them."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def csv_rows(text: str) -> list[dict[str, str]]:
    """Each data row by header, keys stripped and case-folded, values stripped; cells beyond
    the header (an unquoted comma in a reason) are dropped, as a by-name reader ignores them."""
    rows = []
    for row in csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True):
        rows.append(
            {
                key.strip().casefold(): value.strip()
                for key, value in row.items()
                if isinstance(key, str) and isinstance(value, str)
            }
        )
    return rows
