"""The circuit ODE with resistive crossbar lines (DESIGN §8.1).

With wire resistance the sensed signals of a crossbar are no longer Wᵀx and W d: at every
right-hand-side evaluation each crossbar's resistive grid is solved for the present driver
voltages (rows at V_r·x, column pairs at ±V_r·d) and the sense amplifiers add back their self
terms from the terminal currents (:func:`analogdp.circuit.wires.sensed_signals_a`). The grids are
quasi-static (their line RC is far below τ, :func:`analogdp.circuit.wires.line_rc_s`), so they add
no state; each example of a batch has its own grids, whose warm starts by superposition follow the
smooth driver trajectories of its settle from one evaluation to the next.

The grid solve is the cost of an evaluation (milliseconds at 784×256 against microseconds for the
rest), so the integration loop here is plain Python around the numba kernels of the ideal circuit's
integrator: the same Dormand–Prince tableau, step control, clip-crossing prediction, final-approach
error cap and settling-time search on the continuous extension (DESIGN §4.1).

Energy: the line drivers deliver Σ V·I; it is dissipated in the devices (Σ G (u − w)² over the
cells, with u, w the row and column line voltages at the cell) and in the wires (Σ g (Δv)² over the
segments and terminal links). The three are integrated separately, so that the balance
delivered = devices + wires + neurons + capacitors checks the grid solution.
"""

from __future__ import annotations

import weakref

import numpy as np

from ..circuit.network import NetworkCircuit
from ..circuit.wires import TiledCrossbar, signal_deviation
from . import kernels

# accumulators after the voltages: neuron sources, neuron resistors, crossbar devices, wires,
# line drivers
N_ACCUMULATORS = 5
A_NEURON_SOURCES, A_NEURON_RESISTORS, A_DEVICES, A_WIRES, A_LINE_DRIVERS = range(N_ACCUMULATORS)
# the error a grid solve may cause in a target voltage, as a fraction of the voltage tolerances of
# the settle (the integrator's local error during the transient, the equilibrium tolerance near
# the end): it must stay far below both
GRID_TOLERANCE_FRACTION = 1e-2
# below this a node-voltage tolerance (V) is not reliably met in double precision on lines held
# at a few hundred mV (sums over a thousand cells)
GRID_TOL_FLOOR_V = 1e-14
GRID_MAX_SWEEPS = 2000
# smallest basis of past solutions a grid keeps along a settle (analogdp.circuit.wires.SpanSolver);
# a grid whose reachable driver space is larger gets a basis that holds all of it, up to
# SPAN_MEMORY_BYTES of stored solutions per tile (span_basis_size)
SPAN_BASIS = 48
SPAN_MEMORY_BYTES = 256 * 2**20


class CircuitHeldWeakly:
    """A term's reference to its circuit, held weakly: settle() caches the term on the circuit,
    and a circuit → term → circuit cycle would leave every reprogrammed circuit of a learning run
    (megabytes of conductances and grids) to the cyclic garbage collector, which counts objects,
    not bytes. Whoever builds a term keeps its circuit alive while using it."""

    _circuit_ref: weakref.ref

    @property
    def circuit(self) -> NetworkCircuit:
        circuit = self._circuit_ref()
        if circuit is None:
            raise ReferenceError("the circuit of this term is gone (keep a reference to it while settling)")
        return circuit

    def _hold(self, circuit: NetworkCircuit) -> None:
        self._circuit_ref = weakref.ref(circuit)


class WiredTerm(CircuitHeldWeakly):
    """dv/dt and the power terms of a :class:`NetworkCircuit` whose wires have resistance."""

    def __init__(self, circuit: NetworkCircuit):
        if circuit.scheme != "bidirectional":
            raise ValueError(f"wire resistance is modelled for the 'bidirectional' scheme only, got "
                             f"scheme {circuit.scheme!r}")
        self._hold(circuit)
        self.m = circuit.compartments_per_neuron
        self.n_voltages = circuit.n_compartments
        self.n_accumulators = N_ACCUMULATORS
        self.n_state = self.n_voltages + N_ACCUMULATORS
        self.n_hidden_voltages = circuit.compartment_offset(circuit.n_layers)
        self.tolerance_states = slice(0, self.n_voltages)
        kind = circuit.neuron_kind
        self.row_w = np.asarray(kind.row_weights, dtype=np.float64)
        self.col_w = np.asarray(kind.column_weights, dtype=np.float64)
        self.gains = np.asarray(kind.feedback_gains, dtype=np.float64)
        self.layer_slices = [slice(circuit.compartment_offset(layer),
                                   circuit.compartment_offset(layer) + circuit.layer_sizes[layer] * self.m)
                             for layer in range(1, circuit.n_layers + 1)]
        self.col_pos_total = [x.g_pos_s.sum(axis=0) for x in circuit.crossbars]
        self.col_neg_total = [x.g_neg_s.sum(axis=0) for x in circuit.crossbars]
        self.row_total = [x.row_conductance_s for x in circuit.crossbars]
        self.signal_scale = 1.0 / (circuit.device.g_unit_s * circuit.neuron.v_read_v)
        self.line_gain = [max(1.0, float(max(self.row_total[k].max(), self.col_pos_total[k].max(),
                                             self.col_neg_total[k].max())) / circuit.device.g_unit_s)
                          for k in range(len(circuit.crossbars))]

    def grids(self, target_tol_v: float, transient_tol_v: float) -> list[TiledCrossbar]:
        """Fresh grids (one per crossbar, tiled as the wires say) for one example's settle.

        A node-voltage error e on a line moves a sensed signal, and so a target voltage, by up
        to (line conductance / G_u)·e; each grid's tolerance is the target tolerance divided by
        that gain of its crossbar. ``transient_tol_v`` (from the integrator's local error) applies
        to the residual a solve may leave out until :meth:`final_approach`, ``target_tol_v``
        (from the equilibrium tolerance) to everything else."""
        grids = []
        for k, x in enumerate(self.circuit.crossbars):
            gain = self.line_gain[k]
            tol_v = max(target_tol_v / gain, GRID_TOL_FLOOR_V)
            grid = TiledCrossbar(x.g_pos_s, x.g_neg_s, self.circuit.wires, tol_v=tol_v,
                                 max_sweeps=GRID_MAX_SWEEPS, span_basis=self.span_basis_size(k),
                                 driver_bound_v=self.circuit.neuron.v_read_v)
            for span in grid.spans:
                span.skip_tol_v = max(transient_tol_v / gain, span.tol_v)
            grids.append(grid)
        return grids

    def span_basis_size(self, k: int) -> int:
        """Basis size of crossbar k's grids: large enough for every driver vector a settle can
        reach, so that the basis never has to start afresh, within SPAN_MEMORY_BYTES per tile.

        The drivers of a tile with R rows and C column pairs span at most R + C dimensions
        (column⁻ = −column⁺), and only 1 + C for crossbar 0, whose rows are the constant input.
        Along a long settle (hundreds of steps, hidden units crossing their clip kinks) the
        trajectory does fill that space at the solver's tolerance: on 256-64-10 at 3 Ω per cell
        a 48-element basis started afresh 35 times (745 solved elements, 2588 sweeps) where one of
        the full dimension solved 437 sweeps' worth once."""
        xbar = self.circuit.crossbars[k]
        wires = self.circuit.wires
        tile_rows = min(xbar.n_rows, wires.max_rows or xbar.n_rows)
        tile_cols = min(xbar.n_columns, wires.max_cols or xbar.n_columns)
        reachable = (1 if k == 0 else tile_rows) + tile_cols + 1
        element_bytes = 2 * tile_rows * 2 * tile_cols * 8  # row- and column-line node voltages
        return max(SPAN_BASIS, min(reachable, SPAN_MEMORY_BYTES // element_bytes))

    @staticmethod
    def final_approach(grids: list[TiledCrossbar]) -> None:
        """Near equilibrium every solve is held to the tight tolerance."""
        for grid in grids:
            for span in grid.spans:
                span.skip_tol_v = span.tol_v

    def input_rows(self, x: np.ndarray) -> np.ndarray:
        """Row signals of crossbar 0 (activity units, bias row included) for one example."""
        if self.circuit.crossbars[0].has_bias_row:
            return np.concatenate([x, [1.0]])
        return np.asarray(x, dtype=np.float64)

    def line_signals(self, state: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Row signals (dyad means) and column signals (dyad differences) of every layer 1..L,
        in activity units (V / V_r)."""
        inv_v_r = 1.0 / self.circuit.neuron.v_read_v
        rows, cols = [], []
        for sl in self.layer_slices:
            comps = state[sl].reshape(-1, self.m)
            rows.append(comps @ self.row_w * inv_v_r)
            cols.append(comps @ self.col_w * inv_v_r)
        return rows, cols

    def crossbar_drivers(self, k: int, x_rows: np.ndarray, rows: list[np.ndarray], cols: list[np.ndarray]):
        """Driver voltages (rows, column⁺, column⁻) of crossbar k (V)."""
        v_r = self.circuit.neuron.v_read_v
        xbar = self.circuit.crossbars[k]
        if k == 0:
            row_signal = x_rows
        elif xbar.has_bias_row:
            row_signal = np.concatenate([rows[k - 1], [1.0]])
        else:
            row_signal = rows[k - 1]
        d = cols[k] * v_r
        return row_signal * v_r, d, -d

    def rhs(self, state: np.ndarray, dstate: np.ndarray, u_out: np.ndarray, grids: list[TiledCrossbar],
            x_rows: np.ndarray, target: np.ndarray) -> float:
        """dstate = d(state)/dt; u_out receives the amplifier input of every hidden compartment;
        returns max |V_target − v|. Mirrors :func:`kernels.circuit_rhs` with the crossbar products
        taken from the grids."""
        c = self.circuit
        v_r = c.neuron.v_read_v
        n_layers = c.n_layers
        rows, cols = self.line_signals(state)
        forward, backward = [], []
        devices_w = wires_w = drivers_w = 0.0
        for k, grid in enumerate(grids):
            row_v, col_pos_v, col_neg_v = self.crossbar_drivers(k, x_rows, rows, cols)
            currents = grid.solve(row_v, col_pos_v, col_neg_v)
            forward.append(((col_pos_v * self.col_pos_total[k] - currents.col_pos_a)
                            - (col_neg_v * self.col_neg_total[k] - currents.col_neg_a)) * self.signal_scale)
            n_in = c.crossbars[k].n_inputs
            backward.append((row_v[:n_in] * self.row_total[k][:n_in] - currents.row_a[:n_in]) * self.signal_scale)
            drivers_w += (row_v @ currents.row_a + col_pos_v @ currents.col_pos_a
                          + col_neg_v @ currents.col_neg_a)
            device, wire = grid.dissipation_w()
            devices_w += device
            wires_w += wire

        a_out = forward[n_layers - 1]
        z = rows[n_layers - 1] if c.neuron_kind.nudge_at == "state" else a_out
        if c.loss == "ce":
            e = np.exp(z - z.max())
            gradient = e / e.sum()
        else:
            gradient = z
        nudge = c.beta * (gradient - target)

        n_v = self.n_voltages
        for layer in range(1, n_layers + 1):
            sl = self.layer_slices[layer - 1]
            a = forward[layer - 1]
            if layer < n_layers:
                u = a[:, None] + self.gains[None, :] * backward[layer][:, None]
                u_out[sl] = u.ravel()
                upper = np.inf if c.activation == "relu" else 1.0
                v_target = v_r * np.clip(u, 0.0, upper).ravel()
            else:
                v_target = v_r * (a[:, None] - self.gains[None, :] * nudge[:, None]).ravel()
            dstate[sl] = v_target
        targets = dstate[:n_v].copy()
        diff = targets - state[:n_v]
        inv_r_m = 1.0 / c.neuron.r_m_ohm
        dstate[:n_v] = diff / c.neuron.tau_s
        dstate[n_v + A_NEURON_SOURCES] = float(targets @ diff) * inv_r_m
        dstate[n_v + A_NEURON_RESISTORS] = float(diff @ diff) * inv_r_m
        dstate[n_v + A_DEVICES] = devices_w
        dstate[n_v + A_WIRES] = wires_w
        dstate[n_v + A_LINE_DRIVERS] = drivers_w
        return float(np.abs(diff).max())

    def ir_drop(self, state: np.ndarray, grids: list[TiledCrossbar], x_rows: np.ndarray) -> list[dict[str, float]]:
        """Per crossbar, the deviation of the sensed signals from the ideal-wire ones at
        ``state`` (:func:`analogdp.circuit.wires.signal_deviation`)."""
        rows, cols = self.line_signals(state)
        report = []
        for k, grid in enumerate(grids):
            drivers = self.crossbar_drivers(k, x_rows, rows, cols)
            currents = grid.solve(*drivers)
            xbar = self.circuit.crossbars[k]
            report.append(signal_deviation(xbar.g_pos_s, xbar.g_neg_s, *drivers, currents))
        return report


def accumulator_floor_j(circuit: NetworkCircuit, atol_v: float) -> float:
    """Absolute error an energy accumulator may make per step (J): the energy that the voltage
    tolerance leaves open anyway, atol_v on every compartment's charge C_m·V_r.

    Relative control alone fails where a power starts from exactly zero and grows faster than
    the method's order: with finite amplifiers every pole starts at 0 V, the neurons' drive grows
    like a high power of t, and the error estimate of the first step stays a fixed fraction of
    the step's increment however short the step, so the step shrank to nothing (an inference
    settle from reset with zero nudge failed this way at its first step)."""
    neuron = circuit.neuron
    return atol_v * neuron.v_read_v * neuron.c_m_f * circuit.n_compartments


def integrate_wired(term: WiredTerm, grids, x_rows, target, y0, t_end, t_max, save_ts, rtol, atol_v,
                    settle_tol_v, thresholds_v, h0, h_max, max_steps, tableau, out_saved, out_final,
                    out_at_settle, stats) -> None:
    """One example's settle: the algorithm of :func:`kernels.integrate_one` (see there) with
    ``term.rhs`` as the right-hand side (:class:`WiredTerm`, or
    :class:`~analogdp.solver.amplified.AmplifiedTerm` whose amplifier poles are held to the
    voltage tolerance with the compartments: ``term.tolerance_states``)."""
    n_state = y0.shape[0]
    n_v = term.n_voltages
    n_hidden = term.n_hidden_voltages
    tolerance_states = term.tolerance_states  # held to the voltage tolerance (atol_v)
    accumulators = slice(n_v, n_v + term.n_accumulators)
    energy_floor_j = accumulator_floor_j(term.circuit, atol_v)
    relu = term.circuit.activation == "relu"
    v_r = term.circuit.neuron.v_read_v
    inv_tau = 1.0 / term.circuit.neuron.tau_s
    rk_a, rk_b, rk_e, rk_dense = tableau.a, tableau.b, tableau.b_error, tableau.dense
    err_exponent = 1.0 / tableau.error_order
    n_stages = rk_b.shape[0]
    n_dense = rk_dense.shape[1]
    stages = np.empty((n_stages, n_state))
    u_start, u_end, u_scratch = np.zeros(n_v), np.zeros(n_v), np.zeros(n_v)
    u_previous, u_predicted = np.zeros(n_v), np.zeros(n_v)
    h_previous = 0.0
    y = y0.copy()
    y_new, y_tmp, err_vec = np.empty(n_state), np.empty(n_state), np.empty(n_state)
    zero_state = np.zeros(n_state)
    ts_list, ys_list, qs_list = [0.0], [y.copy()], []
    n_save = save_ts.shape[0]
    save_idx = 0
    while save_idx < n_save and save_ts[save_idx] <= 0.0:
        out_saved[save_idx] = y
        save_idx += 1
    t, h, h_resume = 0.0, h0, 0.0
    distance = np.inf
    last_change = np.inf
    first_stage_ready = False
    final_approach = False
    status = kernels.STATUS_SETTLED
    steps = rejected = kink_steps = evaluations = 0
    fixed_window = t_end > 0.0
    horizon = t_end if fixed_window else t_max
    stage_distance = np.inf
    while True:
        if fixed_window:
            if t >= t_end:
                status = kernels.STATUS_SETTLED if distance <= settle_tol_v else kernels.STATUS_TIME_LIMIT
                break
        elif distance <= settle_tol_v and save_idx == n_save:
            status = kernels.STATUS_SETTLED
            break
        if t >= t_max:
            status = kernels.STATUS_TIME_LIMIT
            break
        if steps >= max_steps:
            status = kernels.STATUS_STEP_LIMIT
            break
        h = min(h, h_max)
        if not final_approach and distance < kernels.FINAL_APPROACH * settle_tol_v:
            final_approach = True
            term.final_approach(grids)
            tightening = 0.1 * settle_tol_v / atol_v
            if tightening < 1.0:
                h *= tightening ** err_exponent
        if h_previous > 0.0 and h_resume == 0.0:
            rate_scale = h / h_previous
            u_predicted[:n_hidden] = u_start[:n_hidden] + (u_start[:n_hidden] - u_previous[:n_hidden]) * rate_scale
            crossing = kernels._first_costly_crossing(u_start, u_predicted, n_hidden, relu, h * inv_tau, v_r,
                                                      rtol, atol_v, n_state)
            if kernels.KINK_CUT_LOW < crossing < kernels.KINK_CUT_HIGH:
                kink_steps += 1
                h_resume = h
                h = h * crossing
        clipped = False
        if t + h >= horizon:
            h = horizon - t
            clipped = True
        for s in range(n_stages):
            if s == 0:
                if first_stage_ready:
                    continue
                y_tmp[:] = y
            else:
                kernels._combine(y, stages, rk_a[s], s, h, y_tmp)
            u_buffer = u_start if s == 0 else (u_end if s == n_stages - 1 else u_scratch)
            stage_distance = term.rhs(y_tmp, stages[s], u_buffer, grids, x_rows, target)
            evaluations += 1
            if s == 0:
                first_stage_ready = True
                distance = stage_distance
        v_error_cap = 0.1 * settle_tol_v if final_approach else np.inf
        kernels._combine(y, stages, rk_b, n_stages, h, y_new)
        kernels._combine(zero_state, stages, rk_e, n_stages, h, err_vec)
        if not np.all(np.isfinite(y_new)):
            status = kernels.STATUS_FAILED
            break
        scale = rtol * np.maximum(np.abs(y), np.abs(y_new))
        scale[n_v:] += 1e-300
        scale[accumulators] += energy_floor_j
        scale[tolerance_states] = np.minimum(scale[tolerance_states] + atol_v, v_error_cap)
        err_norm = float(np.sqrt(np.mean((err_vec / scale) ** 2)))
        if err_norm <= 1.0:
            q = np.empty((n_dense, n_state))
            for k in range(n_dense):
                kernels._combine(zero_state, stages, rk_dense[:, k], n_stages, 1.0, q[k])
            qs_list.append(q)
            t_old = t
            t = horizon if clipped else t + h
            distance = stage_distance
            last_change = float(np.abs(y_new[:n_v] - y[:n_v]).max())
            y[:] = y_new
            stages[0] = stages[n_stages - 1]
            ts_list.append(t)
            ys_list.append(y.copy())
            u_previous[:n_hidden] = u_start[:n_hidden]
            u_start[:n_hidden] = u_end[:n_hidden]
            h_previous = t - t_old
            steps += 1
            while save_idx < n_save and save_ts[save_idx] <= t:
                theta = (save_ts[save_idx] - t_old) / (t - t_old)
                out_saved[save_idx] = ys_list[-2] + (t - t_old) * sum(q[k] * theta ** (k + 1) for k in range(n_dense))
                save_idx += 1
            factor = 5.0 if err_norm == 0.0 else min(5.0, max(0.2, 0.9 * err_norm ** (-err_exponent)))
            h = max(h * factor, h_resume)
            h_resume = 0.0
        else:
            rejected += 1
            crossing = kernels._first_crossing(u_start, u_end, n_hidden, relu)
            if kernels.KINK_CUT_LOW < crossing < kernels.KINK_CUT_HIGH:
                kink_steps += 1
                h_resume = max(h_resume, h)
                h = h * crossing
            else:
                h = h * max(0.2, 0.9 * err_norm ** (-err_exponent))
        if h < 1e-9 * h0:
            status = kernels.STATUS_FAILED
            break

    out_final[:] = y
    ts = np.asarray(ts_list)
    ys = np.asarray(ys_list)
    qs = np.asarray(qs_list) if qs_list else np.zeros((1, n_dense, n_state))
    if qs.shape[0] < ts.size:
        qs = np.concatenate([qs, np.zeros((ts.size - qs.shape[0], n_dense, n_state))])
    for r in range(thresholds_v.shape[0]):
        stats[kernels.S_T_SETTLE + r] = kernels.settling_time(ts, ys, qs, ts.size, y, n_v, thresholds_v[r],
                                                              out_at_settle[r])
    stats[kernels.S_STATUS] = status
    stats[kernels.S_T_FINAL] = t
    stats[kernels.S_STEPS] = steps
    stats[kernels.S_REJECTED] = rejected
    stats[kernels.S_DISTANCE] = distance
    stats[kernels.S_EVALUATIONS] = evaluations
    stats[kernels.S_KINK_STEPS] = kink_steps
    stats[kernels.S_STEP_CHANGE] = last_change
