"""The equilibrium engine: a circuit's settled compartment state without integrating the ODE
(DESIGN §9).

At equilibrium every compartment sits at its amplifier's target, dv/dt = 0, so the settled state
solves the circuit's algebraic equations. Two ways to solve them:

- **closed form** (:func:`closed_form_state`), where the circuit is ideal: the compartments then
  hold the digital fixed point of the weights the conductances realise, the DP fixed point
  (:func:`analogdp.digital.dp.dp_fixed_point`) for dyads and EP's fixed point
  (:func:`analogdp.digital.ep.ep_nudged_fixed_point`, relaxed from the state the phase starts
  in) for single-compartment neurons;
- **steady-state solve** (:func:`steady_state`) of the circuit's own right-hand side, the one the
  ODE solver integrates (:class:`analogdp.solver.CircuitTerm`): a damped fixed-point iteration
  v ← v + ω (V_target(v) − v), ω halved whenever the residual stops shrinking. It applies to any
  circuit the description can express; it raises :class:`EquilibriumNotConverged` rather than
  return a state that is not an equilibrium.

:class:`EquilibriumSettler` has the call signature of :func:`analogdp.solver.settle` and returns a
:class:`~analogdp.solver.SettleResult`, so that the learning algorithms take either engine
(their ``settler``). Settling time and energy do not exist without a transient: they are NaN,
except on the examples where ``check_with_ode`` is set, which are also integrated by the ODE
from the same start (their time and energy are reported as *sampled*) and whose ODE state is
compared with the equilibrium state (``checks``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numba
import numpy as np

from .circuit import NetworkCircuit
from .circuit.amplifiers import AmplifierParams
from .digital.dp import DPConfig, DyadStates, _bottom_up, _update_layer, dp_sweeps, feedforward

SETTLE_METHODS = ("ode", "equilibrium")
EQUILIBRIUM_METHODS = ("auto", "closed-form", "steady-state")
# The equilibrium is solved to this fraction of V_r (the ODE stops at 1e-9 of V_r from its target).
STEADY_STATE_TOL_FRACTION = 1e-12
# The engine's state stands for the ODE's when the two agree within this fraction of V_r; a sampled
# settle beyond it is counted as a disagreement (several stable equilibria, DESIGN §9).
EQUILIBRIUM_AGREEMENT_FRACTION = 1e-6
STEADY_STATE_MAX_ITERATIONS = 20_000
# The damping ω is halved after this many iterations without a 10 % drop of the residual, and the
# solve gives up below MIN_DAMPING.
STALL_ITERATIONS = 50
MIN_DAMPING = 1.0 / 1024
# The closed-form sweeps stop when the DP / EP equations hold to this (activity units).
CLOSED_FORM_TOL = 1e-13


class EquilibriumNotConverged(RuntimeError):
    """The steady-state solve did not reach the circuit's equilibrium."""


# ------------------------------------------------------------------------------------------
# The DP fixed point, cheaply


def dp_equilibrium(weights, biases, x, y, config: DPConfig, *, tol: float = CLOSED_FORM_TOL,
                   max_sweeps: int = 10_000) -> tuple[DyadStates, np.ndarray]:
    """The DP fixed point (DESIGN §2.1) and the feed-forward prediction, (states, output).

    The first sweep of :func:`analogdp.digital.dp.dp_sweeps` (feed-forward pass, nudge, top-down),
    then bottom-up/top-down sweeps until no compartment moves by more than ``tol``. The clamped
    input's drive of layer 1 does not change between sweeps and is computed once, so a sweep
    costs only the products of the upper layers (the widest product, the input crossbar's, is
    done once per example). Raises RuntimeError when the sweeps do not converge."""
    states = dp_sweeps(weights, biases, x, y, config, sweeps=1)
    n_layers = len(weights)
    coefficients = _coefficients(config)
    c_plus, c_minus = coefficients
    output = c_minus * states.s_plus[-1] + c_plus * states.s_minus[-1]  # a_L of the forward pass
    drive = _bottom_up(weights, biases, states, 1)
    for sweep in range(max_sweeps):
        before_plus, before_minus = list(states.s_plus), list(states.s_minus)
        for k in range(1, n_layers + 1):
            bottom_up = drive if k == 1 else _bottom_up(weights, biases, states, k)
            _update_layer(weights, biases, states, y, config, k, bottom_up, coefficients)
        for k in range(n_layers - 1, 0, -1):
            bottom_up = drive if k == 1 else _bottom_up(weights, biases, states, k)
            _update_layer(weights, biases, states, y, config, k, bottom_up, coefficients)
        change = max(max(float(np.max(np.abs(states.s_plus[k] - before_plus[k]))),
                         float(np.max(np.abs(states.s_minus[k] - before_minus[k]))))
                     for k in range(1, n_layers + 1))
        if change <= tol:
            return states, output
    raise RuntimeError(f"DP sweeps did not converge to {tol:g} within {max_sweeps} sweeps (last change "
                       f"{change:.3g}); the fixed point may be unstable for variant={config.variant}, "
                       f"alpha={config.alpha}")


def _coefficients(config: DPConfig) -> tuple[float, float]:
    from .digital.dp import feedback_coefficients

    return feedback_coefficients(config.variant, config.alpha)


# ------------------------------------------------------------------------------------------
# Which solve applies


def is_ideal(circuit: NetworkCircuit) -> bool:
    """Whether the circuit's equations are those of the digital reference on the realised weights:
    ideal wires and amplifiers. (Device read and write noise do not change the equations: a settle
    runs on the conductances as read, and the closed form takes the weights those realise.)
    Wire resistance or finite amplifiers send the circuit to :func:`steady_state`, which solves
    the right-hand side the ODE integrates."""
    wires = getattr(circuit, "wires", None)
    amplifier = getattr(circuit, "amplifier", None)
    return (wires is None or wires.ideal) and (amplifier is None or amplifier.ideal)


def _dyad_config(circuit: NetworkCircuit) -> DPConfig:
    kind = circuit.neuron_kind
    alpha = kind.row_weights[0]
    c_plus = kind.feedback_gains[0]
    variant = "dp" if math.isclose(c_plus, alpha) else "dpT"
    return DPConfig(variant=variant, alpha=alpha, beta=abs(circuit.beta) or 1.0,
                    activation=circuit.activation, loss=circuit.loss)


def closed_form_state(circuit: NetworkCircuit, x: np.ndarray, y: np.ndarray | None,
                      v0_v: np.ndarray | None = None) -> np.ndarray:
    """Settled compartment voltages (batch, n_compartments) of an ideal circuit, in closed form.

    Dyads: the DP fixed point (no nudge, ``y`` None or β = 0: the feed-forward pass). EP
    neurons: the fixed point of E + βC relaxed from ``v0_v`` (zero when None), as the circuit
    relaxes from the state the phase starts in."""
    weights, biases = circuit.effective_weights()
    m = circuit.compartments_per_neuron
    v_r = circuit.neuron.v_read_v
    batch = x.shape[0]
    out = np.empty((batch, circuit.n_compartments))
    if m == 2:
        if y is None or circuit.beta == 0.0:
            layers = feedforward(weights, biases, x, circuit.activation)
            plus = minus = layers
        else:
            states, _ = dp_equilibrium(weights, biases, x, y, _dyad_config(circuit))
            plus, minus = states.s_plus, states.s_minus
        for layer in range(1, circuit.n_layers + 1):
            start = circuit.compartment_offset(layer)
            block = out[:, start:start + 2 * circuit.layer_sizes[layer]].reshape(batch, -1, 2)
            block[:, :, 0] = plus[layer] * v_r
            block[:, :, 1] = minus[layer] * v_r
        return out
    from .digital.ep import EPConfig, ep_nudged_fixed_point
    from .ep_circuit import layer_states

    start_states = layer_states(circuit, x, np.zeros_like(out) if v0_v is None else v0_v)
    biases = [np.zeros(w.shape[0]) if b is None else b for w, b in zip(weights, biases)]
    config = EPConfig(activation=circuit.activation, loss=circuit.loss, beta=0.5)
    targets = np.zeros((batch, circuit.layer_sizes[-1])) if y is None else y
    beta = 0.0 if y is None else float(circuit.beta)
    states = ep_nudged_fixed_point(weights, biases, x, targets, config, beta,
                                   start_states=start_states, tol=CLOSED_FORM_TOL)
    for layer in range(1, circuit.n_layers + 1):
        start = circuit.compartment_offset(layer)
        out[:, start:start + circuit.layer_sizes[layer]] = states[layer] * v_r
    return out


# ------------------------------------------------------------------------------------------
# Steady state of the circuit's own equations


def _dc_view(amplifier):
    """The amplifier model at DC: no GBW and no slew limit, in every per-stage amplifier it holds
    too (a stage kind with its own amplifier keeps a pole state otherwise, which the steady-state
    iteration would read as the stage's output)."""
    nested = {f.name: _dc_view(getattr(amplifier, f.name)) for f in fields(amplifier)
              if isinstance(getattr(amplifier, f.name), AmplifierParams)}
    return replace(amplifier, gbw_hz=None, slew_v_per_s=None, **nested)


def steady_state(circuit: NetworkCircuit, x: np.ndarray, y: np.ndarray | None,
                 v0_v: np.ndarray | None = None, *, tol_fraction: float = STEADY_STATE_TOL_FRACTION,
                 max_iterations: int = STEADY_STATE_MAX_ITERATIONS) -> np.ndarray:
    """Settled compartment voltages (batch, n_compartments) solving V_target(v) = v, where
    V_target is the amplifier targets of the circuit's right-hand side (the ODE's dv/dt·τ + v).

    Damped fixed-point iteration from ``v0_v`` (reset when None); ω starts at 1 and halves
    whenever the residual has not shrunk for a few iterations. Raises
    :class:`EquilibriumNotConverged` when the residual max |V_target − v| is still above
    ``tol_fraction``·V_r after ``max_iterations``, or is not finite."""
    from .solver import CircuitTerm
    from .solver import kernels
    from .solver.amplified import AmplifiedTerm
    from .solver.wired import WiredTerm

    if y is None:
        circuit = replace(circuit, beta=0.0)
    term = CircuitTerm(circuit)
    batch = x.shape[0]
    targets = np.zeros((batch, circuit.layer_sizes[-1])) if y is None else np.asarray(y, dtype=np.float64)
    a0, rows_power = term.input_drive(x)
    network = term.network_arrays()
    tau = circuit.neuron.tau_s
    v_r = circuit.neuron.v_read_v
    tol_v = tol_fraction * v_r
    n_v = term.n_voltages
    # the kernel's scratch space, sized as its integrator sizes it
    work = np.empty(4 * circuit.n_neurons + circuit.n_layers + 1 + circuit.layer_sizes[-1])
    amplifier_inputs = np.zeros(n_v)
    result = np.zeros((batch, n_v))
    wired = None if circuit.wires.ideal else WiredTerm(circuit)
    # finite amplifiers: at DC each stage's output is its closed-loop value (gain error, offset
    # times noise gain, rails); GBW and slew rate shape only the way there
    dc_amplifier = _dc_view(circuit.amplifier)
    if not dc_amplifier.ideal:
        dc_circuit = replace(circuit, amplifier=dc_amplifier)  # held here: the term holds it weakly
        wired = AmplifiedTerm(dc_circuit)
    for e in range(batch):
        state = np.zeros(term.n_state if wired is None else wired.n_state)
        if v0_v is not None:
            state[:n_v] = v0_v[e]
        derivative = np.empty(state.size)
        if wired is not None:
            # resistive wires: the targets come from the crossbar grids (DESIGN §8.1), solved to the
            # equilibrium tolerance (none with finite amplifiers)
            grids = wired.grids(1e-2 * tol_v, 1e-2 * tol_v)
            x_rows = wired.input_rows(x[e])
        omega, best, stalled = 1.0, math.inf, 0
        for iteration in range(max_iterations):
            if wired is None:
                kernels.circuit_rhs(state, derivative, amplifier_inputs, *network, a0[e], rows_power[e],
                                    targets[e], work)
            else:
                wired.rhs(state, derivative, amplifier_inputs, grids, x_rows, targets[e])
            step = derivative[:n_v] * tau  # V_target − v
            residual = float(np.max(np.abs(step))) if n_v else 0.0
            if not math.isfinite(residual):
                raise EquilibriumNotConverged(
                    f"steady-state solve diverged (non-finite residual) at iteration {iteration}")
            if residual <= tol_v:
                break
            # Halve the step when the residual grows, or has not shrunk by 10 % for a while
            # (an oscillation between layers, which a full Jacobi step can sustain).
            if residual < 0.9 * best:
                best, stalled = residual, 0
            else:
                stalled += 1
                if residual > 2.0 * best or stalled > STALL_ITERATIONS:
                    omega, stalled, best = 0.5 * omega, 0, residual
                    if omega < MIN_DAMPING:
                        raise EquilibriumNotConverged(
                            f"steady-state solve did not converge: the residual stalls at {residual:.3g} V even "
                            f"with damping {omega:g} (iteration {iteration}); the equilibrium may be unstable")
            state[:n_v] += omega * step
        else:
            raise EquilibriumNotConverged(
                f"steady-state solve did not converge: after {max_iterations} iterations a "
                f"compartment is still {residual:.3g} V from its target (tolerance {tol_v:.3g} V, "
                f"damping {omega:g}); the equilibrium may be unstable")
        result[e] = state[:n_v]
    return result


def equilibrium_state(circuit: NetworkCircuit, x, y=None, v0_v=None, *, method: str = "auto") -> np.ndarray:
    """Settled compartment voltages (batch, n_compartments): closed form for an ideal circuit
    (``method`` auto), else the steady-state solve of the circuit's equations."""
    if method not in EQUILIBRIUM_METHODS:
        raise ValueError(f"method must be one of {', '.join(EQUILIBRIUM_METHODS)}, got {method!r}")
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = None if y is None else np.atleast_2d(np.asarray(y, dtype=np.float64))
    v0_v = None if v0_v is None else np.atleast_2d(np.asarray(v0_v, dtype=np.float64))
    if method == "steady-state" or (method == "auto" and not is_ideal(circuit)):
        return steady_state(circuit, x, y, v0_v)
    return closed_form_state(circuit, x, y, v0_v)


# ------------------------------------------------------------------------------------------
# A settle without a transient


@dataclass
class EquilibriumCheck:
    """The equilibrium state against the ODE's at one sampled settle."""

    max_abs_dev_v: float
    settling_time_s: float
    energy_j: float
    ode_settled: bool = True  # False: the ODE stopped at its time or step limit, short of equilibrium


class EquilibriumSettler:
    """Drop-in for :func:`analogdp.solver.settle` that solves for the equilibrium instead of
    integrating to it (module docstring).

    Set ``check_with_ode`` before a step to also integrate that step's settles with the ODE
    (same start state); their settling time and energy then fill the result, the state stays
    the equilibrium's (so that sampling does not change the learning path) and the deviation is
    recorded in ``checks``."""

    def __init__(self, method: str = "auto", lead_in_tau: float | None = None):
        if method not in EQUILIBRIUM_METHODS:
            raise ValueError(f"method must be one of {', '.join(EQUILIBRIUM_METHODS)}, got {method!r}")
        self.method = method
        self.lead_in_tau = check_lead_in_tau(lead_in_tau)
        self.check_with_ode = False
        self.checks: list[EquilibriumCheck] = []

    def __call__(self, circuit: NetworkCircuit, x, y=None, *, v0=None, allow_unsettled: bool = False,
                 **ode_options):
        from .solver import EnergyBreakdown, SettleResult, settle
        from .solver.kernels import STATUS_SETTLED

        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if y is None:
            circuit = replace(circuit, beta=0.0)
        start = lead_in(circuit, x, y, v0, self.lead_in_tau) if self.uses_start(circuit) else v0
        v_final = equilibrium_state(circuit, x, y, start, method=self.method)
        if self.check_with_ode:
            ode = settle(circuit, x, y, v0=v0, allow_unsettled=allow_unsettled, **ode_options)
            deviation = float(np.max(np.abs(ode.v_final_v - v_final), initial=0.0))
            for e in range(x.shape[0]):
                self.checks.append(EquilibriumCheck(deviation, float(ode.settling_time_s[e]),
                                                    float(ode.energy.total[e]), bool(ode.settled[e])))
            return replace(ode, v_final_v=v_final)
        batch = x.shape[0]
        nan = np.full(batch, np.nan)
        energy = EnergyBreakdown(nan.copy(), nan.copy(), nan.copy(), nan.copy(), nan.copy())
        v_initial = np.zeros_like(v_final) if v0 is None else np.atleast_2d(np.asarray(v0, dtype=np.float64))
        return SettleResult(
            circuit=circuit, v_initial_v=v_initial, v_final_v=v_final,
            status=np.full(batch, STATUS_SETTLED), settling_time_s=nan.copy(),
            settling_time_1pct_s=nan.copy(), t_final_s=nan.copy(), distance_v=np.zeros(batch),
            n_steps=np.zeros(batch, dtype=int), n_rejected=np.zeros(batch, dtype=int),
            n_evaluations=np.zeros(batch, dtype=int), energy=energy, energy_to_end=energy,
            saved_ts_s=np.zeros(0), saved_states=np.zeros((batch, 0, v_final.shape[1])))


    def uses_start(self, circuit: NetworkCircuit) -> bool:
        """Whether a lead-in can change this circuit's equilibrium: not for dyads in closed form,
        whose DP fixed point does not depend on where the sweeps start."""
        closed_form = self.method == "closed-form" or (self.method == "auto" and is_ideal(circuit))
        return bool(self.lead_in_tau) and not (closed_form and circuit.compartments_per_neuron == 2)


def check_lead_in_tau(lead_in_tau: float | None) -> float | None:
    if lead_in_tau is not None and not (isinstance(lead_in_tau, (int, float)) and not isinstance(lead_in_tau, bool)
                                        and math.isfinite(lead_in_tau) and lead_in_tau > 0):
        raise ValueError(f"lead_in_tau must be a positive finite number of τ, got {lead_in_tau!r}")
    return None if lead_in_tau is None else float(lead_in_tau)


def lead_in(circuit: NetworkCircuit, x: np.ndarray, y, v0_v, lead_in_tau: float | None) -> np.ndarray | None:
    """The compartment voltages after the first ``lead_in_tau`` τ of the circuit's own transient
    from ``v0_v`` (reset when None), integrated by the ODE; ``v0_v`` itself without a lead-in.

    Where a settle has several stable equilibria, the transient chooses among them early: a solve
    started from here lands where the circuit does (DESIGN §9: 8 τ in every case measured)."""
    if not lead_in_tau:
        return v0_v
    from .solver import settle

    window = settle(circuit, x, y, v0=v0_v, t_end_s=lead_in_tau * circuit.neuron.tau_s, allow_unsettled=True)
    return window.v_final_v


def make_settler(settle_method: str, lead_in_tau: float | None = None):
    """The settle function the algorithms use: the ODE solver or the equilibrium engine (with
    ``lead_in_tau`` τ of the ODE before each solve, :func:`lead_in`)."""
    if settle_method not in SETTLE_METHODS:
        raise ValueError(f"settle must be one of {', '.join(SETTLE_METHODS)}, got {settle_method!r}")
    if settle_method == "ode":
        from .solver import settle

        return settle
    return EquilibriumSettler(lead_in_tau=lead_in_tau)


# ------------------------------------------------------------------------------------------
# One example's DP fixed point on the crossbar's own arrays (the training loop's hot path)


def dp_equilibrium_physical(physical: tuple, has_bias: bool, x: np.ndarray, y: np.ndarray, config: DPConfig,
                            *, tol: float = CLOSED_FORM_TOL, max_sweeps: int = 10_000
                            ) -> tuple[DyadStates, np.ndarray]:
    """:func:`dp_equilibrium` for one example on the weights in crossbar orientation
    (``physical[k]`` = (G⁺ − G⁻)/G_u of crossbar k, rows = inputs then the bias row when
    ``has_bias``), without forming W_k: the same sweeps, compiled. Returns (states with batch
    dimension 1, feed-forward output (1, n_L))."""
    from .digital.dp import feedback_coefficients

    if not has_bias:
        physical = tuple(np.vstack([p, np.zeros((1, p.shape[1]))]) for p in physical)
    c_plus, c_minus = feedback_coefficients(config.variant, config.alpha)
    x_row = np.ascontiguousarray(x[0], dtype=np.float64)
    drive = x_row @ physical[0][:-1]
    drive += physical[0][-1]
    sizes = np.array([x_row.size] + [p.shape[1] for p in physical], dtype=np.int64)
    n = int(sizes[1:].sum())
    plus, minus, output = np.empty(n), np.empty(n), np.empty(sizes[-1])
    sweeps = _dp_sweeps_kernel(tuple(physical), sizes, drive, np.ascontiguousarray(y[0], dtype=np.float64),
                               config.alpha, c_plus, c_minus, config.beta, config.activation == "relu",
                               config.loss == "ce", tol, max_sweeps, plus, minus, output)
    if sweeps < 0:
        raise RuntimeError(f"DP sweeps did not converge to {tol:g} within {max_sweeps} sweeps; the fixed "
                           f"point may be unstable for variant={config.variant}, alpha={config.alpha}")
    offsets = np.concatenate([[0], np.cumsum(sizes[1:])])
    s_plus = [x] + [plus[offsets[k]:offsets[k + 1]][None, :] for k in range(len(physical))]
    s_minus = [x] + [minus[offsets[k]:offsets[k + 1]][None, :] for k in range(len(physical))]
    return DyadStates(s_plus, s_minus, config.alpha), output[None, :]


@numba.njit(cache=True, nogil=True)
def _activation(u, relu):
    if u < 0.0:
        return 0.0
    if u > 1.0 and not relu:
        return 1.0
    return u


@numba.njit(cache=True, nogil=True)
def _dp_sweeps_kernel(physical, sizes, drive, y, alpha, c_plus, c_minus, beta, relu, ce, tol, max_sweeps,
                      plus, minus, output):
    """DESIGN §2.1's table, sweep by sweep, on flat per-layer states; returns the sweeps taken
    (−1: not converged). Layer k's states are plus/minus[off[k-1]:off[k-1] + sizes[k]]."""
    n_layers = sizes.shape[0] - 1
    off = np.zeros(n_layers + 1, dtype=np.int64)
    for k in range(1, n_layers + 1):
        off[k] = off[k - 1] + sizes[k]
    widest = 0
    for k in range(n_layers + 1):
        widest = max(widest, sizes[k])
    bottom = np.empty(off[n_layers])  # a_k of every layer
    gradient = np.empty(sizes[n_layers])
    fb = np.empty(widest)
    # feed-forward pass: both compartments at f(a_k), the output linear
    for j in range(sizes[1]):
        bottom[j] = drive[j]
    for k in range(1, n_layers + 1):
        if k > 1:
            _bottom_up_into(physical[k - 1], plus, minus, off[k - 2], sizes[k - 1], alpha, bottom, off[k - 1])
        for j in range(sizes[k]):
            a = bottom[off[k - 1] + j]
            s = a if k == n_layers else _activation(a, relu)
            plus[off[k - 1] + j] = s
            minus[off[k - 1] + j] = s
    for j in range(sizes[n_layers]):
        output[j] = bottom[off[n_layers - 1] + j]
    change = 0.0
    for sweep in range(max_sweeps + 1):
        change = 0.0
        first = 1 if sweep > 0 else n_layers  # the first sweep nudges the feed-forward output only
        for k in range(first, n_layers + 1):
            if sweep > 0 and k > 1:
                _bottom_up_into(physical[k - 1], plus, minus, off[k - 2], sizes[k - 1], alpha, bottom, off[k - 1])
            change = max(change, _set_layer(k, n_layers, physical, sizes, off, bottom, plus, minus, y, c_plus,
                                            c_minus, beta, relu, ce, gradient, fb))
        for k in range(n_layers - 1, 0, -1):
            change = max(change, _set_layer(k, n_layers, physical, sizes, off, bottom, plus, minus, y, c_plus,
                                            c_minus, beta, relu, ce, gradient, fb))
        if sweep > 0 and change <= tol:
            return sweep
    return -1


@numba.njit(cache=True, nogil=True)
def _bottom_up_into(weights, plus, minus, start, n_in, alpha, out, out_start):
    """a = s̄ P[:-1] + P[-1] (rows = inputs, the last row the bias)."""
    n_out = weights.shape[1]
    for j in range(n_out):
        out[out_start + j] = weights[n_in, j]
    for i in range(n_in):
        mean = alpha * plus[start + i] + (1.0 - alpha) * minus[start + i]
        if mean == 0.0:
            continue
        for j in range(n_out):
            out[out_start + j] += mean * weights[i, j]


@numba.njit(cache=True, nogil=True)
def _set_layer(k, n_layers, physical, sizes, off, bottom, plus, minus, y, c_plus, c_minus, beta, relu, ce,
               gradient, fb):
    """Layer k's dyads from the table; returns the largest change."""
    change = 0.0
    base = off[k - 1]
    if k == n_layers:
        n = sizes[k]
        if ce:
            top = -1e300
            for j in range(n):
                top = max(top, bottom[base + j])
            total = 0.0
            for j in range(n):
                gradient[j] = np.exp(bottom[base + j] - top)
                total += gradient[j]
            for j in range(n):
                gradient[j] = gradient[j] / total - y[j]
        else:
            for j in range(n):
                gradient[j] = bottom[base + j] - y[j]
        for j in range(n):
            g = beta * gradient[j]
            new_plus = bottom[base + j] - c_plus * g
            new_minus = bottom[base + j] + c_minus * g
            change = max(change, abs(new_plus - plus[base + j]), abs(new_minus - minus[base + j]))
            plus[base + j] = new_plus
            minus[base + j] = new_minus
        return change
    weights = physical[k]  # crossbar k: rows = layer k, columns = layer k+1
    above = off[k]
    for i in range(sizes[k]):
        acc = 0.0
        for j in range(sizes[k + 1]):
            acc += weights[i, j] * (plus[above + j] - minus[above + j])
        fb[i] = acc
    for i in range(sizes[k]):
        a = bottom[base + i]
        new_plus = _activation(a + c_plus * fb[i], relu)
        new_minus = _activation(a - c_minus * fb[i], relu)
        change = max(change, abs(new_plus - plus[base + i]), abs(new_minus - minus[base + i]))
        plus[base + i] = new_plus
        minus[base + i] = new_minus
    return change
