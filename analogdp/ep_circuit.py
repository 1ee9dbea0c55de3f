"""Equilibrium propagation on the crossbar circuit (DESIGN §2.2, §3.5, §4).

The hardware is the one DP uses: the same bidirectional crossbars, conductances, drivers and
periphery, generated from the same :class:`~analogdp.circuit.NetworkCircuit` description. Only
the neurons differ: an EP neuron (:func:`~analogdp.circuit.ep_neuron`) has one compartment
whose voltage v = V_r·s is both its row and its column signal, so it settles to

    hidden  v = V_r·f(W s_prev + b + Wᵀ s_next)        output  v = V_r·(a − β∇ℓ(s_L)),

the layer-wise minimiser of the Hopfield energy E + βC; at equilibrium the compartments hold
the EP fixed point of :mod:`analogdp.digital.ep` (same conventions: β > 0 pulls the output
towards the target, the nudge is evaluated at the output state, hidden states are clipped).

One EP update on the circuit (:func:`run_phases`, then :func:`contrastive_update`):

1. **free phase**: settle with β = 0, starting from whatever the compartments hold (the state
   the previous example left; reset, all zero, for the first);
2. **sample-and-hold** of the state the update needs later, one hold capacitor per neuron;
3. **nudged phase(s)**, each starting from the state the circuit is in:
   - one-sided EP: the free state is held; one +β phase follows; the update contrasts the
     held free state with the +β state, ΔW = (s^β s^βᵀ − s⁰ s⁰ᵀ)/β;
   - centered EP: +β from the free state, then the +β state is held and a −β phase follows,
     continuing from the +β state (no restore of the free state is needed, so only one set
     of hold capacitors); ΔW = (s^{+β} s^{+β}ᵀ − s^{−β} s^{−β}ᵀ)/(2β);
4. **programming** of lr·ΔW as conductance pulses, exactly as DP programs its update
   (:class:`~analogdp.programming.ConductanceProgrammer`). The learning step that strings
   these together is :class:`analogdp.algorithms.EquilibriumPropagation`.

Energy per update (DESIGN §4) = Σ over phases of the settle energy (crossbar, neuron drive,
amplifier static, capacitor; each over [0, settling time] as for DP) + ``sample_hold`` +
programming. ``sample_hold`` has two parts:

- writing: C_h·v² per stored value (the source charging a hold capacitor from empty delivers
  C_h v²: half is stored, half dissipated in the switch), C_h from
  :class:`~analogdp.circuit.SampleHoldParams`;
- holding: one buffer amplifier per held value reads the capacitor out to the update circuit;
  it burns the same static power as every other amplifier (``p_amp_static_w``) from the
  moment of sampling until the update, i.e. for the settling time of the nudged phase(s).

The sample switch is ideal (no acquisition time, no charge injection). Settling time per
update is the sum of the phases' settling times (they run one after another).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .circuit import NetworkCircuit, SampleHoldParams, ep_neuron
from .digital.ep import EPConfig, ep_free_fixed_point, ep_nudged_fixed_point, ep_weight_update
from .names import FREE_PHASE, MINUS_PHASE, PLUS_PHASE, SAMPLE_HOLD_TERM, SETTLE_ENERGY_TERMS
from .solver import SettleResult, settle

# ------------------------------------------------------------------------------------------
# The phases of one update


@dataclass
class EPPhases:
    """The settles of one EP update on the circuit, in the order they ran.

    ``settles`` maps the phase name (``free``, ``nudged_plus_beta`` and, for centered EP,
    ``nudged_minus_beta``) to its :class:`SettleResult`; ``held_v`` are the sampled voltages
    (batch, n_compartments) and ``held_phase`` the phase they were sampled from;
    ``sample_hold_energy_j`` (batch,) is the energy of writing and holding them.
    """

    settles: dict[str, SettleResult]
    held_phase: str
    held_v: np.ndarray
    sample_hold_energy_j: np.ndarray
    centered: bool

    @property
    def last(self) -> SettleResult:
        """The final phase: the state the circuit is left in."""
        return list(self.settles.values())[-1]

    @property
    def settling_time_s(self) -> np.ndarray:
        """Per example, the phases' 0.1 % settling times summed (they run in sequence)."""
        return np.sum([r.settling_time_s for r in self.settles.values()], axis=0)

    @property
    def settling_time_1pct_s(self) -> np.ndarray:
        return np.sum([r.settling_time_1pct_s for r in self.settles.values()], axis=0)

    @property
    def settled(self) -> np.ndarray:
        return np.all([r.settled for r in self.settles.values()], axis=0)

    def settle_energy_j(self, index: int) -> dict[str, float]:
        """Settle energy terms of example ``index``, summed over the phases."""
        totals = dict.fromkeys(SETTLE_ENERGY_TERMS, 0.0)
        for result in self.settles.values():
            for term, value in result.energy.as_dict(index).items():
                totals[term] = totals.get(term, 0.0) + value  # a wire term only with wires
        return totals

    def update_energy_j(self, index: int) -> dict[str, float]:
        """Every term of the update's energy except programming, for example ``index``."""
        energy = self.settle_energy_j(index)
        energy[SAMPLE_HOLD_TERM] = float(self.sample_hold_energy_j[index])
        return energy


def sample_hold_energy_j(held_v: np.ndarray, hold_duration_s: np.ndarray, circuit: NetworkCircuit,
                         sample_hold: SampleHoldParams) -> np.ndarray:
    """Energy (J, per example) of storing ``held_v`` and holding it for ``hold_duration_s``:
    C_h Σ v² to write, plus one buffer's static power per value for the hold (module docstring)."""
    held_v = np.atleast_2d(held_v)
    write = sample_hold.c_hold_f * np.sum(held_v ** 2, axis=1)
    hold = circuit.neuron.p_amp_static_w * held_v.shape[1] * np.asarray(hold_duration_s)
    return write + hold


def run_phases(circuit: NetworkCircuit, x, y, *, centered: bool, beta: float | None = None,
               v0_v=None, sample_hold: SampleHoldParams | None = None,
               settle_options: dict | None = None, allow_unsettled: bool = False,
               seen=None, settler=None) -> EPPhases:
    """Settle the free phase and the nudged phase(s) of one EP update (module docstring).

    ``circuit`` must have EP neurons; ``beta`` (default ``circuit.beta``) is the nudge
    strength, > 0. ``v0_v`` is the state the free phase starts from (default reset).
    ``seen(circuit)``, when given, is the circuit each settle sees (the conductances as read
    for that settle, e.g. with read noise drawn once per settle). ``settler`` computes each
    settle (default :func:`analogdp.solver.settle`, the ODE).
    """
    if circuit.neuron_kind != ep_neuron():
        raise ValueError(f"EP needs the circuit built with ep_neuron(), not {circuit.neuron_kind.name!r}")
    beta = circuit.beta if beta is None else beta
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"EP beta must be a positive finite number, got {beta!r}")
    sample_hold = sample_hold or SampleHoldParams()
    options = dict(settle_options or {}, allow_unsettled=allow_unsettled)

    def settle_phase(phase_beta: float, targets, start_v):
        read = circuit if seen is None else seen(circuit)
        return (settler or settle)(replace(read, beta=phase_beta), x, targets, v0=start_v, **options)

    free = settle_phase(0.0, None, v0_v)
    plus = settle_phase(beta, y, free.v_final_v)
    settles = {FREE_PHASE: free, PLUS_PHASE: plus}
    if centered:
        held_phase, held_v = PLUS_PHASE, plus.v_final_v
        minus = settle_phase(-beta, y, plus.v_final_v)
        settles[MINUS_PHASE] = minus
        hold_duration_s = minus.settling_time_s
    else:
        held_phase, held_v = FREE_PHASE, free.v_final_v
        hold_duration_s = plus.settling_time_s
    energy = sample_hold_energy_j(held_v, hold_duration_s, circuit, sample_hold)
    return EPPhases(settles, held_phase, held_v.copy(), energy, centered)


def layer_states(circuit: NetworkCircuit, x, voltages_v: np.ndarray) -> list[np.ndarray]:
    """[x, s_1, …, s_L] in activity units from EP compartment voltages (batch, n_compartments)."""
    voltages_v = np.atleast_2d(voltages_v)
    states = [np.atleast_2d(np.asarray(x, dtype=np.float64))]
    for layer in range(1, circuit.n_layers + 1):
        start = circuit.compartment_offset(layer)
        stop = start + circuit.layer_sizes[layer]
        states.append(voltages_v[:, start:stop] / circuit.neuron.v_read_v)
    return states


def contrastive_update(circuit: NetworkCircuit, x, phases: EPPhases, beta: float
                       ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """EP's descent direction (ΔW, Δb) from the held and the last nudged state; the update
    circuit sees the held voltages, not the settle results, so that is what is used."""
    held = layer_states(circuit, x, phases.held_v)
    nudged = layer_states(circuit, x, phases.last.v_final_v)
    nudged[0] = held[0]  # the clamped input, shared (ep_weight_update then forms one product)
    if phases.centered:
        return ep_weight_update(nudged, held, 2.0 * beta)  # lower = −β (last), upper = +β (held)
    return ep_weight_update(held, nudged, beta)  # lower = free (held), upper = +β (last)


def reference_states(circuit: NetworkCircuit, x, y, *, centered: bool, beta: float | None = None,
                     tol: float = 1e-13) -> dict[str, list[np.ndarray]]:
    """Digital EP fixed points of the weights the conductances realise, by phase name.

    The phases start as the circuit's do (free from zero; +β from free; −β from +β), so that
    the comparison holds even where the energy has more than one minimum, as long as both
    descend into the same one. Raises RuntimeError when the digital relaxation does not
    converge.
    """
    beta = circuit.beta if beta is None else beta
    weights, biases = circuit.effective_weights()
    biases = [np.zeros(w.shape[0]) if b is None else b for w, b in zip(weights, biases)]
    config = EPConfig(activation=circuit.activation, loss=circuit.loss, beta=beta)
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    free = ep_free_fixed_point(weights, biases, x, config, tol=tol)
    plus = ep_nudged_fixed_point(weights, biases, x, y, config, beta, start_states=free, tol=tol)
    states = {FREE_PHASE: free, PLUS_PHASE: plus}
    if centered:
        states[MINUS_PHASE] = ep_nudged_fixed_point(weights, biases, x, y, config, -beta,
                                                    start_states=plus, tol=tol)
    return states


# ------------------------------------------------------------------------------------------
# SPICE cross-check of every phase


def cross_check_phases(circuit: NetworkCircuit, x, y, *, centered: bool,
                       t_stop_s: float | None = None, t_step_s: float | None = None,
                       runner: str = "subprocess", time_numba: bool = False, v0_v=None,
                       tolerances=None, timeout_s: float | None = None) -> dict:
    """Each EP phase simulated by ngspice and by the numba solver, compared
    (:func:`analogdp.spice.cross_check`), phase name → :class:`~analogdp.spice.CrossCheck`.

    ``x`` (n_0,) and ``y`` (n_L,) are one example. Every phase starts, in both simulators,
    from the state the numba solver settled the previous phase to (the free phase from
    ``v0_v``, default reset), so that each comparison is of one settle, as for DP; the netlist
    sets that state as the capacitors' initial condition.

    Window: ``t_stop_s``, or by default per phase the longer of 20 τ and three times the
    phase's settling time, rounded up to whole 10 τ. EP phases can settle well beyond DP's 8 τ (their slowest mode is
    at −(1 − ‖J‖)/τ), and settling is judged against the state at the end of the window, which
    must therefore be at equilibrium. Time step ``t_step_s``, default τ/10.
    """
    from .spice import TOLERANCES, cross_check

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    phases = run_phases(circuit, x[None, :], y[None, :], centered=centered,
                        v0_v=None if v0_v is None else np.asarray(v0_v)[None, :])
    starts = {FREE_PHASE: None if v0_v is None else np.asarray(v0_v, dtype=np.float64),
              PLUS_PHASE: phases.settles[FREE_PHASE].v_final_v[0],
              MINUS_PHASE: phases.settles[PLUS_PHASE].v_final_v[0]}
    betas = {FREE_PHASE: 0.0, PLUS_PHASE: circuit.beta, MINUS_PHASE: -circuit.beta}
    tau = circuit.neuron.tau_s
    checks = {}
    for phase, result in phases.settles.items():
        window_s = t_stop_s or 10.0 * tau * math.ceil(
            max(2.0, 0.3 * float(result.settling_time_s[0]) / tau))  # whole multiples of 10 τ
        checks[phase] = cross_check(replace(circuit, beta=betas[phase]), x,
                                    None if phase == FREE_PHASE else y, t_stop_s=window_s,
                                    t_step_s=t_step_s or 0.1 * tau, runner=runner,
                                    v0=starts[phase], time_numba=time_numba,
                                    tolerances=tolerances or TOLERANCES, timeout_s=timeout_s)
    return checks
