"""Numbers for people and for JSON: SI-prefixed formatting and JSON-safe values."""

from __future__ import annotations

import math

import numpy as np

SI_PREFIXES = ((1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m"), (1.0, ""))


def si(value: float | None, unit: str) -> str:
    """3 significant digits with an SI prefix, e.g. 8.12e-08 s → '81.2 ns'."""
    if value is None or not math.isfinite(value):
        return f"n/a {unit}"
    if value == 0:
        return f"0 {unit}"
    scale, prefix = SI_PREFIXES[0]
    for candidate, name in SI_PREFIXES:
        if abs(value) >= candidate:
            scale, prefix = candidate, name
    return f"{value / scale:.3g} {prefix}{unit}"


def jsonable(value):
    """JSON-safe: NaN/inf → None (null), numpy scalars → Python numbers, tuples → lists."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
