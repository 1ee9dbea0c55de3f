"""Pinned numbers: three runs whose every summary figure is held to the reference values.

The references in tests/data/pinned were written by ``python -m sims.crossbar`` (commands in
PINNED below); a refactor must reproduce each number to 1e-12 relative. A change that moves
the numbers on purpose (a model, a tolerance policy) re-pins them in the same commit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sims import crossbar

DATA = Path(__file__).parent / "data" / "pinned"
RELATIVE = 1e-12
# Figures of the machine and of the run's provenance, not of the circuit.
UNPINNED = {"wall_time_s", "wall_time_breakdown_s", "provenance"}
PINNED = {
    "dp_64x32.json": ["--size", "64x32", "--samples", "8"],
    "epc_64x32.json": ["--size", "64x32", "--algo", "ep-centered", "--samples", "8"],
    "compare_32x16x16x10.json": ["--layers", "32x16x16x10", "--compare", "--samples", "8"],
}


def differences(actual, expected, where: str = "") -> list[str]:
    """Every place where ``actual`` departs from ``expected`` (numbers beyond RELATIVE)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(actual) - UNPINNED != set(expected) - UNPINNED:
            return [f"{where}: keys {sorted(actual) if isinstance(actual, dict) else actual} "
                    f"!= {sorted(expected)}"]
        return [d for key in expected if key not in UNPINNED
                for d in differences(actual[key], expected[key], f"{where}.{key}")]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: {actual} != {expected}"]
        return [d for i, (a, e) in enumerate(zip(actual, expected)) for d in differences(a, e, f"{where}[{i}]")]
    if isinstance(expected, float) and not isinstance(actual, bool) and isinstance(actual, (int, float)):
        if math.isclose(actual, expected, rel_tol=RELATIVE, abs_tol=0.0):
            return []
        return [f"{where}: {actual!r} != {expected!r}"]
    return [] if actual == expected else [f"{where}: {actual!r} != {expected!r}"]


@pytest.mark.parametrize("name", sorted(PINNED))
def test_summary_reproduces_the_pinned_numbers(name, tmp_path):
    path = tmp_path / name
    status = crossbar.main(PINNED[name] + ["--no-progress", "--json", str(path)])
    assert status == 0
    found = differences(json.loads(path.read_text()), json.loads((DATA / name).read_text()))
    assert not found, "\n".join(found[:20])


def test_the_comparison_can_fail():
    expected = json.loads((DATA / "dp_64x32.json").read_text())
    nudged = json.loads(json.dumps(expected))
    nudged["energy_breakdown_j"]["crossbar"] *= 1 + 1e-11
    assert differences(nudged, expected) == [".energy_breakdown_j.crossbar: "
                                             f"{nudged['energy_breakdown_j']['crossbar']!r} != "
                                             f"{expected['energy_breakdown_j']['crossbar']!r}"]
