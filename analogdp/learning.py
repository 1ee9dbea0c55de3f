"""The learning loop: examples presented one at a time to the crossbar circuit (DESIGN §3.4).

:class:`CrossbarLearning` (configure → ``run`` → read ``history_``): each example settles from
the compartment voltages the previous one left (the first from reset, all zero), then its
update is programmed. What happens in one step is the job of an *algorithm*
(:mod:`analogdp.algorithms`: DP's single settle, EP's free and nudged settles); the pulses are
the job of the programmer (:mod:`analogdp.programming`). The loop itself records, per example,
the loss of the feed-forward prediction before the update and everything the step reports.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .algorithms import LearningAlgorithm, StepResult
from .circuit import NetworkCircuit
from .digital.dp import feedforward
from .digital.functional import loss_value
from .names import PROGRAMMING_TERM, SETTLE_ENERGY_TERMS

HISTORY_FIELDS = ("loss", "settling_time_s", "settling_time_1pct_s", "energy_per_update_j",
                  "fixed_point_error_v", "pulses", "pulses_set", "pulses_reset",
                  "pulses_dropped", "settled", "update_time_s", "pulses_device_max", "devices_touched",
                  "pairs_refreshed")


@dataclass
class LearningHistory:
    """Per-example records of a run (arrays of length N, SI units).

    ``energy_j[term]`` holds each energy term per example; ``energy_per_update_j`` their sum.
    ``loss`` is the loss of the feed-forward prediction of the network the conductances
    realise, before that example's update. ``update_time_s`` is the time the hardware takes to
    program the update, ``pulses_device_max`` the most pulses one device pair received in it,
    ``devices_touched`` the pairs that received any, ``pairs_refreshed`` the one-directional
    pairs refreshed after it.
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
    update_time_s: np.ndarray
    pulses_device_max: np.ndarray
    devices_touched: np.ndarray
    pairs_refreshed: np.ndarray

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
        if algorithm.beta is not None and algorithm.beta != circuit.beta:
            raise ValueError(f"the circuit's beta is {circuit.beta!r}, but algorithm "
                             f"{algorithm.name!r} was configured with {algorithm.beta!r}")
        self.circuit = circuit
        self.algorithm = algorithm

    def run(self, inputs, targets, *, on_step: Callable[[int, StepResult], None] | None = None
            ) -> "CrossbarLearning":
        """Learn from every example in order; ``on_step(i, result)`` is called after each
        (e.g. to advance a progress bar)."""
        inputs = np.asarray(inputs, dtype=np.float64)
        targets = np.asarray(targets, dtype=np.float64)
        n = self._check_examples(inputs, targets)
        self.algorithm.reset()
        records = _Recorder(n)
        circuit, v_state = self.circuit, None
        start = time.perf_counter()
        for i in range(n):
            x, y = inputs[i:i + 1], targets[i:i + 1]
            loss = prediction_loss(circuit, x, y)
            step = self.algorithm.step(circuit, x, y, v_state)
            check_finite(i, loss, step)
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


def check_finite(index: int, loss: float, step: StepResult) -> None:
    """Stop the run at the first non-finite figure (a run never reports NaN as a result; the
    fixed-point error alone may be NaN, meaning the digital reference has no fixed point)."""
    from .errors import NonFiniteError

    figures = {"loss": loss, "settling time": step.settling_time_s,
               "1 % settling time": step.settling_time_1pct_s,
               **{f"{term} energy": value for term, value in step.energy_j.items()}}
    if step.settles and all(np.all(np.isnan(r.t_final_s)) for r in step.settles.values()):
        # solved by the equilibrium engine, not integrated: no transient, so no settling time or
        # settle energy to check (NaN there means "not measured")
        figures = {name: value for name, value in figures.items()
                   if name == "loss" or not (math.isnan(value) and ("settling" in name or name.split()[0]
                                                                   in SETTLE_ENERGY_TERMS))}
    for name, value in figures.items():
        if not math.isfinite(value):
            raise NonFiniteError(f"example {index}: the {name} is {value} (non-finite); the run was "
                                 f"stopped — check the learning rate, β and the device parameters")
    if not np.all(np.isfinite(step.v_final_v)):
        raise NonFiniteError(f"example {index}: a compartment voltage is non-finite; the run was stopped")


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
                        ("loss", "settling_time_s", "settling_time_1pct_s", "fixed_point_error_v",
                         "update_time_s")}
        self.counts = {name: np.zeros(n, dtype=np.int64) for name in
                       ("pulses_set", "pulses_reset", "pulses_dropped", "pulses_device_max",
                        "devices_touched", "pairs_refreshed")}
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
        self.scalars["update_time_s"][i] = step.programming.update_time_s
        for name in ("pulses_device_max", "devices_touched", "pairs_refreshed"):
            self.counts[name][i] = getattr(step.programming, name)
        self.settled[i] = step.settled
        for term, value in step.energy_j.items():
            self.energy.setdefault(term, np.zeros(self.n))[i] = value

    def history(self) -> LearningHistory:
        # Settle terms first, programming last, any algorithm-specific term in between.
        order = [t for t in SETTLE_ENERGY_TERMS if t in self.energy]
        order += [t for t in self.energy if t not in order and t != PROGRAMMING_TERM]
        order += [PROGRAMMING_TERM] if PROGRAMMING_TERM in self.energy else []
        return LearningHistory(energy_j={t: self.energy[t] for t in order}, settled=self.settled,
                               **self.scalars, **self.counts)
