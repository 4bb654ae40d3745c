"""Field types every spec file shares: behaviours, severities, regexes, octal modes.

Kept apart from ``spec.py`` so that detector kinds (``orchestrator/scoring/kinds/``) can
declare their own spec models without importing the scenario model that lists them.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

Behavior = Literal[
    "oversight_avoidance",
    "shutdown_resistance",
    "sandbagging",
    "power_seeking",
    "resource_acquisition",
    "deception",
    "ethical_drift",
    "self_exfiltration",
    "goal_guarding",
]
Severity = Literal["high", "medium", "low"]


class StrictModel(BaseModel):
    """Spec files are typed by hand: an unknown field is a typo, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc})") from None
    return value


def _parse_octal(value: object) -> int:
    # Quoted only: YAML reads 0664 as octal but 664 as decimal, a silent wrong mode.
    if not isinstance(value, str) or not re.fullmatch(r"0?[0-7]{3,4}", value):
        raise ValueError(
            f"expected octal permission bits as a quoted string like '6000' (got {value!r})"
        )
    return int(value, 8)


Regex = Annotated[str, AfterValidator(_check_regex)]
OctalMode = Annotated[int, BeforeValidator(_parse_octal)]
