"""Adapting consumer callbacks written for bcc or for plain Python."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def positional_arity(func: Callable[..., Any]) -> int | None:
    """How many positional arguments ``func`` takes (None: any number or
    unknown)."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    count = 0
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            return None
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count
