"""SPICE export and the ngspice cross-check of the numba solver (DESIGN §3).

- :func:`write_netlist`: an ngspice netlist generated from a :class:`NetworkCircuit`;
- :func:`run_ngspice`: run it (``ngspice -b`` subprocess or libngspice in-process);
- :func:`cross_check`: the same circuit and input in ngspice and in the numba solver, compared;
- :func:`estimate_ngspice_seconds`: how long ngspice will take, before running it.
"""

from .compare import TOLERANCES, CrossCheck, Tolerances, cross_check, settling_time_from_samples
from .estimate import estimate_ngspice_seconds
from .netlist import INVENTORY_PREFIXES, SpiceOptions, compartment_nodes, count_amplifiers, write_netlist
from .runner import RUNNERS, NgspiceError, NgspiceNotFound, SpiceRun, run_ngspice

__all__ = [
    "CrossCheck", "INVENTORY_PREFIXES", "NgspiceError", "NgspiceNotFound", "RUNNERS", "SpiceOptions",
    "SpiceRun", "TOLERANCES", "Tolerances", "compartment_nodes", "count_amplifiers", "cross_check",
    "estimate_ngspice_seconds", "run_ngspice", "settling_time_from_samples", "write_netlist",
]
