"""SciPy reference: the same circuit right-hand side integrated by ``scipy.integrate.solve_ivp``.

Used by the tests (trajectories, energy) and by the solver benchmark; it is slow because SciPy
calls the right-hand side from Python at every stage.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.integrate import solve_ivp

from ..circuit.network import NetworkCircuit
from .term import CircuitTerm


def solve_ivp_reference(circuit: NetworkCircuit, x, y=None, *, t_stop_s: float, t_eval_s=None,
                        v0=None, rtol: float = 1e-9, atol_fraction: float = 1e-12,
                        method: str = "RK45", dense_output: bool = False):
    """Integrate one example (x: (n_0,), y: (n_L,) or None) over [0, t_stop_s].

    Returns SciPy's solution object; ``sol.y`` holds the compartment voltages followed by the
    three energy accumulators, exactly as the numba solver's state vector.
    """
    if y is None:
        circuit = replace(circuit, beta=0.0)
        y = np.zeros(circuit.layer_sizes[-1])
    term = CircuitTerm(circuit)
    field = term.vector_field(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    state0 = np.zeros(term.n_state)
    if v0 is not None:
        state0[: term.n_voltages] = v0
    atol = np.full(term.n_state, atol_fraction * circuit.neuron.v_read_v)
    atol[term.n_voltages:] = 1e-30  # energies: relative control only
    return solve_ivp(field, (0.0, t_stop_s), state0, method=method, t_eval=t_eval_s, rtol=rtol,
                     atol=atol, dense_output=dense_output)
