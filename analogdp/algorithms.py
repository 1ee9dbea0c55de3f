"""Learning algorithms on the crossbar circuit: what one update does (DESIGN §2, §3.3–§3.5).

:class:`DualPropagation` and :class:`EquilibriumPropagation` are the two implementations of
:class:`LearningAlgorithm`. Each is configured once (β and the algorithm's own parameters are
checked at construction) and then asked, by the learning loop and the experiment, for:

- ``name`` and ``neuron_kind()``: the circuit it needs (dyads for DP, single-compartment neurons
  for EP), ``phase_names()``: the settles of one update, in order;
- ``macs_per_update(circuit)``: multiply-accumulates of one update;
- ``step(circuit, x, y, v0_v)``: settle, read the update from the settled state, program it;
- ``inference(circuit, x)``: the forward (free) settle from reset;
- ``fixed_point_error_v(circuit, x, y, settles)``: the settled voltages against the digital
  reference fixed points of the weights the conductances realise;
- ``spice_checks(circuit, x, y, ...)``: every settle of the first update against ngspice;
  ``spice_windows_s(circuit)``: the transient window of each of those checks;
  ``netlist_targets(y)``: the targets of the settle an exported netlist shows;
- ``describe()``: plain data for the JSON summary; ``reset()``: restart the pulse-rounding
  stream so that a rerun draws the same pulses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from .circuit import NetworkCircuit, NeuronKind, SampleHoldParams, dyad_neuron, ep_neuron
from .digital.dp import VARIANTS, DPConfig, dp_fixed_point, dp_weight_update
from .digital.functional import check_choice
from .names import FREE_PHASE, MINUS_PHASE, PLUS_PHASE, SINGLE_PHASE
from .programming import ConductanceProgrammer, ProgrammingReport, RankOneTerm

# The SPICE window of a DP settle spans this many compartment time constants τ (200 ns at the
# default τ = 10 ns; the circuit settles in about 8 τ), sampled at τ/10.
SPICE_WINDOW_TAU = 20.0
SPICE_STEP_TAU = 0.1
# An EP phase's cross-check window reaches its equilibrium, about three times DP's window.
EP_SPICE_WINDOW_FACTOR = 3.0
# The digital DP reference behind the fixed-point error gives up once its residual has not
# halved for this many sweeps in a row. Converging sweeps halve it within ~30 sweeps even on the
# weights of stuck devices (rram-hfo2), while sweeps without a stable fixed point cycle with an
# O(1) residual; without the limit such an update spent 10⁴ sweeps (~2 s) to report NaN.
FIXED_POINT_STALL_SWEEPS = 100
# Plain sweeps from the settled state that have not halved their residual for this many sweeps
# are leaving a fixed point that repels them; the reference restarts with under-relaxed sweeps
# (dp_fixed_point's relax_after). On the first 60 rram-hfo2 updates the converging plain
# searches had at most 9 such sweeps in a row; the 20 that diverged had 10 by sweep 14-30.
FIXED_POINT_RELAX_AFTER = 10


@dataclass
class StepResult:
    """What one learning step did.

    ``energy_j`` has the settle terms (crossbar, neuron, amplifier_static, capacitor; summed
    over the step's settles), ``programming``, and whatever else an algorithm spends (EP's
    sample-and-hold); their sum is the energy of the update.
    """

    circuit: NetworkCircuit  # after programming
    v_final_v: np.ndarray  # compartment voltages the next example starts from
    settling_time_s: float  # 0.1 % band, summed over the step's settles
    settling_time_1pct_s: float
    energy_j: dict[str, float]
    programming: ProgrammingReport
    fixed_point_error_v: float  # max |v − reference fixed point|; NaN if there is none
    settled: bool
    settles: dict = field(default_factory=dict)  # phase name → SettleResult


class LearningAlgorithm(Protocol):
    """What the learning loop and the experiment ask of an algorithm (module docstring)."""

    name: str
    beta: float | None
    lr: float
    programmer: ConductanceProgrammer

    def neuron_kind(self) -> NeuronKind: ...

    def phase_names(self) -> tuple[str, ...]: ...

    def macs_per_update(self, circuit: NetworkCircuit) -> int: ...

    def step(self, circuit: NetworkCircuit, x: np.ndarray, y: np.ndarray,
             v0_v: np.ndarray | None) -> StepResult: ...

    def inference(self, circuit: NetworkCircuit, x: np.ndarray): ...

    def fixed_point_error_v(self, circuit: NetworkCircuit, x: np.ndarray, y: np.ndarray,
                            settles: dict) -> float: ...

    def spice_checks(self, circuit: NetworkCircuit, x: np.ndarray, y: np.ndarray, *,
                     tolerances=None, runner: str = "subprocess", timeout_s: float | None = None) -> dict: ...

    def spice_windows_s(self, circuit: NetworkCircuit) -> tuple[float, ...]: ...

    def netlist_targets(self, y: np.ndarray) -> np.ndarray | None: ...

    def describe(self) -> dict: ...

    def reset(self) -> None: ...


def update_macs(circuit: NetworkCircuit) -> int:
    """Multiply-accumulates of the weight update: one product δ_j s̄_i per device pair."""
    return int(sum(x.n_rows * x.n_columns for x in circuit.crossbars))


def spice_window(circuit: NetworkCircuit) -> tuple[float, float]:
    """(t_stop, t_step) of a DP settle's SPICE transient: 20 τ sampled at τ/10."""
    tau = circuit.neuron.tau_s
    return SPICE_WINDOW_TAU * tau, SPICE_STEP_TAU * tau


def _check_lr(lr) -> float:
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    return float(lr)


def _as_batch(values) -> np.ndarray:
    return np.atleast_2d(np.asarray(values, dtype=np.float64))


class _Programmed:
    """What both algorithms share: the learning rate, the programmer and its reset."""

    lr: float
    programmer: ConductanceProgrammer
    settle_options: dict
    _settler = None

    def reset(self) -> None:
        self.programmer.reset_rng()

    def program(self, circuit: NetworkCircuit, delta_w, delta_b, rank_one_terms=None, beta_span=None):
        """Program lr·(ΔW, Δb); a pulse-coincidence programmer takes the same update as
        rank-one terms (``rank_one_terms()``, whose sum divided by ``beta_span`` is ΔW)."""
        lr_over_beta = None if beta_span is None else self.lr / beta_span
        return self.programmer.program(circuit, [self.lr * d for d in delta_w],
                                       [self.lr * d for d in delta_b], rank_one_terms, lr_over_beta)

    def inference(self, circuit: NetworkCircuit, x):
        """The forward (free) settle from reset; unsettled examples are reported, not raised."""
        return self.settler(self.programmer.seen_circuit(circuit), _as_batch(x), None, allow_unsettled=True,
                            **self.settle_options)

    @property
    def settler(self):
        """How a settle is computed: :func:`analogdp.solver.settle` (the ODE, default) or any
        callable with its signature, e.g. :class:`analogdp.equilibrium.EquilibriumSettler`."""
        if self._settler is None:
            from .solver import settle

            return settle
        return self._settler

    @settler.setter
    def settler(self, value) -> None:
        self._settler = value


class DualPropagation(_Programmed):
    """Single-phase DP learning step (DESIGN §2.1, §3.3, §3.4).

    ``beta``: the nudge the circuit is built with (> 0); None takes the circuit's, checked at
    every step. The learning loop refuses a circuit whose β differs from a given one.

    One settle with the output nudged by β∇ℓ; the dyads then hold the DP fixed point. The
    update is DP's local Hebbian rule read from the settled compartments,
    ΔW_{k−1} = lr · δ_k s̄_{k−1}ᵀ / β and Δb_{k−1} = lr · δ_k / β (post-synaptic difference ×
    pre-synaptic mean), programmed as pulses. The fixed-point error compares the settled
    voltages with the closed-form DP fixed point (``dp_fixed_point``) of the weights the
    conductances realise, in volts.
    """

    name = "dp"

    def __init__(self, *, variant: str = "dp", alpha: float = 0.5, beta: float | None = None,
                 lr: float = 0.02, programmer: ConductanceProgrammer | None = None,
                 settle_options: dict | None = None, settler=None):
        check_choice("variant", variant, VARIANTS)
        self._settler = settler
        if beta is not None:
            check_dp_beta(beta)
        self.variant = variant
        self.alpha = alpha
        self.beta = None if beta is None else float(beta)
        self.lr = _check_lr(lr)
        self.programmer = programmer or ConductanceProgrammer()
        self.settle_options = dict(settle_options or {})
        self._kind = dyad_neuron(variant, alpha)  # validates alpha

    def neuron_kind(self) -> NeuronKind:
        return self._kind

    def phase_names(self) -> tuple[str, ...]:
        return (SINGLE_PHASE,)

    def macs_per_update(self, circuit: NetworkCircuit) -> int:
        return circuit.macs_per_settle + update_macs(circuit)

    def describe(self) -> dict:
        return {"algo": self.name, "variant": self.variant, "alpha": self.alpha, "lr": self.lr,
                "programming": self.programmer.describe()}

    def step(self, circuit, x, y, v0_v=None) -> StepResult:
        check_dp_beta(circuit.beta)
        x, y = _as_batch(x), _as_batch(y)
        # The settle sees the conductances as read now (read noise frozen for the settle).
        seen = self.programmer.seen_circuit(circuit)
        result = self.settler(seen, x, y, v0=v0_v, allow_unsettled=True, **self.settle_options)
        settles = {SINGLE_PHASE: result}
        error_v = self.fixed_point_error_v(seen, x, y, settles)
        states = result.dyad_states(x)
        delta_w, delta_b = dp_weight_update(states, circuit.beta)
        programmed, report = self.program(circuit, delta_w, delta_b,
                                          lambda: dp_rank_one_terms(circuit, states), circuit.beta)
        energy = result.energy.as_dict(0)
        energy.update(report.energy_j_by_term())
        return StepResult(
            circuit=programmed, v_final_v=result.v_final_v[0].copy(),
            settling_time_s=float(result.settling_time_s[0]),
            settling_time_1pct_s=float(result.settling_time_1pct_s[0]),
            energy_j=energy, programming=report, fixed_point_error_v=error_v,
            settled=bool(result.settled[0]), settles=settles)

    def fixed_point_error_v(self, circuit, x, y, settles: dict) -> float:
        """max over compartments of |v − V_r·s_DP| (V); NaN when the digital sweeps find no
        fixed point: they diverge (e.g. variant ``dp`` with α ≠ ½, which has no stable fixed
        point) or stall (no halving of their residual in FIXED_POINT_STALL_SWEEPS sweeps), the
        plain sweeps and then the under-relaxed ones (FIXED_POINT_RELAX_AFTER)."""
        weights, biases = circuit.effective_weights()
        config = DPConfig(variant=self.variant, alpha=self.alpha, beta=circuit.beta,
                          activation=circuit.activation, loss=circuit.loss)
        settled = settles[SINGLE_PHASE].dyad_states(x)
        try:
            # Started from the settled state: a settled circuit sits within its settling
            # tolerance of the fixed point, so the sweeps need only the last few digits.
            reference = dp_fixed_point(weights, biases, x, y, config, stall_sweeps=FIXED_POINT_STALL_SWEEPS,
                                       start=settled, relax_after=FIXED_POINT_RELAX_AFTER)
        except RuntimeError:
            return math.nan
        worst = 0.0
        for k in range(1, circuit.n_layers + 1):
            worst = max(worst,
                        float(np.max(np.abs(settled.s_plus[k] - reference.s_plus[k]))),
                        float(np.max(np.abs(settled.s_minus[k] - reference.s_minus[k]))))
        return worst * circuit.neuron.v_read_v

    def spice_windows_s(self, circuit: NetworkCircuit) -> tuple[float, ...]:
        return (spice_window(circuit)[0],)

    def netlist_targets(self, y):
        return y  # the single nudged settle

    def spice_checks(self, circuit, x, y, *, tolerances=None, runner: str = "subprocess",
                     timeout_s: float | None = None) -> dict:
        """ngspice against the numba solver on the nudged settle of one example from reset."""
        from .spice import TOLERANCES, cross_check

        t_stop, t_step = spice_window(circuit)
        check = cross_check(circuit, x, y, t_stop_s=t_stop, t_step_s=t_step, runner=runner,
                            tolerances=tolerances or TOLERANCES, timeout_s=timeout_s)
        return {SINGLE_PHASE: check}


class EquilibriumPropagation(_Programmed):
    """EP learning step on the same crossbars (DESIGN §2.2, §3.5; :mod:`analogdp.ep_circuit`).

    ``centered`` selects two nudged phases (±β). β (given here, or else the circuit's, checked
    at every step) must lie in (0, 1), as for the digital EP:
    with the squared error, the −β output stage has loop gain β and is stable only below 1.
    ``lr`` scales EP's descent direction before programming.
    """

    def __init__(self, *, centered: bool = False, beta: float | None = None, lr: float = 0.02,
                 programmer: ConductanceProgrammer | None = None,
                 sample_hold: SampleHoldParams | None = None, settle_options: dict | None = None,
                 settler=None):
        self._settler = settler
        if beta is not None:
            check_ep_beta(beta)
        self.centered = bool(centered)
        self.name = "ep-centered" if self.centered else "ep"
        self.beta = None if beta is None else float(beta)
        self.lr = _check_lr(lr)
        self.programmer = programmer or ConductanceProgrammer()
        self.sample_hold = sample_hold or SampleHoldParams()
        self.settle_options = dict(settle_options or {})
        self._kind = ep_neuron()

    def neuron_kind(self) -> NeuronKind:
        return self._kind

    def phase_names(self) -> tuple[str, ...]:
        return (FREE_PHASE, PLUS_PHASE, MINUS_PHASE) if self.centered else (FREE_PHASE, PLUS_PHASE)

    def macs_per_update(self, circuit: NetworkCircuit) -> int:
        """Every phase is a full settle; the update forms two outer products per device pair
        (nudged and held), where DP forms one."""
        return len(self.phase_names()) * circuit.macs_per_settle + 2 * update_macs(circuit)

    def describe(self) -> dict:
        return {"algo": self.name, "centered": self.centered, "lr": self.lr,
                "phases": list(self.phase_names()),
                "c_hold_f": self.sample_hold.c_hold_f,
                "programming": self.programmer.describe()}

    def step(self, circuit, x, y, v0_v=None) -> StepResult:
        from .ep_circuit import contrastive_update, run_phases

        check_ep_beta(circuit.beta)
        x, y = _as_batch(x), _as_batch(y)
        phases = run_phases(circuit, x, y, centered=self.centered, v0_v=v0_v,
                            sample_hold=self.sample_hold, settle_options=self.settle_options,
                            allow_unsettled=True, seen=self.programmer.seen_circuit, settler=self._settler)
        delta_w, delta_b = contrastive_update(circuit, x, phases, circuit.beta)
        beta_span = 2.0 * circuit.beta if self.centered else circuit.beta
        programmed, report = self.program(circuit, delta_w, delta_b,
                                          lambda: ep_rank_one_terms(circuit, x, phases), beta_span)
        energy = phases.update_energy_j(0)
        energy.update(report.energy_j_by_term())
        # The reference fixed points are those of the conductances the free phase read.
        read = replace(phases.settles[FREE_PHASE].circuit, beta=circuit.beta)
        return StepResult(
            circuit=programmed, v_final_v=phases.last.v_final_v[0].copy(),
            settling_time_s=float(phases.settling_time_s[0]),
            settling_time_1pct_s=float(phases.settling_time_1pct_s[0]),
            energy_j=energy, programming=report,
            fixed_point_error_v=self.fixed_point_error_v(read, x, y, phases.settles),
            settled=bool(phases.settled[0]), settles=dict(phases.settles))

    def fixed_point_error_v(self, circuit, x, y, settles: dict) -> float:
        """max over phases and compartments of |v − V_r·s_EP| (V); NaN when the digital
        relaxation does not converge."""
        from .ep_circuit import layer_states, reference_states

        try:
            reference = reference_states(circuit, x, y, centered=self.centered)
        except RuntimeError:
            return math.nan
        worst = 0.0
        for phase, result in settles.items():
            settled = layer_states(circuit, x, result.v_final_v)
            for k in range(1, circuit.n_layers + 1):
                worst = max(worst, float(np.max(np.abs(settled[k] - reference[phase][k]))))
        return worst * circuit.neuron.v_read_v

    def spice_windows_s(self, circuit: NetworkCircuit) -> tuple[float, ...]:
        """Every phase is checked over a window about three times DP's."""
        return (EP_SPICE_WINDOW_FACTOR * spice_window(circuit)[0],) * len(self.phase_names())

    def netlist_targets(self, y):
        return None  # the free phase

    def spice_checks(self, circuit, x, y, *, tolerances=None, runner: str = "subprocess",
                     timeout_s: float | None = None) -> dict:
        """ngspice against the numba solver on every phase of one example (free from reset,
        each nudged phase from the state the previous one settled to)."""
        from .ep_circuit import cross_check_phases

        return cross_check_phases(circuit, x, y, centered=self.centered,
                                  t_step_s=spice_window(circuit)[1], time_numba=True,
                                  runner=runner, tolerances=tolerances, timeout_s=timeout_s)


def _with_bias_entry(values: np.ndarray, has_bias_row: bool) -> np.ndarray:
    """A layer's row signals, with the bias row's (held at V_r: activity 1) appended."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    return np.append(values, 1.0) if has_bias_row else values


def dp_rank_one_terms(circuit: NetworkCircuit, states) -> list[list[RankOneTerm]]:
    """DP's update of crossbar k as one rank-one term: rows carry s̄_k (the dyad means, the
    bias row 1), columns δ_{k+1} (the dyad differences); ΔW = lr·δ s̄ᵀ/β."""
    return [[RankOneTerm(_with_bias_entry(states.mean(k)[0], xbar.has_bias_row), states.difference(k + 1)[0])]
            for k, xbar in enumerate(circuit.crossbars)]


def ep_rank_one_terms(circuit: NetworkCircuit, x, phases) -> list[list[RankOneTerm]]:
    """EP's contrast (ρρᵀ(upper) − ρρᵀ(lower)) as rank-one terms: one for the clamped input
    crossbar (x times the change of the next layer), two of opposite sign elsewhere."""
    from .ep_circuit import layer_states

    held = layer_states(circuit, x, phases.held_v)
    nudged = layer_states(circuit, x, phases.last.v_final_v)
    # Centered: upper = +β (held), lower = −β (last); one-sided: upper = +β (last), lower = free.
    upper, lower = (held, nudged) if phases.centered else (nudged, held)
    terms = []
    for k, xbar in enumerate(circuit.crossbars):
        if k == 0:
            terms.append([RankOneTerm(_with_bias_entry(held[0][0], xbar.has_bias_row),
                                      upper[1][0] - lower[1][0])])
        else:
            terms.append([RankOneTerm(_with_bias_entry(upper[k][0], xbar.has_bias_row), upper[k + 1][0]),
                          RankOneTerm(_with_bias_entry(lower[k][0], xbar.has_bias_row), lower[k + 1][0], -1.0)])
    return terms


def check_dp_beta(beta) -> None:
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
        raise ValueError(f"DP needs beta > 0 (the update divides by it), got {beta!r}")


def check_ep_beta(beta) -> None:
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and 0.0 < beta < 1.0):
        raise ValueError(f"EP needs beta in (0, 1) (the −β output stage of centered EP and "
                         f"the digital reference are unstable otherwise), got {beta!r}")


