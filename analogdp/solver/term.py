"""The circuit ODE as a *term*: a network circuit packed into the flat arrays the kernels read.

Everything the right-hand side needs is derived here from :class:`NetworkCircuit`, the one
description of the circuit; nothing about the circuit is restated elsewhere. Packing a crossbar
costs more than a small settle, so each crossbar's packed form is kept with it (crossbars are
immutable: reprogramming makes new ones).
"""

from __future__ import annotations

import numpy as np

from ..circuit.network import Crossbar, NetworkCircuit
from . import kernels

_PACKED = "_solver_packed"
# crossbars with fewer column lines than this are packed transposed (see CircuitTerm.w_narrow)
NARROW_COLUMNS = 64


def _packed_crossbar(xbar: Crossbar, g_unit_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W = (G⁺ − G⁻)/G_u row-major, row conductances, column conductances) of one crossbar."""
    cached = xbar.__dict__.get(_PACKED)
    if cached is not None and cached[0] == g_unit_s:
        return cached[1]
    w = np.ascontiguousarray((xbar.g_pos_s - xbar.g_neg_s) / g_unit_s, dtype=np.float64)
    packed = (w.ravel(), np.ascontiguousarray(xbar.row_conductance_s, dtype=np.float64),
              np.ascontiguousarray(xbar.g_pos_s.sum(axis=0) + xbar.g_neg_s.sum(axis=0)))
    object.__setattr__(xbar, _PACKED, (g_unit_s, packed))
    return packed


class CircuitTerm:
    """dv/dt of every compartment plus the power terms, for one :class:`NetworkCircuit`."""

    def __init__(self, circuit: NetworkCircuit):
        # No reference to the circuit itself: the term is cached on the circuit (settle's
        # _cached), and a circuit → term → circuit cycle would leave every reprogrammed circuit
        # of a learning run (megabytes of conductances) to the cyclic garbage collector, which
        # counts objects, not bytes: an ODE training run grew by ~600 MB before it ran.
        self._first_crossbar, self._g_unit_s = circuit.crossbars[0], circuit.device.g_unit_s
        sizes = np.asarray(circuit.layer_sizes, dtype=np.int64)
        n_layers = circuit.n_layers
        m = circuit.compartments_per_neuron
        n_off = np.zeros(n_layers + 2, dtype=np.int64)
        n_off[1:] = np.concatenate([[0], np.cumsum(sizes[1:])])
        n_neurons = int(n_off[-1])
        self.sizes = sizes
        self.n_off = n_off
        self.v_off = n_off * m
        self.n_voltages = circuit.n_compartments
        self.n_state = self.n_voltages + kernels.N_ACCUMULATORS
        g_unit = circuit.device.g_unit_s
        packed = [_packed_crossbar(x, g_unit) for x in circuit.crossbars]
        # Crossbar 0's rows carry the constant inputs: the kernel never reads its devices (see
        # input_drive), so only crossbars 1.. are packed; offsets for crossbar 0 stay empty.
        inner = packed[1:]
        self.w_off = np.concatenate([[0, 0], np.cumsum([p[0].size for p in inner])]).astype(np.int64)
        # a crossbar with few column lines is stored transposed, so that the kernel's loops run
        # along its rows (kernels._crossbar_products_narrow)
        self.w_narrow = np.array([0] + [int(x.n_columns < NARROW_COLUMNS) for x in circuit.crossbars[1:]],
                                 dtype=np.int64)
        layouts = [p[0].reshape(x.n_rows, x.n_columns).T.ravel() if narrow else p[0]
                   for p, x, narrow in zip(inner, circuit.crossbars[1:], self.w_narrow[1:])]
        self.w_flat = np.concatenate([np.empty(0)] + layouts)
        # row conductances laid out like the kernel's row signals: layer k at n_off[k] + k
        self.row_total = np.zeros(n_neurons + n_layers + 1)
        for k, p in enumerate(packed[1:], start=1):
            start = n_off[k] + k
            self.row_total[start:start + p[1].size] = p[1]
        self.has_bias = np.array([int(x.has_bias_row) for x in circuit.crossbars], dtype=np.int64)
        self.col_total = np.concatenate([p[2] for p in packed])
        kind = circuit.neuron_kind
        self.row_w = np.asarray(kind.row_weights, dtype=np.float64)
        self.col_w = np.asarray(kind.column_weights, dtype=np.float64)
        self.gains = np.asarray(kind.feedback_gains, dtype=np.float64)
        self.iparams = np.array([
            n_layers, m, kernels.ACTIVATION_CODES[circuit.activation], kernels.LOSS_CODES[circuit.loss],
            int(kind.nudge_at == "state"), int(circuit.scheme == "dual-array"), self.n_voltages,
            int(self.v_off[n_layers]),
        ], dtype=np.int64)
        nrn = circuit.neuron
        self._input_weights = None  # crossbar 0 as input_drive reads it, packed on first use
        self.fparams = np.array([nrn.v_read_v, g_unit, nrn.tau_s, nrn.r_m_ohm, circuit.beta],
                                dtype=np.float64)

    def input_drive(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row voltages of crossbar 0 are constant during a settle, so its forward input
        a = Wᵀx (activity units) and its row power Σ_i x_i² G_row,i (in V_r²) are computed once
        per example (a matrix–matrix product over the batch)."""
        if self._input_weights is None:
            first = self._first_crossbar
            w, row_total, _ = _packed_crossbar(first, self._g_unit_s)
            self._input_weights = (w.reshape(first.n_rows, first.n_columns), row_total, first.has_bias_row)
        w, row_total, has_bias = self._input_weights
        n_in = x.shape[1]
        # the bias row (driven at 1) added separately rather than appending a column of ones
        a0 = x @ w[:n_in]
        rows_power = (x * x) @ row_total[:n_in]  # × V_r² in the kernel, like its other powers
        if has_bias:
            a0 += w[n_in]
            rows_power += row_total[n_in]
        return np.ascontiguousarray(a0), np.ascontiguousarray(rows_power)

    def network_arrays(self) -> tuple:
        """Arguments of :func:`kernels.circuit_rhs` that do not depend on the example."""
        return (self.iparams, self.fparams, self.sizes, self.v_off, self.n_off, self.w_off,
                self.has_bias, self.w_flat, self.w_narrow, self.row_total, self.col_total,
                self.row_w, self.col_w, self.gains)
