"""The circuit ODE with finite amplifiers (DESIGN §8.2).

Every dynamic amplifier stage of :func:`analogdp.circuit.amplifiers.amplifier_stages` (the forward
and backward sense amplifiers, the compartment amplifiers) adds one state, its pole node p, after
the compartment voltages and the energy accumulators:

    [v ..., E_neuron_sources, E_neuron_resistors, E_crossbar, p ...]

A stage with ideal output T (V) and noise gain N follows

    dp/dt = clip(ω_t·(T/N + v_os − out/N), ±SR) − (ω_t/A0)·p,   out = clip(p, rails)

(with infinite GBW the stage has no dynamics: out is its DC value, and p stays 0). The sense stages'
ideal outputs are V_r·a and V_r·b of the ideal-wire crossbar products; the compartment stage's is
V_r·f(a + κ b) (V_r·(a − κ g) at the output) with a, b the sense stages' outputs. The compartment
amplifier's output drives C_m through R_m, so the neuron's energy terms are those of the ideal
circuit with the amplifier output in place of its ideal target.

The amplifier poles make the system stiffer than the ideal circuit (τ_amp of a follower at 100 MHz
is 1.6 ns against τ = 10 ns), and the sense stages slower (their noise gain is the line's
conductance over G_u), so these settles take more and shorter steps; the integration loop is the
plain-Python one of :mod:`analogdp.solver.wired` around the shared numba kernels.
"""

from __future__ import annotations

import math

import numpy as np

from ..circuit.amplifiers import (STAGE_BACKWARD_SENSE, STAGE_COMPARTMENT, STAGE_FORWARD_SENSE,
                                  amplifier_stages)
from ..circuit.network import NetworkCircuit
from . import kernels

N_ACCUMULATORS = kernels.N_ACCUMULATORS
A_NEURON_SOURCES, A_NEURON_RESISTORS, A_CROSSBAR = range(N_ACCUMULATORS)


class AmplifiedTerm:
    """dv/dt, the amplifier poles' dp/dt and the power terms of a circuit with finite amplifiers
    (ideal wires)."""

    def __init__(self, circuit: NetworkCircuit):
        if not circuit.wires.ideal:
            raise ValueError("finite amplifiers together with wire resistance are not modelled by the solver; "
                             "settle with ideal wires or ideal amplifiers")
        self.circuit = circuit
        amp = circuit.amplifier
        self.amplifier = amp
        self.stages = amplifier_stages(circuit)
        self.m = circuit.compartments_per_neuron
        self.n_voltages = circuit.n_compartments
        self.n_hidden_voltages = circuit.compartment_offset(circuit.n_layers)
        self.n_stages = self.stages.size
        self.stage_offset = self.n_voltages + N_ACCUMULATORS
        self.n_state = self.stage_offset + self.n_stages
        # the states whose error is measured against the voltage tolerance: compartments and poles
        self.tolerance_states = np.r_[np.arange(self.n_voltages), np.arange(self.stage_offset, self.n_state)]
        kind = circuit.neuron_kind
        self.row_w = np.asarray(kind.row_weights, dtype=np.float64)
        self.col_w = np.asarray(kind.column_weights, dtype=np.float64)
        self.gains = np.asarray(kind.feedback_gains, dtype=np.float64)
        g_unit = circuit.device.g_unit_s
        self.g_unit = g_unit
        self.weights = [(x.g_pos_s - x.g_neg_s) / g_unit for x in circuit.crossbars]
        self.row_total = [x.row_conductance_s for x in circuit.crossbars]
        self.col_total = [x.g_pos_s.sum(axis=0) + x.g_neg_s.sum(axis=0) for x in circuit.crossbars]
        self.layer_slices = [slice(circuit.compartment_offset(layer),
                                   circuit.compartment_offset(layer) + circuit.layer_sizes[layer] * self.m)
                             for layer in range(1, circuit.n_layers + 1)]
        sizes = circuit.layer_sizes
        n_forward = int(sum(sizes[1:]))
        n_backward = int(sum(sizes[1:-1]))
        self.forward_slices, self.backward_slices = [], []
        start = 0
        for layer in range(1, circuit.n_layers + 1):
            self.forward_slices.append(slice(start, start + sizes[layer]))
            start += sizes[layer]
        for layer in range(1, circuit.n_layers):
            self.backward_slices.append(slice(start, start + sizes[layer]))
            start += sizes[layer]
        self.compartment_stages = slice(n_forward + n_backward, self.n_stages)
        if not (np.all(self.stages.kind[:n_forward] == STAGE_FORWARD_SENSE)
                and np.all(self.stages.kind[n_forward:n_forward + n_backward] == STAGE_BACKWARD_SENSE)
                and np.all(self.stages.kind[self.compartment_stages] == STAGE_COMPARTMENT)):
            raise RuntimeError("amplifier_stages changed its order; AmplifiedTerm reads forward, backward, "
                               "compartment stages in turn")
        n = self.stages.noise_gain
        self.inv_noise_gain = 1.0 / n
        self.offset_v = self.stages.offset_v
        self.dynamic = amp.gbw_hz is not None
        self.omega_t = amp.omega_t_rad_s
        self.leak_per_s = 0.0 if (not self.dynamic or math.isinf(amp.a0)) else self.omega_t / amp.a0
        self.slew = amp.slew_v_per_s
        self.rails = None if amp.rail_low_v is None else (amp.rail_low_v, amp.rail_high_v)
        self._ideal = np.empty(self.n_stages)
        self._input_key = None  # the input rows whose crossbar-0 product is cached

    # -- what the loop of analogdp.solver.wired expects of a term ------------------------------
    def grids(self, target_tol_v: float, transient_tol_v: float) -> list:
        return []

    @staticmethod
    def final_approach(grids) -> None:
        """Nothing to tighten: the crossbar products are exact."""

    def input_rows(self, x: np.ndarray) -> np.ndarray:
        if self.circuit.crossbars[0].has_bias_row:
            return np.concatenate([x, [1.0]])
        return np.asarray(x, dtype=np.float64)

    def amplifier_time_constants_s(self) -> np.ndarray:
        """Small-signal time constant N/(ω_t·(1 + N/A0)) of every stage (0 with infinite GBW)."""
        if not self.dynamic:
            return np.zeros(self.n_stages)
        n = self.stages.noise_gain
        return n / (self.omega_t * (1.0 + n / self.amplifier.a0))

    # -- the right-hand side ---------------------------------------------------------------------
    def _outputs(self, poles: np.ndarray, ideal_v: np.ndarray, index: slice) -> np.ndarray:
        if not self.dynamic:
            return self.stages.dc_output_v(self.amplifier, ideal_v, index)
        p = poles[index]
        return p if self.rails is None else np.clip(p, *self.rails)

    def rhs(self, state: np.ndarray, dstate: np.ndarray, u_out: np.ndarray, grids, x_rows: np.ndarray,
            target: np.ndarray) -> float:
        """dstate = d(state)/dt; u_out receives the amplifier input of every hidden compartment;
        returns the largest distance of a compartment or an amplifier output from its target."""
        c = self.circuit
        v_r = c.neuron.v_read_v
        inv_v_r = 1.0 / v_r
        n_layers = c.n_layers
        n_v = self.n_voltages
        poles = state[self.stage_offset:]
        ideal = self._ideal
        comps = [state[sl].reshape(-1, self.m) for sl in self.layer_slices]
        rows = [cm @ self.row_w * inv_v_r for cm in comps]
        cols = [cm @ self.col_w * inv_v_r for cm in comps]
        crossbar_power = 0.0
        forward, backward = [], []
        for k, w in enumerate(self.weights):
            xbar = c.crossbars[k]
            d = cols[k]
            if k == 0:
                # the inputs are constant during a settle: their product and row power once
                x = x_rows
                if self._input_key is not x_rows:
                    self._input_key = x_rows
                    self._input_product = x @ w
                    self._input_row_power = float(x * x @ self.row_total[0])
                a_ideal = self._input_product
                row_power = self._input_row_power
            else:
                x = np.concatenate([rows[k - 1], [1.0]]) if xbar.has_bias_row else rows[k - 1]
                a_ideal = x @ w
                row_power = float(x * x @ self.row_total[k])
            ideal[self.forward_slices[k]] = v_r * a_ideal
            if k > 0:
                ideal[self.backward_slices[k - 1]] = v_r * (w[:xbar.n_inputs] @ d)
            power = row_power + d * d @ self.col_total[k]
            if c.scheme != "dual-array":
                power -= 2.0 * self.g_unit * float(d @ a_ideal)
            crossbar_power += power
        distance = 0.0
        outputs = np.empty(self.n_stages)
        for k in range(n_layers):
            sl = self.forward_slices[k]
            outputs[sl] = self._outputs(poles, ideal[sl], sl)
            forward.append(outputs[sl] * inv_v_r)
        for k in range(n_layers - 1):
            sl = self.backward_slices[k]
            outputs[sl] = self._outputs(poles, ideal[sl], sl)
            backward.append(outputs[sl] * inv_v_r)

        a_out = forward[n_layers - 1]
        z = rows[n_layers - 1] if c.neuron_kind.nudge_at == "state" else a_out
        if c.loss == "ce":
            e = np.exp(z - z.max())
            gradient = e / e.sum()
        else:
            gradient = z
        nudge = c.beta * (gradient - target)
        comp = self.compartment_stages
        compartment_ideal = ideal[comp]
        for layer in range(1, n_layers + 1):
            sl = self.layer_slices[layer - 1]
            a = forward[layer - 1]
            if layer < n_layers:
                u = a[:, None] + self.gains[None, :] * backward[layer - 1][:, None]
                u_out[sl] = u.ravel()
                upper = np.inf if c.activation == "relu" else 1.0
                compartment_ideal[sl] = v_r * np.clip(u, 0.0, upper).ravel()
            else:
                compartment_ideal[sl] = v_r * (a[:, None] - self.gains[None, :] * nudge[:, None]).ravel()
        ideal[comp] = compartment_ideal
        drive_v = self._outputs(poles, compartment_ideal, comp)
        outputs[comp] = drive_v

        diff = drive_v - state[:n_v]
        inv_r_m = 1.0 / c.neuron.r_m_ohm
        dstate[:n_v] = diff / c.neuron.tau_s
        dstate[n_v + A_NEURON_SOURCES] = float(drive_v @ diff) * inv_r_m
        dstate[n_v + A_NEURON_RESISTORS] = float(diff @ diff) * inv_r_m
        dstate[n_v + A_CROSSBAR] = crossbar_power * v_r * v_r
        distance = float(np.abs(diff).max())
        if self.dynamic:
            drive = self.omega_t * ((ideal - outputs) * self.inv_noise_gain + self.offset_v)
            if self.slew is not None:
                np.clip(drive, -self.slew, self.slew, out=drive)
            dstate[self.stage_offset:] = drive - self.leak_per_s * poles
            steady = self.stages.dc_output_v(self.amplifier, ideal, slice(None))
            distance = max(distance, float(np.abs(steady - outputs).max()))
        else:
            dstate[self.stage_offset:] = 0.0
        return distance

    def outputs_v(self, state: np.ndarray, x_rows: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Every stage's output (V) at ``state`` (in stage order)."""
        scratch = np.empty(self.n_state)
        self.rhs(state, scratch, np.empty(self.n_voltages), [], x_rows, target)
        poles = state[self.stage_offset:]
        if self.dynamic:
            return poles.copy() if self.rails is None else np.clip(poles, *self.rails)
        return self.stages.dc_output_v(self.amplifier, self._ideal, slice(None))
