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
plain-Python one of :mod:`analogdp.solver.wired` around the shared numba kernels. The right-hand
side is two small numba kernels: the ideal-wire crossbar products into the sense stages' ideal
outputs (:func:`sense_products`; with resistive wires the grid solves take their place), and the
stages and neurons (:func:`stages_and_neurons`).

Layout of the flat arrays: neurons of layers 1..L in order (``n_off[l]`` is layer l's first);
stages: forward sense of neuron n at n, backward sense of hidden neuron n at n_neurons + n,
compartment c at n_neurons + n_hidden + c.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..circuit.amplifiers import (STAGE_BACKWARD_SENSE, STAGE_COMPARTMENT, STAGE_FORWARD_SENSE,
                                  StageAmplifierParams, amplifier_stages, curve_target_scale)
from ..circuit.network import NetworkCircuit
from . import kernels
from . import wired as wired_module
from .wired import CircuitHeldWeakly, WiredTerm

# accumulators after the voltages: those of the ideal-wire circuit, or with resistive wires those of
# analogdp.solver.wired (neuron sources, neuron resistors, devices, wires, line drivers)
A_NEURON_SOURCES, A_NEURON_RESISTORS, A_CROSSBAR = range(kernels.N_ACCUMULATORS)


@njit(cache=True, nogil=True)
def sense_products(state, a_input, input_row_power, w_flat, w_off, r_off, sizes, has_bias, row_total, col_total,
                   row_w, col_w, v_r, g_unit, dual, rows, cols, ideal):
    """Row and column signals of every neuron (activity units, into ``rows``, ``cols``), the
    ideal outputs V_r·a and V_r·b of the sense stages (into ``ideal``) from the ideal-wire crossbar
    products; returns the crossbar power in V_r² units (crossbar 0's input product ``a_input`` and
    row power are constant during a settle and given)."""
    n_layers = sizes.size - 1
    m = row_w.size
    inv_v_r = 1.0 / v_r
    n_neurons = sizes[1:].sum()
    for n in range(n_neurons):
        row = 0.0
        col = 0.0
        for q in range(m):
            row += row_w[q] * state[n * m + q]
            col += col_w[q] * state[n * m + q]
        rows[n] = row * inv_v_r
        cols[n] = col * inv_v_r
    power = input_row_power
    cross = 0.0
    for j in range(sizes[1]):
        ideal[j] = v_r * a_input[j]
        d = cols[j]
        power += d * d * col_total[j]
        cross += d * a_input[j]
    if not dual:
        power -= 2.0 * g_unit * cross
    first = 0  # first neuron of layer k
    for k in range(1, n_layers):
        n_in = sizes[k]
        n_rows = n_in + has_bias[k]
        n_cols = sizes[k + 1]
        above = first + n_in  # first neuron of layer k + 1
        w = w_flat[w_off[k]:w_off[k] + n_rows * n_cols].reshape((n_rows, n_cols))
        for j in range(n_cols):
            ideal[above + j] = 0.0
        cross = 0.0
        for i in range(n_rows):
            x = rows[first + i] if i < n_in else 1.0
            back = 0.0
            for j in range(n_cols):
                ideal[above + j] += x * w[i, j]
                back += w[i, j] * cols[above + j]
            if i < n_in:
                ideal[n_neurons + first + i] = v_r * back
            power += x * x * row_total[r_off[k] + i]
        for j in range(n_cols):
            a = ideal[above + j]
            ideal[above + j] = v_r * a
            d = cols[above + j]
            power += d * d * col_total[above + j]
            cross += d * a
        if not dual:
            power -= 2.0 * g_unit * cross
        first = above
    return power


@njit(cache=True, nogil=True)
def _stage_output(i, ideal_v, state, stage_offset, noise_gain, offset_v, dynamic, a0, rail_low, rail_high):
    if dynamic[i]:
        out = state[stage_offset + i]
    else:
        out = (ideal_v + noise_gain[i] * offset_v[i]) / (1.0 + noise_gain[i] / a0[i])
    return min(rail_high[i], max(rail_low[i], out))


@njit(cache=True, nogil=True)
def stages_and_neurons(state, dstate, u_out, ideal, outputs, rows, target, sizes, gains, noise_gain, offset_v,
                       v_r, tau, r_m, beta, relu, ce, nudge_at_state, dynamic, omega_t, leak_per_s, slew,
                       a0, rail_low, rail_high, stage_offset, n_v, nudge, curve_u, curve_v, curve_scale):
    """Given the sense stages' ideal outputs in ``ideal``: every stage's output (into ``outputs``),
    the compartment stages' ideal targets, dv/dt, the poles' dp/dt and the two neuron power
    terms; ``u_out`` receives the amplifier input of every hidden compartment. Returns the largest
    distance of a compartment from its amplifier's output or of a stage from its DC output.
    Per-stage arrays: ``dynamic``, ``omega_t``, ``leak_per_s``, ``slew``, ``a0``, rails. A
    non-empty ``curve_u``/``curve_v`` (input in V_r units, output in V) is the hidden compartment
    stages' measured DC transfer: their ideal target becomes curve(u)·``curve_scale`` (1 + N/A0,
    :func:`analogdp.circuit.amplifiers.curve_target_scale`), so that they settle onto the curve itself."""
    has_curve = curve_u.size > 0
    n_layers = sizes.size - 1
    m = gains.size
    inv_v_r = 1.0 / v_r
    n_neurons = sizes[1:].sum()
    n_out = sizes[n_layers]
    n_hidden = n_neurons - n_out
    n_sense = n_neurons + n_hidden
    for i in range(n_sense):
        outputs[i] = _stage_output(i, ideal[i], state, stage_offset, noise_gain, offset_v, dynamic, a0,
                                   rail_low, rail_high)
    zmax = -1e300
    for j in range(n_out):
        z = rows[n_hidden + j] if nudge_at_state else outputs[n_hidden + j] * inv_v_r
        nudge[j] = z
        zmax = max(zmax, z)
    if ce:
        total = 0.0
        for j in range(n_out):
            nudge[j] = np.exp(nudge[j] - zmax)
            total += nudge[j]
        for j in range(n_out):
            nudge[j] /= total
    for j in range(n_out):
        nudge[j] = beta * (nudge[j] - target[j])
    source_power = 0.0
    resistor_power = 0.0
    distance = 0.0
    for n in range(n_neurons):
        a = outputs[n] * inv_v_r
        hidden = n < n_hidden
        b = outputs[n_neurons + n] * inv_v_r if hidden else 0.0
        for q in range(m):
            c = n * m + q
            if hidden:
                u = a + gains[q] * b
                u_out[c] = u
                if has_curve:
                    s = n_sense + c
                    target_v = np.interp(u, curve_u, curve_v) * curve_scale[s]
                else:
                    u = max(u, 0.0)
                    if not relu:
                        u = min(u, 1.0)
                    target_v = v_r * u
            else:
                target_v = v_r * (a - gains[q] * nudge[n - n_hidden])
            s = n_sense + c
            ideal[s] = target_v
            out = _stage_output(s, target_v, state, stage_offset, noise_gain, offset_v, dynamic, a0,
                                rail_low, rail_high)
            outputs[s] = out
            diff = out - state[c]
            dstate[c] = diff / tau
            source_power += out * diff
            resistor_power += diff * diff
            distance = max(distance, abs(diff))
    dstate[n_v] = source_power / r_m
    dstate[n_v + 1] = resistor_power / r_m
    for i in range(outputs.size):
        if dynamic[i]:
            drive = omega_t[i] * ((ideal[i] - outputs[i]) / noise_gain[i] + offset_v[i])
            drive = min(slew[i], max(-slew[i], drive))
            dstate[stage_offset + i] = drive - leak_per_s[i] * state[stage_offset + i]
            steady = (ideal[i] + noise_gain[i] * offset_v[i]) / (1.0 + noise_gain[i] / a0[i])
            steady = min(rail_high[i], max(rail_low[i], steady))
            distance = max(distance, abs(steady - outputs[i]))
        else:
            dstate[stage_offset + i] = 0.0
    return distance


def hidden_transfer_curve(circuit: NetworkCircuit) -> tuple[np.ndarray, np.ndarray]:
    """The hidden compartment stages' measured transfer curve (u in V_r units, output in V) of a
    :class:`StageAmplifierParams`, or two empty arrays (the activation f with the stage's gain error)."""
    amp = circuit.amplifier
    if not isinstance(amp, StageAmplifierParams) or amp.hidden_transfer_u is None:
        return np.empty(0), np.empty(0)
    if circuit.activation != "hardsigmoid":
        raise ValueError(f"a measured compartment transfer curve replaces the hard sigmoid; the circuit's "
                         f"activation is {circuit.activation!r}")
    return np.array(amp.hidden_transfer_u, dtype=np.float64), np.array(amp.hidden_transfer_v, dtype=np.float64)


class AmplifiedTerm(CircuitHeldWeakly):
    """dv/dt, the amplifier poles' dp/dt and the power terms of a circuit with finite amplifiers
    (and ideal or resistive wires)."""

    def __init__(self, circuit: NetworkCircuit):
        self._hold(circuit)
        # resistive wires: the sensed signals come from the crossbar grids (DESIGN §8.1)
        self.wired = None if circuit.wires.ideal else WiredTerm(circuit)
        n_accumulators = kernels.N_ACCUMULATORS if self.wired is None else wired_module.N_ACCUMULATORS
        self.n_accumulators = n_accumulators
        amp = circuit.amplifier
        self.amplifier = amp
        self.stages = amplifier_stages(circuit)
        sizes = circuit.layer_sizes
        n_neurons, n_hidden = int(sum(sizes[1:])), int(sum(sizes[1:-1]))
        kinds = self.stages.kind
        if not (np.all(kinds[:n_neurons] == STAGE_FORWARD_SENSE)
                and np.all(kinds[n_neurons:n_neurons + n_hidden] == STAGE_BACKWARD_SENSE)
                and np.all(kinds[n_neurons + n_hidden:] == STAGE_COMPARTMENT)):
            raise RuntimeError("amplifier_stages changed its order; AmplifiedTerm reads forward, backward, "
                               "compartment stages in turn")
        self.n_neurons = n_neurons
        self.m = circuit.compartments_per_neuron
        self.n_voltages = circuit.n_compartments
        self.n_hidden_voltages = circuit.compartment_offset(circuit.n_layers)
        self.n_stages = self.stages.size
        self.stage_offset = self.n_voltages + n_accumulators
        self.n_state = self.stage_offset + self.n_stages
        # the states whose error is measured against the voltage tolerance: compartments and poles
        self.tolerance_states = np.r_[np.arange(self.n_voltages), np.arange(self.stage_offset, self.n_state)]
        kind = circuit.neuron_kind
        self.row_w = np.asarray(kind.row_weights, dtype=np.float64)
        self.col_w = np.asarray(kind.column_weights, dtype=np.float64)
        self.gains = np.asarray(kind.feedback_gains, dtype=np.float64)
        g_unit = circuit.device.g_unit_s
        self.g_unit = g_unit
        self.sizes = np.asarray(sizes, dtype=np.int64)
        weights = [np.ascontiguousarray((x.g_pos_s - x.g_neg_s) / g_unit) for x in circuit.crossbars]
        self.input_weights = weights[0]
        self.w_flat = np.concatenate([np.empty(0)] + [w.ravel() for w in weights[1:]])
        self.w_off = np.concatenate([[0, 0], np.cumsum([w.size for w in weights[1:]])]).astype(np.int64)
        self.has_bias = np.array([int(x.has_bias_row) for x in circuit.crossbars], dtype=np.int64)
        self.input_row_total = circuit.crossbars[0].row_conductance_s
        row_totals = [x.row_conductance_s for x in circuit.crossbars]
        self.row_total = np.concatenate([np.empty(0)] + row_totals[1:])
        self.r_off = np.concatenate([[0, 0], np.cumsum([r.size for r in row_totals[1:]])]).astype(np.int64)
        self.col_total = np.concatenate([x.g_pos_s.sum(axis=0) + x.g_neg_s.sum(axis=0) for x in circuit.crossbars])
        self.dual = circuit.scheme == "dual-array"
        # each stage's amplifier (one for all, or one per stage kind: StageAmplifierParams)
        per_stage = self.stages.per_stage
        self.dynamic = per_stage(lambda a: a.gbw_hz is not None).astype(np.bool_)
        self.omega_t = per_stage(lambda a: a.omega_t_rad_s)
        self.a0 = per_stage(lambda a: a.a0)
        self.leak_per_s = per_stage(lambda a: 0.0 if (a.gbw_hz is None or math.isinf(a.a0))
                                    else a.omega_t_rad_s / a.a0)
        self.slew = per_stage(lambda a: math.inf if a.slew_v_per_s is None else a.slew_v_per_s)
        self.rail_low = per_stage(lambda a: -math.inf if a.rail_low_v is None else a.rail_low_v)
        self.rail_high = per_stage(lambda a: math.inf if a.rail_high_v is None else a.rail_high_v)
        self.curve_u, self.curve_v = hidden_transfer_curve(circuit)
        self.curve_scale = curve_target_scale(self.stages.noise_gain, self.a0)
        self._ideal = np.empty(self.n_stages)
        self._outputs = np.empty(self.n_stages)
        self._rows = np.empty(n_neurons)
        self._cols = np.empty(n_neurons)
        self._nudge = np.empty(sizes[-1])
        self._input_key = None  # the input rows whose crossbar-0 product is cached

    # -- what the loop of analogdp.solver.wired expects of a term ------------------------------
    def grids(self, target_tol_v: float, transient_tol_v: float) -> list:
        """The crossbar grids of one settle (none with ideal wires, whose products are exact)."""
        return [] if self.wired is None else self.wired.grids(target_tol_v, transient_tol_v)

    def final_approach(self, grids) -> None:
        if self.wired is not None:
            self.wired.final_approach(grids)

    def ir_drop(self, state: np.ndarray, grids, x_rows: np.ndarray) -> list[dict[str, float]]:
        return self.wired.ir_drop(state, grids, x_rows)

    def input_rows(self, x: np.ndarray) -> np.ndarray:
        if self.circuit.crossbars[0].has_bias_row:
            return np.concatenate([x, [1.0]])
        return np.asarray(x, dtype=np.float64)

    def amplifier_time_constants_s(self) -> np.ndarray:
        """Small-signal time constant N/(ω_t·(1 + N/A0)) of every stage (0 with infinite GBW)."""
        n = self.stages.noise_gain
        return np.where(self.dynamic, n / (self.omega_t * (1.0 + n / self.a0)), 0.0)

    # -- the right-hand side ---------------------------------------------------------------------
    def rhs(self, state: np.ndarray, dstate: np.ndarray, u_out: np.ndarray, grids, x_rows: np.ndarray,
            target: np.ndarray) -> float:
        """dstate = d(state)/dt; u_out receives the amplifier input of every hidden compartment;
        returns the largest distance of a compartment or an amplifier from its target."""
        c = self.circuit
        v_r = c.neuron.v_read_v
        n_v = self.n_voltages
        ideal, rows = self._ideal, self._rows
        if self.wired is None:
            if self._input_key is not x_rows:  # the inputs are constant during a settle
                self._input_key = x_rows
                self._input_product = x_rows @ self.input_weights
                self._input_row_power = float(x_rows * x_rows @ self.input_row_total)
            crossbar_power = sense_products(state, self._input_product, self._input_row_power, self.w_flat,
                                            self.w_off, self.r_off, self.sizes, self.has_bias, self.row_total,
                                            self.col_total, self.row_w, self.col_w, v_r, self.g_unit, self.dual,
                                            rows, self._cols, ideal)
            dstate[n_v + A_CROSSBAR] = crossbar_power * v_r * v_r
        else:
            line_rows, line_cols = self.wired.line_signals(state)
            rows[:] = np.concatenate(line_rows)  # the output layer's row signals feed the nudge
            powers = self._wired_signals(grids, x_rows, line_rows, line_cols, ideal)
            dstate[n_v + wired_module.A_DEVICES: n_v + wired_module.A_LINE_DRIVERS + 1] = powers
        return stages_and_neurons(state, dstate, u_out, ideal, self._outputs, rows, target, self.sizes, self.gains,
                                  self.stages.noise_gain, self.stages.offset_v, v_r, c.neuron.tau_s,
                                  c.neuron.r_m_ohm, c.beta, c.activation == "relu", c.loss == "ce",
                                  c.neuron_kind.nudge_at == "state", self.dynamic, self.omega_t, self.leak_per_s,
                                  self.slew, self.a0, self.rail_low, self.rail_high, self.stage_offset, n_v,
                                  self._nudge, self.curve_u, self.curve_v, self.curve_scale)

    def _wired_signals(self, grids, x_rows, rows, cols, ideal) -> tuple[float, float, float]:
        """The sense stages' ideal outputs from the grid solves (V, into ``ideal``); returns the
        (devices, wires, line drivers) powers (W)."""
        wired = self.wired
        v_r = self.circuit.neuron.v_read_v
        devices_w = wires_w = drivers_w = 0.0
        first = 0  # first neuron of layer k
        for k, grid in enumerate(grids):
            row_v, col_pos_v, col_neg_v = wired.crossbar_drivers(k, x_rows, rows, cols)
            currents = grid.solve(row_v, col_pos_v, col_neg_v)
            n_in = self.circuit.crossbars[k].n_inputs
            above = first + (n_in if k > 0 else 0)
            n_cols = self.circuit.crossbars[k].n_columns
            ideal[above:above + n_cols] = v_r * wired.signal_scale * (
                (col_pos_v * wired.col_pos_total[k] - currents.col_pos_a)
                - (col_neg_v * wired.col_neg_total[k] - currents.col_neg_a))
            if k > 0:
                start = self.n_neurons + first
                ideal[start:start + n_in] = v_r * wired.signal_scale * (
                    row_v[:n_in] * wired.row_total[k][:n_in] - currents.row_a[:n_in])
                first = above
            drivers_w += row_v @ currents.row_a + col_pos_v @ currents.col_pos_a + col_neg_v @ currents.col_neg_a
            device, wire = grid.dissipation_w()
            devices_w += device
            wires_w += wire
        return devices_w, wires_w, drivers_w

    def outputs_v(self, state: np.ndarray, grids, x_rows: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Every stage's output (V) at ``state`` (in stage order)."""
        self.rhs(state, np.empty(self.n_state), np.empty(self.n_voltages), grids, x_rows, target)
        return self._outputs.copy()
