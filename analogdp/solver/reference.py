"""SciPy reference: the circuit ODE written plainly in numpy from the circuit description and
integrated by ``scipy.integrate.solve_ivp``.

It is an independent implementation of the equations in :mod:`analogdp.circuit.network`
(straight matrix products on every crossbar, inputs included, at every evaluation), so the tests
that compare it with the numba kernels check the kernels' arithmetic, not only their stepping.
Its state vector has the same layout as the numba solver's: compartment voltages, then the
energies delivered by the compartment amplifiers, dissipated in R_m, and dissipated in the
crossbars.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.integrate import solve_ivp

from ..circuit.network import NetworkCircuit
from ..digital.functional import activation, loss_gradient


class NumpyCircuitField:
    """d(state)/dt of one example, vectorised with numpy."""

    def __init__(self, circuit: NetworkCircuit, x: np.ndarray, target: np.ndarray, hidden_activation=None):
        self.circuit = circuit
        # a measured transfer curve (u -> V_target / V_r) in place of the circuit's activation
        self.hidden_activation = hidden_activation
        self.x = np.asarray(x, dtype=np.float64)
        self.target = np.asarray(target, dtype=np.float64)
        kind = circuit.neuron_kind
        self.row_w = np.asarray(kind.row_weights)
        self.col_w = np.asarray(kind.column_weights)
        self.gains = np.asarray(kind.feedback_gains)
        self.n_voltages = circuit.n_compartments

    def layer_voltages(self, state: np.ndarray, layer: int) -> np.ndarray:
        c = self.circuit
        start = c.compartment_offset(layer)
        return state[start:start + c.layer_sizes[layer] * c.compartments_per_neuron].reshape(
            c.layer_sizes[layer], c.compartments_per_neuron)

    def __call__(self, _t: float, state: np.ndarray) -> np.ndarray:
        c = self.circuit
        v_r = c.neuron.v_read_v
        scale = c.device.g_unit_s * v_r
        L = c.n_layers
        comps = [None] + [self.layer_voltages(state, k) for k in range(1, L + 1)]
        a = [None] * (L + 1)
        b = [None] * (L + 1)
        crossbar_power = 0.0
        for k, xbar in enumerate(c.crossbars):
            rows = v_r * self.x if k == 0 else comps[k] @ self.row_w
            if xbar.has_bias_row:
                rows = np.append(rows, v_r)
            d = comps[k + 1] @ self.col_w
            diff = xbar.g_pos_s - xbar.g_neg_s
            a[k + 1] = rows @ diff / scale
            b[k] = (diff @ d)[: xbar.n_inputs] / scale
            total = xbar.g_pos_s + xbar.g_neg_s
            rows_power = rows ** 2 @ total.sum(axis=1)
            cols_power = d ** 2 @ total.sum(axis=0)
            if c.scheme == "bidirectional":
                crossbar_power += rows_power + cols_power - 2.0 * d @ (rows @ diff)
            else:
                crossbar_power += rows_power + cols_power
        if c.neuron_kind.nudge_at == "state":
            z = comps[L] @ self.row_w / v_r
        else:
            z = a[L]
        nudge = c.beta * loss_gradient(c.loss, z, self.target)
        targets = []
        for k in range(1, L + 1):
            if k < L:
                u = a[k][:, None] + self.gains[None, :] * b[k][:, None]
                f_u = activation(c.activation, u) if self.hidden_activation is None else self.hidden_activation(u)
                targets.append(v_r * f_u)
            else:
                targets.append(v_r * (a[k][:, None] - self.gains[None, :] * nudge[:, None]))
        v_target = np.concatenate([t.ravel() for t in targets])
        drive = v_target - state[: self.n_voltages]
        r_m = c.neuron.r_m_ohm
        return np.concatenate([drive / c.neuron.tau_s,
                               [v_target @ drive / r_m, drive @ drive / r_m, crossbar_power]])


def solve_ivp_reference(circuit: NetworkCircuit, x, y=None, *, t_stop_s: float, t_eval_s=None,
                        v0=None, rtol: float = 1e-9, atol_fraction: float = 1e-12,
                        method: str = "RK45", dense_output: bool = False, hidden_activation=None):
    """Integrate one example (x: (n_0,), y: (n_L,) or None) over [0, t_stop_s] with SciPy.
    ``hidden_activation`` (optional callable u -> f(u)) replaces the hidden compartments' activation.

    Returns SciPy's solution object; ``sol.y`` has the numba solver's state layout.
    """
    if y is None:
        circuit = replace(circuit, beta=0.0)
        y = np.zeros(circuit.layer_sizes[-1])
    field = NumpyCircuitField(circuit, x, y, hidden_activation)
    state0 = np.zeros(circuit.n_compartments + 3)
    if v0 is not None:
        state0[: circuit.n_compartments] = v0
    atol = np.full(state0.size, atol_fraction * circuit.neuron.v_read_v)
    atol[circuit.n_compartments:] = 1e-30  # energies: relative control only
    return solve_ivp(field, (0.0, t_stop_s), state0, method=method, t_eval=t_eval_s, rtol=rtol,
                     atol=atol, dense_output=dense_output)
