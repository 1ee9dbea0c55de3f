"""Learning on the crossbar circuit: conductance programming and the one-example-at-a-time loop.

Two parts (DESIGN §3.4):

**Programming** (:class:`ConductanceProgrammer`). A desired weight change ΔW is written as a
whole number of identical pulses, each moving one device of a differential pair by
ΔG = ``delta_g_per_pulse_s`` at a cost of ``e_pulse_j``. Per weight:

- pulses = |ΔW|·G_u / ΔG rounded to an integer. ``stochastic`` rounding (the default) rounds
  up with probability equal to the fractional part, drawn from a seeded generator, so the
  expected programmed change equals the desired one even when it is far below one pulse
  (most single-example updates are); ``nearest`` rounds deterministically and drops every
  change below half a pulse.
- which device gets the pulses (``policy``):
  ``reset-then-set`` (default) increases W by first depressing G⁻ (RESET pulses) while it is
  above G_min, then potentiating G⁺ (SET pulses), and mirrors this to decrease W. A pair then
  stays in the form the weight mapping writes (one device at G_min), conductances stay low and
  the crossbar's read energy does not creep up. ``set-only`` potentiates G⁺ for ΔW > 0 and G⁻
  for ΔW < 0, as arrays whose devices can only be SET incrementally do; both devices drift
  towards G_max over time.
- every conductance is clipped to [G_min, G_max]. The programming controller knows the state
  it wrote, so it sends no pulse that cannot move a device: a pulse that reaches a bound
  counts (it moved the device part of a step), requested pulses beyond it are not sent and are
  reported as ``pulses_dropped``.
- energy = pulses sent × ``e_pulse_j``.

**The loop** (:class:`CrossbarLearning`, configure → ``run`` → read ``history_``). Examples
are presented one at a time; each settles from the compartment voltages the previous one left
(the first from reset, all zero), then the update is programmed. What happens in one step is
the job of an *algorithm* object (:class:`DualPropagation` here); any object with the same
``name``, ``neuron_kind()``, ``macs_per_update(circuit)`` and ``step(circuit, x, y, v0_v)``
plugs in; :class:`analogdp.ep_circuit.EquilibriumPropagation` (free, hold and nudged phases)
is the other one. The loop itself records, per example, the loss of
the feed-forward prediction before the update and everything the step reports.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from .circuit import NetworkCircuit, NeuronKind, ProgrammingParams, dyad_neuron
from .digital.dp import VARIANTS, DPConfig, dp_fixed_point, dp_weight_update, feedforward
from .digital.functional import check_choice, loss_value
from .solver import ENERGY_TERMS, SettleResult, settle

ROUNDINGS = ("stochastic", "nearest")
POLICIES = ("reset-then-set", "set-only")
PROGRAMMING_TERM = "programming"
# Pulse counts are ratios of conductances; a ratio within this of an integer is that integer.
PULSE_RATIO_SLACK = 1e-9


# ------------------------------------------------------------------------------------------
# Programming


@dataclass(frozen=True)
class ProgrammingReport:
    """Pulses sent to the devices for one update, and their energy (J)."""

    pulses_set: int
    pulses_reset: int
    pulses_dropped: int
    energy_j: float

    @property
    def pulses(self) -> int:
        return self.pulses_set + self.pulses_reset


class ConductanceProgrammer:
    """Turns desired weight changes into pulses on the device pairs (see the module docstring)."""

    def __init__(self, params: ProgrammingParams | None = None, *, rounding: str = "stochastic",
                 policy: str = "reset-then-set", seed: int = 0):
        self.params = params or ProgrammingParams()
        self.rounding = check_choice("rounding", rounding, ROUNDINGS)
        self.policy = check_choice("policy", policy, POLICIES)
        self.seed = seed
        self.reset_rng()

    def reset_rng(self) -> None:
        """Restart the stochastic-rounding stream, so that a rerun draws the same pulses."""
        self.rng = np.random.default_rng(self.seed)

    def describe(self) -> dict:
        return {"delta_g_per_pulse_s": self.params.delta_g_per_pulse_s,
                "e_pulse_j": self.params.e_pulse_j, "rounding": self.rounding,
                "policy": self.policy, "seed": self.seed}

    def program(self, circuit: NetworkCircuit, delta_weights, delta_biases
                ) -> tuple[NetworkCircuit, ProgrammingReport]:
        """Apply ΔW_k (n_{k+1} × n_k) and Δb_k to every crossbar; returns the reprogrammed
        circuit and what it cost. A crossbar without a bias row ignores its Δb."""
        g_pos_new, g_neg_new = [], []
        totals = np.zeros(3, dtype=np.int64)
        for xbar, dw, db in zip(circuit.crossbars, delta_weights, delta_biases):
            physical = physical_update(xbar.has_bias_row, dw, db)
            g_pos, g_neg, counts = self.program_array(xbar.g_pos_s, xbar.g_neg_s, physical,
                                                      circuit.device)
            g_pos_new.append(g_pos)
            g_neg_new.append(g_neg)
            totals += counts
        pulses_set, pulses_reset, dropped = (int(t) for t in totals)
        energy = (pulses_set + pulses_reset) * self.params.e_pulse_j
        return (circuit.with_conductances(g_pos_new, g_neg_new),
                ProgrammingReport(pulses_set, pulses_reset, dropped, energy))

    def program_array(self, g_pos_s: np.ndarray, g_neg_s: np.ndarray, delta_w: np.ndarray, device
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """New (G⁺, G⁻) of one crossbar for a physical-orientation ΔW (rows × columns), and
        the counts [SET pulses, RESET pulses, dropped pulses]. Only weights that get at least
        one pulse are touched (single-example updates are sparse)."""
        step = self.params.delta_g_per_pulse_s
        flat_delta = np.ascontiguousarray(delta_w).reshape(-1)
        nonzero = np.flatnonzero(flat_delta)
        requested = self.pulse_counts(np.abs(flat_delta[nonzero]) * (device.g_unit_s / step))
        where = nonzero[requested > 0]
        wanted = requested[requested > 0]
        g_pos = g_pos_s.copy()
        g_neg = g_neg_s.copy()
        if where.size == 0:
            return g_pos, g_neg, np.zeros(3, dtype=np.int64)
        up = flat_delta[where] > 0
        # The device that raises W when potentiated, and its partner.
        flat_pos, flat_neg = g_pos.reshape(-1), g_neg.reshape(-1)  # views of the fresh copies
        raiser = np.where(up, flat_pos[where], flat_neg[where])
        partner = np.where(up, flat_neg[where], flat_pos[where])
        if self.policy == "reset-then-set":
            n_reset = np.minimum(wanted, pulses_to_reach(partner - device.g_min_s, step))
            partner = np.maximum(partner - n_reset * step, device.g_min_s)
        else:
            n_reset = np.zeros_like(wanted)
        n_set = np.minimum(wanted - n_reset, pulses_to_reach(device.g_max_s - raiser, step))
        raiser = np.minimum(raiser + n_set * step, device.g_max_s)
        flat_pos[where] = np.where(up, raiser, partner)
        flat_neg[where] = np.where(up, partner, raiser)
        dropped = wanted - n_reset - n_set
        return g_pos, g_neg, np.array([n_set.sum(), n_reset.sum(), dropped.sum()], dtype=np.int64)

    def pulse_counts(self, pulses_real: np.ndarray) -> np.ndarray:
        """Whole pulse counts from real-valued ones, by the configured rounding."""
        if self.rounding == "nearest":
            return np.rint(pulses_real).astype(np.int64)
        whole = np.floor(pulses_real)
        whole += self.rng.random(pulses_real.shape) < (pulses_real - whole)
        return whole.astype(np.int64)


def physical_update(has_bias_row: bool, delta_w: np.ndarray, delta_b: np.ndarray | None) -> np.ndarray:
    """ΔW (n_out × n_in) and Δb in the crossbar's orientation: rows = inputs (+ bias row)."""
    physical = np.asarray(delta_w, dtype=np.float64).T
    if has_bias_row:
        bias = np.zeros(physical.shape[1]) if delta_b is None else np.asarray(delta_b, dtype=np.float64)
        physical = np.vstack([physical, bias[None, :]])
    return physical


def pulses_to_reach(headroom_s: np.ndarray, step_s: float) -> np.ndarray:
    """Pulses that still move a device with ``headroom_s`` left before its bound (the last one
    may move it only part of a step)."""
    return np.maximum(np.ceil(headroom_s / step_s - PULSE_RATIO_SLACK), 0).astype(np.int64)


# ------------------------------------------------------------------------------------------
# Algorithms: what one learning step does on the circuit


@dataclass
class StepResult:
    """What one learning step did.

    ``energy_j`` has the settle terms (``ENERGY_TERMS``: crossbar, neuron, amplifier_static,
    capacitor; summed over the step's settles), ``programming``, and whatever else an algorithm
    spends (e.g. a sample-and-hold); their sum is the energy of the update.
    """

    circuit: NetworkCircuit  # after programming
    v_final_v: np.ndarray  # compartment voltages the next example starts from
    settling_time_s: float  # 0.1 % band, summed over the step's settles
    settling_time_1pct_s: float
    energy_j: dict[str, float]
    programming: ProgrammingReport
    fixed_point_error_v: float  # max |v − reference fixed point|; NaN if there is none
    settled: bool
    settles: dict[str, SettleResult] = field(default_factory=dict)  # by phase name


class LearningAlgorithm(Protocol):
    name: str

    def neuron_kind(self) -> NeuronKind: ...

    def macs_per_update(self, circuit: NetworkCircuit) -> int: ...

    def step(self, circuit: NetworkCircuit, x: np.ndarray, y: np.ndarray,
             v0_v: np.ndarray | None) -> StepResult: ...


def update_macs(circuit: NetworkCircuit) -> int:
    """Multiply-accumulates of the weight update: one product δ_j s̄_i per device pair."""
    return int(sum(x.n_rows * x.n_columns for x in circuit.crossbars))


class DualPropagation:
    """Single-phase DP learning step (DESIGN §2.1, §3.3, §3.4).

    One settle with the output nudged by β∇ℓ; the dyads then hold the DP fixed point. The
    update is DP's local Hebbian rule read from the settled compartments,
    ΔW_{k−1} = lr · δ_k s̄_{k−1}ᵀ / β and Δb_{k−1} = lr · δ_k / β (post-synaptic difference ×
    pre-synaptic mean), programmed as pulses. The fixed-point error compares the settled
    voltages with the closed-form DP fixed point (``dp_fixed_point``) of the weights the
    conductances realise, in volts.
    """

    name = "dp"

    def __init__(self, *, variant: str = "dp", alpha: float = 0.5, lr: float = 0.02,
                 programmer: ConductanceProgrammer | None = None, settle_options: dict | None = None):
        check_choice("variant", variant, VARIANTS)
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        self.variant = variant
        self.alpha = alpha
        self.lr = float(lr)
        self.programmer = programmer or ConductanceProgrammer()
        self.settle_options = dict(settle_options or {})
        self._kind = dyad_neuron(variant, alpha)  # validates alpha

    def neuron_kind(self) -> NeuronKind:
        return self._kind

    def macs_per_update(self, circuit: NetworkCircuit) -> int:
        return circuit.macs_per_settle + update_macs(circuit)

    def describe(self) -> dict:
        return {"algo": self.name, "variant": self.variant, "alpha": self.alpha, "lr": self.lr,
                "programming": self.programmer.describe()}

    def step(self, circuit, x, y, v0_v=None) -> StepResult:
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        y = np.atleast_2d(np.asarray(y, dtype=np.float64))
        result = settle(circuit, x, y, v0=v0_v, allow_unsettled=True, **self.settle_options)
        states = result.dyad_states(x)
        error_v = self.fixed_point_error_v(circuit, x, y, result)
        delta_w, delta_b = dp_weight_update(states, circuit.beta)
        programmed, report = self.programmer.program(
            circuit, [self.lr * d for d in delta_w], [self.lr * d for d in delta_b])
        energy = result.energy.as_dict(0)
        energy[PROGRAMMING_TERM] = report.energy_j
        return StepResult(
            circuit=programmed, v_final_v=result.v_final_v[0].copy(),
            settling_time_s=float(result.settling_time_s[0]),
            settling_time_1pct_s=float(result.settling_time_1pct_s[0]),
            energy_j=energy, programming=report, fixed_point_error_v=error_v,
            settled=bool(result.settled[0]), settles={"single": result})

    def fixed_point_error_v(self, circuit, x, y, result: SettleResult) -> float:
        """max over compartments of |v − V_r·s_DP| (V); NaN when the digital sweeps diverge
        (e.g. variant ``dp`` with α ≠ ½, which has no stable fixed point)."""
        weights, biases = circuit.effective_weights()
        config = DPConfig(variant=self.variant, alpha=self.alpha, beta=circuit.beta,
                          activation=circuit.activation, loss=circuit.loss)
        try:
            reference = dp_fixed_point(weights, biases, x, y, config)
        except RuntimeError:
            return math.nan
        settled = result.dyad_states(x)
        worst = 0.0
        for k in range(1, circuit.n_layers + 1):
            worst = max(worst,
                        float(np.max(np.abs(settled.s_plus[k] - reference.s_plus[k]))),
                        float(np.max(np.abs(settled.s_minus[k] - reference.s_minus[k]))))
        return worst * circuit.neuron.v_read_v


# ------------------------------------------------------------------------------------------
# The loop


HISTORY_FIELDS = ("loss", "settling_time_s", "settling_time_1pct_s", "energy_per_update_j",
                  "fixed_point_error_v", "pulses", "pulses_set", "pulses_reset",
                  "pulses_dropped", "settled")


@dataclass
class LearningHistory:
    """Per-example records of a run (arrays of length N, SI units).

    ``energy_j[term]`` holds each energy term per example; ``energy_per_update_j`` their sum.
    ``loss`` is the loss of the feed-forward prediction of the network the conductances
    realise, before that example's update.
    """

    loss: np.ndarray
    settling_time_s: np.ndarray
    settling_time_1pct_s: np.ndarray
    energy_j: dict[str, np.ndarray]
    fixed_point_error_v: np.ndarray
    pulses_set: np.ndarray
    pulses_reset: np.ndarray
    pulses_dropped: np.ndarray
    settled: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(self.loss.size)

    @property
    def pulses(self) -> np.ndarray:
        return self.pulses_set + self.pulses_reset

    @property
    def energy_per_update_j(self) -> np.ndarray:
        return np.sum([v for v in self.energy_j.values()], axis=0)

    def window(self) -> int:
        """Examples averaged by :meth:`loss_first` / :meth:`loss_last`: 10 % of N, at least 1."""
        return max(1, math.ceil(0.1 * self.n_samples))

    def loss_first(self) -> float:
        """Mean loss over the first 10 % of the examples (single examples are noisy)."""
        return float(np.mean(self.loss[: self.window()]))

    def loss_last(self) -> float:
        """Mean loss over the last 10 % of the examples."""
        return float(np.mean(self.loss[-self.window():]))

    def median_update_energy_j(self) -> dict[str, float]:
        """Energy breakdown of the median update: the middle example by total energy, or the
        mean of the two middle ones when N is even, so the parts sum to the median total."""
        order = np.argsort(self.energy_per_update_j, kind="stable")
        n = order.size
        middle = order[[n // 2]] if n % 2 else order[[n // 2 - 1, n // 2]]
        return {term: float(np.mean(values[middle])) for term, values in self.energy_j.items()}

    def column(self, name: str) -> np.ndarray:
        """A per-example column by name (``energy_<term>_j`` for an energy term)."""
        if name.startswith("energy_") and name.endswith("_j") and name[7:-2] in self.energy_j:
            return self.energy_j[name[7:-2]]
        return np.asarray(getattr(self, name))

    def columns(self) -> dict[str, np.ndarray]:
        """Every per-example column, in a stable order (for CSV and dumps)."""
        names = list(HISTORY_FIELDS[:4]) + [f"energy_{t}_j" for t in self.energy_j] + list(HISTORY_FIELDS[4:])
        return {name: self.column(name) for name in names}


class CrossbarLearning:
    """Present examples one at a time to a circuit, settling and programming after each.

    Configure with the initial circuit and an algorithm, call :meth:`run` with the inputs
    (activities in [0, 1], (N, n_0)) and targets ((N, n_L)), then read:

    - ``history_``: :class:`LearningHistory`, per-example records;
    - ``circuit_``: the circuit after the last update;
    - ``first_step_``: the :class:`StepResult` of the first example (its settled states);
    - ``wall_time_s_``: wall time of the run; ``first_step_wall_time_s_``: of its first step
      (which includes the solver's one-time compilation or cache load).

    Every run starts from the configured circuit and reset compartments, with the programming
    generator reseeded, so runs are reproducible.
    """

    def __init__(self, circuit: NetworkCircuit, algorithm: LearningAlgorithm):
        kind = algorithm.neuron_kind()
        if circuit.neuron_kind != kind:
            raise ValueError(f"the circuit's neurons are {circuit.neuron_kind.name!r}, "
                             f"but algorithm {algorithm.name!r} needs {kind.name!r}")
        self.circuit = circuit
        self.algorithm = algorithm

    def run(self, inputs, targets, *, on_step: Callable[[int, StepResult], None] | None = None
            ) -> "CrossbarLearning":
        """Learn from every example in order; ``on_step(i, result)`` is called after each
        (e.g. to advance a progress bar)."""
        inputs = np.asarray(inputs, dtype=np.float64)
        targets = np.asarray(targets, dtype=np.float64)
        n = self._check_examples(inputs, targets)
        programmer = getattr(self.algorithm, "programmer", None)
        if programmer is not None:
            programmer.reset_rng()
        records = _Recorder(n)
        circuit, v_state = self.circuit, None
        start = time.perf_counter()
        for i in range(n):
            x, y = inputs[i:i + 1], targets[i:i + 1]
            loss = prediction_loss(circuit, x, y)
            step = self.algorithm.step(circuit, x, y, v_state)
            if i == 0:
                self.first_step_ = step
                self.first_step_wall_time_s_ = time.perf_counter() - start
            records.add(i, loss, step)
            circuit, v_state = step.circuit, step.v_final_v[None, :]
            if on_step is not None:
                on_step(i, step)
        self.wall_time_s_ = time.perf_counter() - start
        self.circuit_ = circuit
        self.history_ = records.history()
        return self

    def _check_examples(self, inputs: np.ndarray, targets: np.ndarray) -> int:
        sizes = self.circuit.layer_sizes
        if inputs.ndim != 2 or inputs.shape[1] != sizes[0]:
            raise ValueError(f"inputs must have shape (N, {sizes[0]}), got {inputs.shape}")
        if targets.shape != (inputs.shape[0], sizes[-1]):
            raise ValueError(f"targets must have shape ({inputs.shape[0]}, {sizes[-1]}), got {targets.shape}")
        if inputs.shape[0] < 1:
            raise ValueError("at least one example is required")
        return inputs.shape[0]


def prediction_loss(circuit: NetworkCircuit, x: np.ndarray, y: np.ndarray) -> float:
    """Loss of the feed-forward prediction of the weights the conductances realise."""
    weights, biases = circuit.effective_weights()
    output = feedforward(weights, biases, x, circuit.activation)[-1]
    return float(loss_value(circuit.loss, output, y)[0])


class _Recorder:
    """Fills the per-example arrays of a run."""

    def __init__(self, n: int):
        self.n = n
        self.scalars = {name: np.zeros(n) for name in
                        ("loss", "settling_time_s", "settling_time_1pct_s", "fixed_point_error_v")}
        self.counts = {name: np.zeros(n, dtype=np.int64) for name in
                       ("pulses_set", "pulses_reset", "pulses_dropped")}
        self.settled = np.zeros(n, dtype=bool)
        self.energy: dict[str, np.ndarray] = {}

    def add(self, i: int, loss: float, step: StepResult) -> None:
        self.scalars["loss"][i] = loss
        self.scalars["settling_time_s"][i] = step.settling_time_s
        self.scalars["settling_time_1pct_s"][i] = step.settling_time_1pct_s
        self.scalars["fixed_point_error_v"][i] = step.fixed_point_error_v
        self.counts["pulses_set"][i] = step.programming.pulses_set
        self.counts["pulses_reset"][i] = step.programming.pulses_reset
        self.counts["pulses_dropped"][i] = step.programming.pulses_dropped
        self.settled[i] = step.settled
        for term, value in step.energy_j.items():
            self.energy.setdefault(term, np.zeros(self.n))[i] = value

    def history(self) -> LearningHistory:
        # Settle terms first, programming last, any algorithm-specific term in between.
        order = [t for t in ENERGY_TERMS if t in self.energy]
        order += [t for t in self.energy if t not in order and t != PROGRAMMING_TERM]
        order += [PROGRAMMING_TERM] if PROGRAMMING_TERM in self.energy else []
        return LearningHistory(energy_j={t: self.energy[t] for t in order}, settled=self.settled,
                               **self.scalars, **self.counts)
