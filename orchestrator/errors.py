"""The farm's error branches: which side failed decides what a caller does.

A ``UserError`` is the user's to fix (a setting, a name, a file) and is reported as such; an
``InfrastructureError`` is the machinery's (an engine, a box, a network) and ends an episode
as ``error``, never as a verdict. Callers catch by branch, not by hand-kept tuples.
"""

from __future__ import annotations


class FarmError(Exception):
    """Every error the farm raises on purpose."""


class UserError(FarmError):
    """Bad input or configuration: the message says what to change."""


class InfrastructureError(FarmError, RuntimeError):
    """The machinery failed; the episode it happened in is an error, not a result."""
