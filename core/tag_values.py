"""Numbers MLflow hands back as text (tags, params), read leniently: None when not a number."""

from __future__ import annotations

import math
from typing import Any


def as_float(value: Any) -> float | None:
    """A finite float, else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def as_int(value: Any) -> int | None:
    """An int (from "3" or "3.0"), else None."""
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None
