"""The circuit ODE as a *term*: a network circuit packed into the flat arrays the kernels read.

Everything the right-hand side needs is derived here from :class:`NetworkCircuit`, the one
description of the circuit; nothing about the circuit is restated elsewhere.
"""

from __future__ import annotations

import numpy as np

from ..circuit.network import NetworkCircuit
from . import kernels


class CircuitTerm:
    """dv/dt of every compartment plus the power terms, for one :class:`NetworkCircuit`."""

    def __init__(self, circuit: NetworkCircuit):
        self.circuit = circuit
        sizes = np.asarray(circuit.layer_sizes, dtype=np.int64)
        n_layers = circuit.n_layers
        m = circuit.compartments_per_neuron
        n_off = np.zeros(n_layers + 2, dtype=np.int64)
        n_off[1:] = np.concatenate([[0], np.cumsum(sizes[1:])])
        self.sizes = sizes
        self.n_off = n_off
        self.v_off = n_off * m
        self.n_voltages = circuit.n_compartments
        self.n_state = self.n_voltages + kernels.N_ACCUMULATORS
        xbars = circuit.crossbars
        # Crossbar 0's rows carry the constant inputs: the kernel never reads its devices (see
        # input_drive), so only crossbars 1.. are packed; offsets for crossbar 0 stay empty.
        inner = xbars[1:]
        self.g_off = np.concatenate([[0, 0], np.cumsum([x.g_pos_s.size for x in inner])]).astype(np.int64)
        self.r_off = np.concatenate([[0, 0], np.cumsum([x.n_rows for x in inner])]).astype(np.int64)
        self.has_bias = np.array([int(x.has_bias_row) for x in xbars], dtype=np.int64)
        self.g_pos = np.concatenate([np.empty(0)] + [x.g_pos_s.ravel() for x in inner])
        self.g_neg = np.concatenate([np.empty(0)] + [x.g_neg_s.ravel() for x in inner])
        self.row_total = np.concatenate([np.empty(0)] + [x.row_conductance_s for x in inner])
        self.col_total = np.concatenate([x.g_pos_s.sum(axis=0) + x.g_neg_s.sum(axis=0) for x in xbars])
        kind = circuit.neuron_kind
        self.row_w = np.asarray(kind.row_weights, dtype=np.float64)
        self.col_w = np.asarray(kind.column_weights, dtype=np.float64)
        self.gains = np.asarray(kind.feedback_gains, dtype=np.float64)
        self.iparams = np.array([
            n_layers, m, kernels.ACTIVATION_CODES[circuit.activation], kernels.LOSS_CODES[circuit.loss],
            int(kind.nudge_at == "state"), int(circuit.scheme == "dual-array"), self.n_voltages,
        ], dtype=np.int64)
        nrn = circuit.neuron
        self.fparams = np.array([nrn.v_read_v, circuit.device.g_unit_s, nrn.tau_s, nrn.r_m_ohm,
                                 circuit.beta], dtype=np.float64)

    def input_drive(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row voltages of crossbar 0 are constant during a settle, so its forward currents
        Σ_i G±_ij x_i and its row power Σ_i x_i² G_row,i are computed once per example."""
        first = self.circuit.crossbars[0]
        v_r = self.circuit.neuron.v_read_v
        rows_v = v_r * x
        if first.has_bias_row:
            rows_v = np.hstack([rows_v, np.full((x.shape[0], 1), v_r)])
        fwd_pos = np.ascontiguousarray(rows_v @ first.g_pos_s)
        fwd_neg = np.ascontiguousarray(rows_v @ first.g_neg_s)
        rows_power = (rows_v ** 2) @ first.row_conductance_s
        return fwd_pos, fwd_neg, np.ascontiguousarray(rows_power)

    def network_arrays(self) -> tuple:
        """Arguments of :func:`kernels.circuit_rhs` that do not depend on the example."""
        return (self.iparams, self.fparams, self.sizes, self.v_off, self.n_off, self.g_off,
                self.r_off, self.has_bias, self.g_pos, self.g_neg, self.row_total, self.col_total,
                self.row_w, self.col_w, self.gains)
