"""Settle a network circuit: integrate from a given state until it is at equilibrium.

The plain-Python side of the solver: it validates inputs, packs them for the kernels, and turns
the kernels' raw output into a :class:`SettleResult` with settling times and an energy
breakdown in SI units.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from ..circuit.network import NetworkCircuit
from ..digital.dp import DyadStates
from ..names import SETTLE_ENERGY_TERMS as ENERGY_TERMS
from ..names import WIRE_TERM
from . import kernels
from .solvers import STOP_RESIDUAL_FRACTION, Dopri5, SaveAt, SettleCriteria, StepController
from .stability import max_stable_step_tau
from .term import CircuitTerm
from .amplified import AmplifiedTerm
from ..errors import NotSettledError  # noqa: F401  (raised here, defined with the other user-facing errors)
from .wired import GRID_TOLERANCE_FRACTION, WiredTerm, integrate_wired
from . import wired as wired_term


@dataclass
class EnergyBreakdown:
    """Energy of a settle (J, one value per example) split by where it goes (DESIGN §4).

    ``crossbar``: dissipation in the crossbar devices; ``neuron``: dissipation in the
    compartment drive resistors; ``amplifier_static``: bias power of every amplifier for the
    duration; ``capacitor``: change of the energy stored on the compartment capacitors.
    ``delivered`` is what the signal sources (line drivers and compartment amplifiers) supplied;
    by conservation it equals crossbar + neuron + capacitor.
    """

    crossbar: np.ndarray
    neuron: np.ndarray
    amplifier_static: np.ndarray
    capacitor: np.ndarray
    delivered: np.ndarray
    # dissipation in the crossbar wires (segments and terminal links); None with ideal wires
    wire: np.ndarray | None = None

    @property
    def total(self) -> np.ndarray:
        total = self.crossbar + self.neuron + self.amplifier_static + self.capacitor
        return total if self.wire is None else total + self.wire

    @property
    def terms(self) -> tuple[str, ...]:
        """Names of the terms this breakdown has (``wire`` only when the wires have resistance)."""
        return ENERGY_TERMS if self.wire is None else ENERGY_TERMS + (WIRE_TERM,)

    def as_dict(self, index: int | None = None) -> dict[str, float]:
        pick = (lambda a: float(np.sum(a))) if index is None else (lambda a: float(a[index]))
        return {name: pick(getattr(self, name)) for name in self.terms}


@dataclass
class SettleResult:
    """Outcome of a batched settle; voltages in V, times in s, energies in J."""

    circuit: NetworkCircuit
    v_initial_v: np.ndarray
    v_final_v: np.ndarray
    status: np.ndarray
    settling_time_s: np.ndarray
    settling_time_1pct_s: np.ndarray
    t_final_s: np.ndarray
    distance_v: np.ndarray
    n_steps: np.ndarray
    n_rejected: np.ndarray
    n_evaluations: np.ndarray
    energy: EnergyBreakdown
    energy_to_end: EnergyBreakdown
    saved_ts_s: np.ndarray
    saved_states: np.ndarray
    # steps ended at a clip crossing: predicted ahead, or after a failed attempt (which
    # n_rejected counts)
    n_kink_steps: np.ndarray | None = None
    # largest compartment-voltage change over the last accepted step (V)
    last_step_change_v: np.ndarray | None = None
    t_max_s: float = float("nan")
    max_steps: int = 0
    equilibrium_tolerance_v: float = float("nan")
    # with resistive wires: per crossbar, the deviation of the sensed forward and backward
    # signals from the ideal-wire ones at the final state (analogdp.circuit.wires.signal_deviation),
    # each a (batch,) array under forward_max_rel, forward_rms_rel, backward_max_rel, backward_rms_rel
    ir_drop: list[dict[str, np.ndarray]] | None = None
    # with resistive wires: line-relaxation sweeps (summed over crossbars and tiles) and grid
    # solves per example, the cost of the settle
    grid_sweeps: np.ndarray | None = None
    grid_solves: np.ndarray | None = None
    # with finite amplifiers: every dynamic stage's output at the final state (V, (batch, stages),
    # in the order of analogdp.circuit.amplifiers.amplifier_stages), and each stage's small-signal
    # time constant (s; 0 with infinite GBW)
    amplifier_outputs_v: np.ndarray | None = None
    amplifier_time_constants_s: np.ndarray | None = None

    @property
    def settled(self) -> np.ndarray:
        return self.status == kernels.STATUS_SETTLED

    @property
    def hit_step_limit(self) -> np.ndarray:
        """True where the integrator stopped at ``SettleCriteria.max_steps``: its state is
        wherever the integration got to, not an answer of the circuit."""
        return self.status == kernels.STATUS_STEP_LIMIT

    @property
    def hit_time_limit(self) -> np.ndarray:
        return self.status == kernels.STATUS_TIME_LIMIT

    @property
    def rejection_rate(self) -> np.ndarray:
        """Rejected step attempts as a fraction of all attempts."""
        attempts = self.n_steps + self.n_rejected
        return np.where(attempts > 0, self.n_rejected / np.maximum(attempts, 1), 0.0)

    def not_settled_reason(self, index: int) -> str:
        """What example ``index`` did not meet ('' if it settled), in one line."""
        status = int(self.status[index])
        if status == kernels.STATUS_SETTLED:
            return ""
        at = (f"after {self.t_final_s[index]:.3g} s and {int(self.n_steps[index])} steps a compartment "
              f"was still {self.distance_v[index]:.3g} V from its amplifier's target "
              f"(equilibrium tolerance {self.equilibrium_tolerance_v:.3g} V)")
        if status == kernels.STATUS_STEP_LIMIT:
            return f"hit the step limit ({self.max_steps} steps): {at}"
        if status == kernels.STATUS_TIME_LIMIT:
            if self.saved_ts_s.size == 0 and self.t_final_s[index] >= self.t_max_s * (1 - 1e-12):
                return f"hit the time limit ({self.t_max_s:.3g} s): {at}"
            return f"window too short: {at}"
        return f"integration failed (non-finite state or vanishing step) {at}"

    @property
    def not_settled_reasons(self) -> list[str]:
        return [self.not_settled_reason(i) for i in range(self.status.size)]

    @property
    def saved_voltages_v(self) -> np.ndarray:
        """(batch, n_saved, n_compartments) compartment voltages at ``saved_ts_s``."""
        return self.saved_states[:, :, : self.circuit.n_compartments]

    def compartments(self, layer: int, voltages: np.ndarray | None = None) -> np.ndarray:
        """Activities (V / V_r) of ``layer`` (1..L) as (batch, n_neurons, compartments)."""
        c = self.circuit
        v = self.v_final_v if voltages is None else voltages
        start = c.compartment_offset(layer)
        stop = start + c.layer_sizes[layer] * c.compartments_per_neuron
        return v[:, start:stop].reshape(v.shape[0], c.layer_sizes[layer], c.compartments_per_neuron) / c.neuron.v_read_v

    def dyad_states(self, x: np.ndarray) -> DyadStates:
        """The settled dyads in activity units, for comparison with the digital DP."""
        c = self.circuit
        plus, minus = [np.asarray(x)], [np.asarray(x)]
        for layer in range(1, c.n_layers + 1):
            comp = self.compartments(layer)
            plus.append(comp[:, :, 0])
            minus.append(comp[:, :, -1])
        return DyadStates(plus, minus, c.neuron_kind.row_weights[0])


def _as_batch(name: str, value, width: int) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"{name} must have shape (batch, {width}), got {np.shape(value)}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return np.ascontiguousarray(array)


def _initial_state(v0, batch: int, term: CircuitTerm) -> np.ndarray:
    """The integrator's start: compartment voltages ``v0`` (zero without), accumulators at 0.

    A subnormal starting voltage (below 2.2e-308 V) starts at exactly 0. Such values come from
    compartments decaying towards a clipped target of 0 over many settles that each start where
    the last one ended (e^-25 per settle), and every floating-point operation on a subnormal
    costs ~100× (processors handle them in microcode): on warm-started 784-256-10 settles with
    rram-gong2018 devices, a few of them doubled the time per right-hand-side evaluation. Only
    the subnormals are flushed, so every state that was normal stays bit for bit the same."""
    y0 = np.zeros((batch, term.n_state))
    if v0 is not None:
        voltages = _as_batch("v0", v0, term.n_voltages)
        y0[:, : term.n_voltages] = np.where(np.abs(voltages) < np.finfo(np.float64).tiny, 0.0, voltages)
    return y0


def settle(circuit: NetworkCircuit, x, y=None, *, v0=None, solver=Dopri5(),
           controller: StepController = StepController(), criteria: SettleCriteria = SettleCriteria(),
           saveat: SaveAt = SaveAt(), t_end_s: float | None = None,
           allow_unsettled: bool = False, threads: int | None = None) -> SettleResult:
    """Integrate ``circuit`` driven by inputs ``x`` (activities, (batch, n_0)) and nudged
    towards targets ``y`` ((batch, n_L)); ``y=None`` settles without nudge (inference).

    ``v0`` is the starting state (V, (batch, n_compartments)); default all zero (reset).
    Without ``t_end_s`` the settle stops at equilibrium (``criteria``); with it, it runs a fixed
    window, settling is measured against the state at ``t_end_s``, and the window counts as
    settled when that state is within 1 % of the settling band of equilibrium (so that the
    settling time it yields is meaningful). A settle that does not
    reach equilibrium raises :class:`NotSettledError` unless ``allow_unsettled``.
    Examples settle independently; ``threads`` (default: one per CPU) share the batch.
    """
    if y is None:
        circuit = _cached(circuit, "_solver_inference_circuit", lambda: replace(circuit, beta=0.0))
    term = _cached(circuit, "_solver_term", lambda: CircuitTerm(circuit))
    x = _as_batch("x", x, circuit.layer_sizes[0])
    batch = x.shape[0]
    n_out = circuit.layer_sizes[-1]
    targets = np.zeros((batch, n_out)) if y is None else _as_batch("y", y, n_out)
    if targets.shape[0] != batch:
        raise ValueError(f"x has {batch} examples but y has {targets.shape[0]}")
    v_r = circuit.neuron.v_read_v
    tau = circuit.neuron.tau_s
    y0 = _initial_state(v0, batch, term)
    if t_end_s is not None and not (np.isfinite(t_end_s) and t_end_s > 0):
        raise ValueError(f"t_end_s must be a positive finite time, got {t_end_s!r}")
    save_ts = saveat.times()
    t_max = criteria.t_max_s if criteria.t_max_s is not None else 1000.0 * tau
    if t_end_s is not None:
        t_max = max(t_max, t_end_s)
    if save_ts.size and save_ts[-1] > t_max:
        raise ValueError(f"SaveAt time {save_ts[-1]:g} s lies beyond the time limit {t_max:g} s")

    tab = solver.tableau
    stable_step_tau = _cached(circuit, f"_solver_stable_step_{solver.real_stability!r}",
                              lambda: max_stable_step_tau(circuit, solver.real_stability))
    max_step_tau = min(controller.max_step_tau, stable_step_tau)
    saved = np.zeros((batch, save_ts.size, term.n_state))
    final = np.empty((batch, term.n_state))
    at_settle = np.empty((batch, 2, term.n_state))
    stats = np.empty((batch, kernels.N_STATS))
    thresholds = np.array([criteria.epsilon_fraction, criteria.coarse_fraction]) * v_r
    equilibrium_v = criteria.equilibrium_fraction * v_r * STOP_RESIDUAL_FRACTION
    if t_end_s is not None:
        equilibrium_v = max(equilibrium_v, 1e-2 * thresholds[0])
    if not circuit.amplifier.ideal:
        return _settle_amplified(circuit, x, targets, v0, solver, controller, criteria, save_ts, t_end_s, t_max,
                                 max_step_tau, thresholds, equilibrium_v, allow_unsettled)
    if not circuit.wires.ideal:
        return _settle_wired(circuit, x, targets, v0, solver, controller, criteria, save_ts, t_end_s, t_max,
                             max_step_tau, thresholds, equilibrium_v, allow_unsettled)
    a0, rows_power = term.input_drive(x)
    step_over = controller.kinks == "step-over" or (
        controller.kinks == "auto" and save_ts.size == 0 and t_end_s is None
        and circuit.compartments_per_neuron == 2)
    args = (float(t_end_s or 0.0), float(t_max), save_ts, controller.rtol,
            controller.atol_fraction * v_r, equilibrium_v, thresholds,
            controller.initial_step_tau * tau, max_step_tau * tau, criteria.max_steps,
            tab.a, tab.b, tab.b_error, tab.dense, 1.0 / tab.error_order, step_over,
            *term.network_arrays())

    def run(examples):
        # one kernel call per thread: its workspace and step history serve every example of the slice
        kernels.integrate_batch(np.asarray(examples, dtype=np.int64), y0, *args, a0, rows_power, targets,
                                saved, final, at_settle, stats)

    _run_in_threads(run, batch, threads)

    result = _collect(circuit, term, y0, final, at_settle, stats, save_ts, saved, equilibrium_v,
                      t_max, criteria.max_steps)
    return _checked(result, allow_unsettled)


def _settle_wired(circuit, x, targets, v0, solver, controller, criteria, save_ts, t_end_s, t_max, max_step_tau,
                  thresholds, equilibrium_v, allow_unsettled) -> SettleResult:
    """:func:`settle` of a circuit with resistive wires (:mod:`analogdp.solver.wired`)."""
    term = _cached(circuit, "_solver_wired_term", lambda: WiredTerm(circuit))
    tau = circuit.neuron.tau_s
    result = _settle_term(circuit, term, x, targets, v0, solver, controller, criteria, save_ts, t_end_s, t_max,
                          controller.initial_step_tau * tau, max_step_tau * tau, thresholds, equilibrium_v)
    return _checked(result, allow_unsettled)


def _settle_amplified(circuit, x, targets, v0, solver, controller, criteria, save_ts, t_end_s, t_max,
                      max_step_tau, thresholds, equilibrium_v, allow_unsettled) -> SettleResult:
    """:func:`settle` of a circuit with finite amplifiers (:mod:`analogdp.solver.amplified`); the
    amplifier poles start at 0 V, as the netlist's (``uic``)."""
    term = _cached(circuit, "_solver_amplified_term", lambda: AmplifiedTerm(circuit))
    tau = circuit.neuron.tau_s
    # an explicit step must resolve the fastest amplifier pole (stability of the RK method on
    # dp/dt = −p/τ_amp) as well as the neurons
    tau_amp = term.amplifier_time_constants_s()
    fastest = tau_amp[tau_amp > 0].min() if np.any(tau_amp > 0) else np.inf
    h_max = min(max_step_tau * tau, solver.real_stability * fastest)
    if criteria.t_max_s is None:  # the default limit, 1000 τ, counted in the slowest time constant
        t_max = max(t_max, 1000.0 * float(tau_amp.max(initial=0.0)))
    result = _settle_term(circuit, term, x, targets, v0, solver, controller, criteria, save_ts, t_end_s, t_max,
                          min(controller.initial_step_tau * tau, h_max), h_max, thresholds, equilibrium_v)
    result.amplifier_time_constants_s = tau_amp
    return _checked(result, allow_unsettled)


def _settle_term(circuit, term, x, targets, v0, solver, controller, criteria, save_ts, t_end_s, t_max, h0, h_max,
                 thresholds, equilibrium_v) -> SettleResult:
    """Each example integrated by the plain-Python loop (:func:`integrate_wired`) with ``term``'s
    right-hand side; the grids' IR-drop reports and costs with resistive wires, every amplifier
    stage's final output with finite amplifiers."""
    batch = x.shape[0]
    atol_v = controller.atol_fraction * circuit.neuron.v_read_v
    y0 = _initial_state(v0, batch, term)
    target_tol_v = GRID_TOLERANCE_FRACTION * min(atol_v, equilibrium_v)
    transient_tol_v = GRID_TOLERANCE_FRACTION * atol_v
    saved = np.zeros((batch, save_ts.size, term.n_state))
    final = np.empty((batch, term.n_state))
    at_settle = np.empty((batch, 2, term.n_state))
    stats = np.empty((batch, kernels.N_STATS))
    amplified = isinstance(term, AmplifiedTerm)
    outputs = np.empty((batch, term.n_stages)) if amplified else None
    reports = []
    sweeps = np.zeros(batch, dtype=np.int64)
    solves = np.zeros(batch, dtype=np.int64)
    for e in range(batch):
        grids = term.grids(target_tol_v, transient_tol_v)
        x_rows = term.input_rows(x[e])
        integrate_wired(term, grids, x_rows, targets[e], y0[e], float(t_end_s or 0.0), float(t_max), save_ts,
                        controller.rtol, atol_v, equilibrium_v, thresholds, h0, h_max, criteria.max_steps,
                        solver.tableau, saved[e], final[e], at_settle[e], stats[e])
        if amplified:
            outputs[e] = term.outputs_v(final[e], grids, x_rows, targets[e])
        if grids:
            sweeps[e] = sum(grid.total_sweeps for grid in grids)
            solves[e] = sum(grid.total_solves for grid in grids)
            reports.append(term.ir_drop(final[e, : term.n_voltages], grids, x_rows))
    result = _collect(circuit, term, y0, final, at_settle, stats, save_ts, saved, equilibrium_v, t_max,
                      criteria.max_steps)
    if reports:
        result.ir_drop = [{key: np.array([r[k][key] for r in reports]) for key in reports[0][k]}
                          for k in range(len(circuit.crossbars))]
        result.grid_sweeps, result.grid_solves = sweeps, solves
    result.amplifier_outputs_v = outputs
    return result


def _checked(result: SettleResult, allow_unsettled: bool) -> SettleResult:
    batch = result.status.size
    if not allow_unsettled and not np.all(result.settled):
        bad = np.flatnonzero(~result.settled)
        raise NotSettledError(
            f"{bad.size} of {batch} examples did not settle; first: {result.not_settled_reason(int(bad[0]))}. "
            "The fixed point may be unstable (e.g. variant 'dp' with alpha != 0.5) or the limit too short.")
    return result


def _cached(circuit: NetworkCircuit, key: str, make):
    """What a settle derives from a circuit, kept with it: circuits are immutable, and packing
    one costs more than a small settle (learning and sweeps settle the same circuit often)."""
    value = circuit.__dict__.get(key)
    if value is None:
        value = make()
        object.__setattr__(circuit, key, value)
    return value


def _run_in_threads(run, batch: int, threads: int | None) -> None:
    """The kernels release the GIL, so plain threads settle slices of a batch in parallel."""
    threads = min(batch, threads or os.cpu_count() or 1)
    if threads <= 1:
        run(range(batch))
        return
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, [range(i, batch, threads) for i in range(threads)]))


def _energy(circuit: NetworkCircuit, term, y0, state, duration_s) -> EnergyBreakdown:
    n_v = term.n_voltages
    c_m = circuit.neuron.c_m_f
    capacitor = 0.5 * c_m * (np.sum(state[:, :n_v] ** 2, axis=1) - np.sum(y0[:, :n_v] ** 2, axis=1))
    n_amplifiers = _cached(circuit, "_solver_n_amplifiers", lambda: circuit.n_amplifiers)
    static = circuit.neuron.p_amp_static_w * n_amplifiers * duration_s
    if isinstance(term, WiredTerm) or (isinstance(term, AmplifiedTerm) and term.wired is not None):
        acc = state[:, n_v:]
        return EnergyBreakdown(crossbar=acc[:, wired_term.A_DEVICES].copy(),
                               neuron=acc[:, wired_term.A_NEURON_RESISTORS].copy(),
                               amplifier_static=static, capacitor=capacitor,
                               delivered=acc[:, wired_term.A_NEURON_SOURCES] + acc[:, wired_term.A_LINE_DRIVERS],
                               wire=acc[:, wired_term.A_WIRES].copy())
    neuron_sources, neuron_resistors, crossbar = (state[:, n_v + i] for i in range(3))
    return EnergyBreakdown(crossbar=crossbar.copy(), neuron=neuron_resistors.copy(),
                           amplifier_static=static, capacitor=capacitor,
                           delivered=neuron_sources + crossbar)


def _collect(circuit, term, y0, final, at_settle, stats, save_ts, saved, equilibrium_v,
             t_max_s, max_steps) -> SettleResult:
    n_v = term.n_voltages
    t_settle = stats[:, kernels.S_T_SETTLE]
    t_final = stats[:, kernels.S_T_FINAL]
    return SettleResult(
        circuit=circuit,
        v_initial_v=y0[:, :n_v].copy(),
        v_final_v=final[:, :n_v].copy(),
        status=stats[:, kernels.S_STATUS].astype(int),
        settling_time_s=t_settle,
        settling_time_1pct_s=stats[:, kernels.S_T_SETTLE_COARSE],
        t_final_s=t_final,
        distance_v=stats[:, kernels.S_DISTANCE],
        n_steps=stats[:, kernels.S_STEPS].astype(int),
        n_rejected=stats[:, kernels.S_REJECTED].astype(int),
        n_evaluations=stats[:, kernels.S_EVALUATIONS].astype(int),
        energy=_energy(circuit, term, y0, at_settle[:, 0], t_settle),
        energy_to_end=_energy(circuit, term, y0, final, t_final),
        saved_ts_s=save_ts,
        saved_states=saved,
        n_kink_steps=stats[:, kernels.S_KINK_STEPS].astype(int),
        last_step_change_v=stats[:, kernels.S_STEP_CHANGE],
        t_max_s=float(t_max_s), max_steps=int(max_steps), equilibrium_tolerance_v=float(equilibrium_v),
    )
