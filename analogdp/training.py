"""Training on the crossbar at dataset scale: epochs, test accuracy through the circuit, and the
digital reference with the same online schedule (DESIGN §9; the table of many runs is
:mod:`analogdp.training_table`).

:func:`train_on_crossbar` presents the training split E times (each epoch in a seeded order, the
same order generator the digital classifiers use), one example per update, and after every epoch
measures the validation and test accuracy of the network *as the crossbar realises it*: the
forward settle of every example with the programmed conductances (equilibrium engine or ODE, as
the configuration says). :func:`train_digital_reference` trains digital DP and BP with the same
schedule: batch 1, plain SGD with the same learning rate and β, float weights, the same initial
weights and the same example order.

Two loops, one result:

- ``settle="equilibrium"``: each example's settled state comes from the equilibrium engine in
  activity units (:func:`analogdp.equilibrium.dp_equilibrium`, EP's fixed points), and its update
  is programmed in place (:func:`analogdp.programming.program_outer_in_place` for rank-1 updates,
  the dense programmer for EP's upper crossbars), with the same programmer, draws and arithmetic
  as the ODE path. Every ``ode_every``-th example is also integrated by the ODE from the state
  the previous example left (settling time and energy are then *sampled*), and the equilibrium
  state is compared with the ODE's (``equilibrium_check_max_dev_v``; the samples where they
  differ by more than ``EQUILIBRIUM_AGREEMENT_FRACTION``·V_r are counted in
  ``equilibrium_check_disagreements``: where a settle has several stable equilibria, the engine
  and the ODE can end in different ones, DESIGN §9).
- ``settle="ode"``: every update is the algorithm's own step (:mod:`analogdp.algorithms`).

Update time: the programmer's (DESIGN §7.5): per crossbar, row by row, each row one RESET train
and one SET train as long as the row's largest counts, × the pulse width; crossbars update at once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from .checkpoint import Checkpoint
from .data import fashion_mnist_available, load_dataset, one_hot
from .digital.dp import DPConfig
from .digital.functional import loss_value
from .errors import NotSettledError
from .experiment import ExperimentConfig, build_algorithm, build_circuit, fit_images, initial_weights
from .names import EP_ALGORITHMS, FREE_PHASE, PROGRAMMING_TERM, SAMPLE_HOLD_TERM, SETTLE_ENERGY_TERMS

# Forward settles of the evaluation run in chunks of this many examples (bounded memory).
EVAL_CHUNK = 1000
DIGITAL_ALGORITHMS = ("dp", "bp")


# ------------------------------------------------------------------------------------------
# Data


@dataclass
class TrainingData:
    """The three splits, inputs fitted to the first crossbar's rows, labels as integers."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    description: str


def load_training_data(config: ExperimentConfig) -> TrainingData:
    """The dataset's train/validation/test splits (validation: 10 % of the training images, drawn
    from the seed), fitted to ``config.layers[0]`` inputs; ``train_examples`` keeps the first N
    of the training split. Raises :class:`analogdp.data.DataError` for missing or damaged files."""
    name = config.dataset
    if name == "auto":
        name = "fashion-mnist" if config.layers[0] == 784 and fashion_mnist_available(config.data_dir) else "digits"
    dataset = load_dataset(name, config.data_dir, seed=config.seed)
    side = 8 if name == "digits" else int(round(math.sqrt(dataset.n_features)))
    splits = {}
    for split in ("train", "val", "test"):
        images = getattr(dataset, f"x_{split}")
        labels = getattr(dataset, f"y_{split}")
        if split == "train" and config.train_examples is not None:
            images, labels = images[:config.train_examples], labels[:config.train_examples]
        if side * side == config.layers[0]:  # already the crossbar's inputs: no second copy in memory
            splits[split] = (images, f"{side}x{side} pixels", labels)
        else:
            splits[split] = (*fit_images(images, side, config.layers[0]), labels)
    how = splits["train"][1]
    description = (f"{name} ({dataset.source}): {len(splits['train'][2])} train / {len(splits['val'][2])} "
                   f"validation / {len(splits['test'][2])} test, {how}")
    return TrainingData(splits["train"][0], splits["train"][2], splits["val"][0], splits["val"][2],
                        splits["test"][0], splits["test"][2], name, description)


class EpochOrder:
    """The example order of every epoch: a permutation per epoch from ``default_rng([seed, 1])``,
    as :class:`analogdp.digital.train.MLPClassifierBase` draws it (an object rather than a
    closure, so that a checkpoint can carry its generator)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng([seed, 1])

    def __call__(self, n: int) -> np.ndarray:
        return self.rng.permutation(n)


# ------------------------------------------------------------------------------------------
# Results


@dataclass
class TrainingResult:
    """Per-epoch records and per-example columns of one training run (SI units)."""

    config: ExperimentConfig
    algo: str
    data: TrainingData
    epochs: list[dict]
    columns: dict[str, np.ndarray]
    wall_time_s: float
    final_circuit: object = None
    digital: dict = field(default_factory=dict)  # algorithm → list of epoch records
    resumed_wall_s: float = 0.0  # wall time of the earlier segments of a run resumed from a checkpoint

    def summary(self) -> dict:
        """The ``training`` object of the JSON summary (keys in the README)."""
        last = self.epochs[-1]
        out = {
            "algo": self.algo, "settle": self.config.settle, "ode_every": self.config.ode_every,
            "epochs": len(self.epochs), "dataset": self.data.name, "data": self.data.description,
            "train_examples": int(len(self.data.y_train)),
            "test_accuracy": last.get("test_accuracy"), "val_accuracy": last.get("val_accuracy"),
            "energy_per_update_j": last["energy_per_update_j"],
            "settling_time_s": last["settling_time_s"],
            "update_time_s": last["update_time_s"],
            "energy_per_epoch_j": last["energy_j"],
            "wall_time_s": self.wall_time_s,
            "per_epoch": self.epochs,
        }
        if self.digital:
            out["digital_reference"] = {algo: {"test_accuracy": records[-1].get("test_accuracy"),
                                               "val_accuracy": records[-1].get("val_accuracy"),
                                               "wall_time_s": float(sum(r["wall_time_s"] for r in records)),
                                               "per_epoch": records}
                                        for algo, records in self.digital.items()}
        return out

    def to_csv(self, path, provenance: dict | None = None) -> None:
        from .report import write_csv

        write_csv(path, self.columns, provenance=provenance)


class _Columns:
    """Per-example records over all epochs."""

    def __init__(self, n: int, terms):
        self.n, self.i = n, 0
        self.values = {name: np.full(n, np.nan) for name in (
            "loss", "settling_time_s", "settling_time_1pct_s", "update_time_s",
            *(f"energy_{t}_j" for t in terms), "equilibrium_dev_v")}
        self.ints = {name: np.zeros(n, dtype=np.int64) for name in (
            "epoch", "sample", "label", "correct", "pulses_set", "pulses_reset", "pulses_dropped",
            "ode_unsettled")}

    def add(self, **record) -> None:
        for name, value in record.items():
            (self.ints if name in self.ints else self.values)[name][self.i] = value
        self.i += 1

    def table(self) -> dict[str, np.ndarray]:
        return {**{k: self.ints[k] for k in ("epoch", "sample", "label")}, **self.values,
                **{k: v for k, v in self.ints.items() if k not in ("epoch", "sample", "label")}}


def _epoch_record(epoch: int, columns: _Columns, start: int, stop: int, terms, wall_s: float,
                  sampled: bool, programming_terms=(PROGRAMMING_TERM,), agreement_v: float = math.inf) -> dict:
    """Means over the epoch's updates. Settle terms come from the settles that were integrated
    (all with the ODE; the sampled ones with the equilibrium engine, then scaled to the epoch);
    ``programming_terms`` (pulses, line drivers, refresh) are known for every update. Sampled
    updates whose equilibrium and ODE states differ by more than ``agreement_v`` are counted."""
    v = {k: a[start:stop] for k, a in columns.values.items()}
    n = stop - start
    integrated = ~np.isnan(v["settling_time_s"])
    # a settle that stopped short has no settling time, and its energy is not a settle's
    stopped_short = columns.ints["ode_unsettled"][start:stop] > 0
    measured = integrated & ~stopped_short
    count = int(np.count_nonzero(measured))

    def mean(a):
        return float(np.mean(a[measured])) if count else math.nan

    per_update = {t: (float(np.mean(v[f"energy_{t}_j"])) if t in programming_terms else mean(v[f"energy_{t}_j"]))
                  for t in terms}
    record = {
        "epoch": epoch, "examples": n,
        "train_loss": float(np.mean(v["loss"])),
        "train_accuracy": float(np.mean(columns.ints["correct"][start:stop])),
        "energy_per_update_j": float(sum(per_update.values())),
        "energy_per_update_breakdown_j": per_update,
        "energy_j": float(sum(per_update.values())) * n,
        "energy_breakdown_j": {t: e * n for t, e in per_update.items()},
        "settling_time_s": mean(v["settling_time_s"]),
        "settling_time_std_s": float(np.std(v["settling_time_s"][measured])) if count else math.nan,
        "settling_time_1pct_s": mean(v["settling_time_1pct_s"]),
        "settle_figures": ("sampled" if sampled else "every update") if count else "none",
        "settles_integrated": int(np.count_nonzero(integrated)),
        "update_time_s": float(np.mean(v["update_time_s"])),
        "update_time_std_s": float(np.std(v["update_time_s"])),
        "pulses_per_update": float(np.mean(columns.ints["pulses_set"][start:stop]
                                           + columns.ints["pulses_reset"][start:stop])),
        "wall_time_s": wall_s, "examples_per_s": n / wall_s if wall_s > 0 else math.nan,
    }
    if not sampled:
        record["updates_unsettled"] = int(np.count_nonzero(stopped_short))
    if sampled:
        record["energy_per_update_std_j"] = float(np.std(sum(
            v[f"energy_{t}_j"][measured] for t in terms if t not in programming_terms))) if count else math.nan
        checked = ~np.isnan(v["equilibrium_dev_v"])
        dev = v["equilibrium_dev_v"][checked]
        # an ODE stopped short of equilibrium is not a different equilibrium: counted on its own
        unsettled = columns.ints["ode_unsettled"][start:stop][checked] > 0
        record["equilibrium_check_max_dev_v"] = float(dev.max()) if dev.size else math.nan
        record["equilibrium_checks"] = int(dev.size)
        record["equilibrium_check_disagreements"] = int(np.count_nonzero((dev > agreement_v) & ~unsettled))
        record["ode_samples_unsettled"] = int(np.count_nonzero(unsettled))
    return record


# ------------------------------------------------------------------------------------------
# Accuracy through the circuit


def circuit_accuracy(circuit, inputs: np.ndarray, labels: np.ndarray, settler) -> float:
    """Fraction of examples whose forward settle (no nudge, from reset) with the programmed
    conductances puts the largest output (the output neurons' row signal) on the label."""
    if len(labels) == 0:
        return math.nan
    kind = circuit.neuron_kind
    start = circuit.compartment_offset(circuit.n_layers)
    n_out, m = circuit.layer_sizes[-1], circuit.compartments_per_neuron
    correct = 0
    for first in range(0, len(labels), EVAL_CHUNK):
        x = inputs[first:first + EVAL_CHUNK]
        settled = settler(circuit, x, None, allow_unsettled=True)
        if not np.all(settled.settled):
            # an unsettled state is no prediction: the accuracy would be made up
            stuck = np.flatnonzero(~np.asarray(settled.settled))
            raise NotSettledError(f"the forward settle of {stuck.size} of {len(x)} evaluation examples did not "
                                  f"settle (example {first + stuck[0]}: {settled.not_settled_reason(int(stuck[0]))}); "
                                  f"the accuracy through the circuit cannot be read")
        voltages = settled.v_final_v
        output = voltages[:, start:start + n_out * m].reshape(len(x), n_out, m) @ np.asarray(kind.row_weights)
        correct += int(np.count_nonzero(output.argmax(axis=1) == labels[first:first + EVAL_CHUNK]))
    return correct / len(labels)


# ------------------------------------------------------------------------------------------
# The crossbar


@dataclass
class _RunState:
    """Everything a crossbar training run carries from one example to the next: what a
    checkpoint saves. ``position`` is the next example's place in ``permutation`` (this epoch's
    order; None before the epoch has drawn it); the wall times are those of the run's earlier,
    interrupted segments."""

    loop: object
    columns: _Columns | None
    order: EpochOrder
    epoch: int = 1
    permutation: np.ndarray | None = None
    position: int = 0
    epoch_first: int = 0
    records: list = field(default_factory=list)
    wall_before_s: float = 0.0
    epoch_wall_before_s: float = 0.0


def train_on_crossbar(config: ExperimentConfig, data: TrainingData | None = None, *, algo: str | None = None,
                      progress: Callable[[int, int], object] | None = None,
                      checkpoint: Checkpoint | None = None) -> TrainingResult:
    """Train ``algo`` (default ``config.algo``) on the crossbar for ``config.epochs`` epochs
    (module docstring). ``progress(epoch, n)`` may return a callable advanced by one per example
    (e.g. a tqdm bar's ``update``). With ``checkpoint``, the run's state is saved every
    ``checkpoint.every_s`` and after each epoch's updates, and a run that finds its own
    checkpoint goes on from there, to the same numbers as a run never stopped (the caller removes
    the checkpoint once the result is written)."""
    from .equilibrium import EQUILIBRIUM_AGREEMENT_FRACTION, EquilibriumSettler

    if config.epochs is None:
        raise ValueError("epochs must be set to train over a dataset")
    data = load_training_data(config) if data is None else data
    algo = config.algo if algo is None else algo
    run_key = {"algo": algo, "config": config.to_dict(), "train_examples": len(data.y_train),
               "data": data.description}
    state = checkpoint.load(run_key) if checkpoint is not None else None
    n_train = len(data.y_train)
    equilibrium = config.settle == "equilibrium"
    if state is None:
        algorithm = build_algorithm(config, algo)
        circuit = build_circuit(config, algorithm)  # prepares the programmer: devices drawn, generators seeded
        loop = (_EquilibriumLoop(config, algorithm, circuit, algo)
                if equilibrium and programs_in_closed_form(algorithm) else _StepLoop(config, algorithm, circuit))
        state = _RunState(loop, None, EpochOrder(config.seed))
    algorithm = state.loop.algorithm
    # the programmer's terms: pulses, and line drivers or refresh where the scheme has them
    programming_terms = tuple(algorithm.programmer.energy_terms())
    terms = list(SETTLE_ENERGY_TERMS) + ([SAMPLE_HOLD_TERM] if algo in EP_ALGORITHMS else []) + list(programming_terms)
    if state.columns is None:
        state.columns = _Columns(n_train * config.epochs, terms)
    targets = one_hot(data.y_train, config.layers[-1])
    agreement_v = EQUILIBRIUM_AGREEMENT_FRACTION * config.neuron.v_read_v
    evaluator = EquilibriumSettler(lead_in_tau=config.lead_in_tau) if equilibrium else algorithm.settler
    resumed_wall_s = state.wall_before_s
    started = time.perf_counter() - resumed_wall_s
    columns = state.columns

    def save():
        now = time.perf_counter()
        state.wall_before_s = now - started
        state.epoch_wall_before_s = now - epoch_started
        checkpoint.save(run_key, state)

    while state.epoch <= config.epochs:
        epoch = state.epoch
        if state.permutation is None:
            state.permutation, state.position, state.epoch_first = state.order(n_train), 0, columns.i
            state.epoch_wall_before_s = 0.0
        tick = progress(epoch, n_train) if progress is not None else None
        if tick is not None and state.position:
            tick(state.position)
        epoch_started = time.perf_counter() - state.epoch_wall_before_s
        while state.position < n_train:
            i = int(state.permutation[state.position])
            sample = state.loop.step(data.x_train[i:i + 1], targets[i:i + 1], columns.i)
            columns.add(epoch=epoch, sample=i, label=data.y_train[i],
                        correct=int(sample.pop("prediction") == data.y_train[i]), **sample)
            state.position += 1
            if tick is not None:
                tick(1)
            if checkpoint is not None and state.position < n_train and checkpoint.due():
                save()
        if checkpoint is not None:
            save()  # the epoch's updates are done: a kill during the evaluation keeps them
        wall = time.perf_counter() - epoch_started
        record = _epoch_record(epoch, columns, state.epoch_first, columns.i, terms, wall, equilibrium,
                               programming_terms, agreement_v)
        if not np.isfinite(record["train_loss"]):
            raise RuntimeError(f"{algo}: training diverged in epoch {epoch} (non-finite loss); "
                               f"lower lr or beta")
        if config.evaluate:
            trained = state.loop.circuit()
            record["val_accuracy"] = circuit_accuracy(trained, data.x_val, data.y_val, evaluator)
            record["test_accuracy"] = circuit_accuracy(trained, data.x_test, data.y_test, evaluator)
        state.records.append(record)
        state.epoch, state.permutation = epoch + 1, None
    return TrainingResult(config, algo, data, state.records, columns.table(), time.perf_counter() - started,
                          state.loop.circuit(), resumed_wall_s=resumed_wall_s)


def settles_stopped_short(settles: dict) -> int:
    """How many of an update's ODE settles (phase → SettleResult) stopped short of equilibrium."""
    return sum(int(np.count_nonzero(~result.settled)) for result in settles.values())


def programs_in_closed_form(algorithm) -> bool:
    """Whether the in-place loop applies: noise-free ideal devices without drift, per-device
    updates (the closed-form arithmetic of the programmer). Other devices and schemes go through
    the algorithm's own step, with whichever settle engine the configuration names."""
    from .circuit.devices import IdealDevice

    programmer = algorithm.programmer
    return (programmer.device_model == IdealDevice() and programmer.update == "per-device"
            and programmer.time_per_update_s is None)


class _StepLoop:
    """Every update is the algorithm's own step (its settler: the ODE, or the equilibrium engine
    with ODE samples every ``ode_every``)."""

    def __init__(self, config, algorithm, circuit):
        algorithm.reset()
        self.algorithm, self.circuit_, self.v_state = algorithm, circuit, None
        self.every = config.ode_every

    def circuit(self):
        return self.circuit_

    def step(self, x, y, index: int) -> dict:
        from .digital.dp import feedforward

        circuit = self.circuit_
        settler = self.algorithm.settler
        if hasattr(settler, "check_with_ode"):
            settler.check_with_ode = self.every is not None and index % self.every == 0
            checks_before = len(settler.checks)
        step = self.algorithm.step(circuit, x, y, self.v_state)
        if FREE_PHASE in step.settles:  # EP predicts with its free phase
            output = step.settles[FREE_PHASE].v_final_v[:, circuit.compartment_offset(circuit.n_layers):]
            output = output / circuit.neuron.v_read_v
        else:  # DP's prediction, the forward settle, is the feed-forward pass of the realised weights
            weights, biases = circuit.effective_weights()
            output = feedforward(weights, biases, x, circuit.activation)[-1]
        self.circuit_, self.v_state = step.circuit, step.v_final_v[None, :]
        report = step.programming
        record = {"prediction": int(output[0].argmax()),
                  "loss": float(loss_value(circuit.loss, output, y)[0]),
                  "settling_time_s": step.settling_time_s, "settling_time_1pct_s": step.settling_time_1pct_s,
                  "update_time_s": report.update_time_s,
                  **{f"energy_{t}_j": v for t, v in step.energy_j.items()},
                  "pulses_set": report.pulses_set, "pulses_reset": report.pulses_reset,
                  "pulses_dropped": report.pulses_dropped}
        if hasattr(settler, "check_with_ode"):
            if len(settler.checks) > checks_before:
                record["equilibrium_dev_v"] = max(c.max_abs_dev_v for c in settler.checks[checks_before:])
                record["ode_unsettled"] = sum(not c.ode_settled for c in settler.checks[checks_before:])
        else:  # every settle is the ODE's: the update was read from wherever it stopped
            record["ode_unsettled"] = settles_stopped_short(step.settles)
        return record


class _EquilibriumLoop:
    """Settled states from the equilibrium engine, updates programmed in place (module docstring)."""

    def __init__(self, config: ExperimentConfig, algorithm, circuit, algo: str):
        algorithm.reset()
        self.config, self.algorithm, self.initial = config, algorithm, circuit
        self.ep = algo in EP_ALGORITHMS
        self.g_pos = [x.g_pos_s.copy() for x in circuit.crossbars]
        self.g_neg = [x.g_neg_s.copy() for x in circuit.crossbars]
        self.physical = [(gp - gn) / circuit.device.g_unit_s for gp, gn in zip(self.g_pos, self.g_neg)]
        self.has_bias = [x.has_bias_row for x in circuit.crossbars]
        self.v_r = circuit.neuron.v_read_v
        self.pulse_width_s = algorithm.programmer.coincidence.pulse_width_s
        self.previous = None  # the last example's settled layer states (where the next one starts)
        if not self.ep:
            from .equilibrium import _dyad_config

            self.dp_config: DPConfig = _dyad_config(circuit)
        else:
            from .digital.ep import EPConfig

            self.ep_config = EPConfig(activation=circuit.activation, loss=circuit.loss, beta=config.beta)

    def circuit(self):
        return self.initial.with_conductances([g.copy() for g in self.g_pos], [g.copy() for g in self.g_neg])

    def _weights(self):
        weights = [p[:-1].T if b else p.T for p, b in zip(self.physical, self.has_bias)]
        biases = [p[-1] if b else np.zeros(p.shape[1]) for p, b in zip(self.physical, self.has_bias)]
        return weights, biases

    def step(self, x, y, index: int) -> dict:
        every = self.config.ode_every
        sampled = every is not None and index % every == 0
        circuit_before = self.circuit() if sampled else None
        start_v = self._voltages(x) if sampled else None
        weights, biases = self._weights() if self.ep else (self.physical, None)
        if self.ep:
            output, phases, factors = self._ep_states(weights, biases, x, y)
        else:
            output, phases, factors = self._dp_states(weights, biases, x, y)
        record = {"prediction": int(output[0].argmax()),
                  "loss": float(loss_value(self.config.loss, output, y)[0])}
        if sampled:
            record.update(self._ode_sample(circuit_before, x, y, start_v, phases))
        totals, slots = self._program(factors)
        record.update(pulses_set=int(totals[0]), pulses_reset=int(totals[1]), pulses_dropped=int(totals[2]),
                      update_time_s=slots * self.pulse_width_s)
        record[f"energy_{PROGRAMMING_TERM}_j"] = (totals[0] + totals[1]) * self.algorithm.programmer.params.e_pulse_j
        return record

    # ---- settled states ---------------------------------------------------------------------
    def _dp_states(self, weights, biases, x, y):
        from .equilibrium import dp_equilibrium_physical

        states, output = dp_equilibrium_physical(tuple(self.physical), all(self.has_bias), x, y, self.dp_config)
        self.previous = states
        scale = 1.0 / self.config.beta  # dp_weight_update's 1/(β·batch), batch 1
        factors = []
        for k in range(len(self.physical)):
            post = states.difference(k + 1)[0]
            post *= scale
            factors.append(("outer", post, states.mean(k)[0]))
        return output, {"single": states}, factors

    def _ep_states(self, weights, biases, x, y):
        from .digital.ep import ep_nudged_fixed_point, ep_weight_update, ep_zero_states
        from .equilibrium import CLOSED_FORM_TOL

        beta, config = self.config.beta, self.ep_config
        start = ep_zero_states(weights, x) if self.previous is None else [x] + self.previous[1:]
        zeros = np.zeros_like(y)
        lead = self._lead_in(x, y)
        free = ep_nudged_fixed_point(weights, biases, x, zeros, config, 0.0, start_states=lead(start, 0.0),
                                     tol=CLOSED_FORM_TOL)
        plus = ep_nudged_fixed_point(weights, biases, x, y, config, beta, start_states=lead(free, beta),
                                     tol=CLOSED_FORM_TOL)
        phases = {"free": free, "nudged_plus_beta": plus}
        if self.algorithm.centered:
            minus = ep_nudged_fixed_point(weights, biases, x, y, config, -beta, start_states=lead(plus, -beta),
                                          tol=CLOSED_FORM_TOL)
            phases["nudged_minus_beta"] = minus
            lower, upper, span = minus, plus, 2.0 * beta
        else:
            lower, upper, span = free, plus, beta
        self.previous = list(phases.values())[-1]
        upper = [x] + upper[1:]
        lower = [x] + lower[1:]  # the clamped input, shared, as the circuit's update sees it
        # crossbar 0's contrast is rank one (its presynaptic layer, the input, is clamped); the
        # others are formed densely, as ep_weight_update forms them
        dws, dbs = ep_weight_update(lower[1:], upper[1:], span)
        factors = [("outer", (upper[1] - lower[1])[0] * (1.0 / span), x[0])]
        factors += [("dense", dw, db) for dw, db in zip(dws, dbs)]
        return free[-1], phases, factors

    def _lead_in(self, x, y):
        """Where each EP phase's relaxation starts: the states it is given, or with
        ``lead_in_tau`` the circuit's state after that long of its own transient from there
        (:func:`analogdp.equilibrium.lead_in`, on the present conductances)."""
        from .ep_circuit import layer_states
        from .equilibrium import lead_in

        tau = self.config.lead_in_tau
        if not tau:
            return lambda states, beta: states
        circuit = self.circuit()

        def start(states, beta):
            phase = replace(circuit, beta=beta)
            v = lead_in(phase, x, None if beta == 0.0 else y, self._phase_voltages(states)[None], tau)
            return layer_states(phase, x, v)

        return start

    # ---- programming ------------------------------------------------------------------------
    def _program(self, factors) -> np.ndarray:
        from .programming import program_outer_in_place, physical_update, row_serial_pulse_slots

        programmer, lr = self.algorithm.programmer, self.algorithm.lr
        device = self.initial.device
        totals = np.zeros(3, dtype=np.int64)
        slots = 0  # crossbars have their own drivers and update at once: the slowest sets the time
        for k, (kind, first, second) in enumerate(factors):
            if kind == "outer":
                counts = program_outer_in_place(programmer, self.g_pos[k], self.g_neg[k], first, second,
                                                lr, device, self.physical[k])
                totals += counts[:3]
                slots = max(slots, int(counts[3]))
                continue
            physical = physical_update(self.has_bias[k], lr * first, lr * second)
            g_pos, g_neg, counts = programmer.program_array(self.g_pos[k], self.g_neg[k], physical, device)
            slots = max(slots, row_serial_pulse_slots(self.g_pos[k], self.g_neg[k], g_pos, g_neg,
                                                      programmer.params.delta_g_per_pulse_s))
            self.g_pos[k][...], self.g_neg[k][...] = g_pos, g_neg
            self.physical[k][...] = (g_pos - g_neg) / device.g_unit_s
            totals += counts
        return totals, slots

    # ---- the sampled ODE settle -------------------------------------------------------------
    def _voltages(self, x) -> np.ndarray | None:
        """Compartment voltages of the state the last example left (None: reset)."""
        if self.previous is None:
            return None
        circuit = self.initial
        out = np.empty((1, circuit.n_compartments))
        for layer in range(1, circuit.n_layers + 1):
            start = circuit.compartment_offset(layer)
            n = circuit.layer_sizes[layer]
            if self.ep:
                out[:, start:start + n] = self.previous[layer] * self.v_r
            else:
                block = out[:, start:start + 2 * n].reshape(1, n, 2)
                block[:, :, 0] = self.previous.s_plus[layer] * self.v_r
                block[:, :, 1] = self.previous.s_minus[layer] * self.v_r
        return out

    def _ode_sample(self, circuit, x, y, start_v, phases) -> dict:
        """The same update's settles integrated by the ODE from the same start: time, energy, and
        the largest deviation of the ODE's settled state from the equilibrium engine's."""
        from .ep_circuit import run_phases
        from .solver import settle

        if self.ep:
            result = run_phases(circuit, x, y, centered=self.algorithm.centered, v0_v=start_v,
                                sample_hold=self.algorithm.sample_hold, allow_unsettled=True)
            settles = result.settles
            energy = result.update_energy_j(0)
            times = (float(result.settling_time_s[0]), float(result.settling_time_1pct_s[0]))
        else:
            single = settle(circuit, x, y, v0=start_v, allow_unsettled=True)
            settles = {"single": single}
            energy = single.energy.as_dict(0)
            times = (float(single.settling_time_s[0]), float(single.settling_time_1pct_s[0]))
        deviation = 0.0
        for phase, result in settles.items():
            mine = self._phase_voltages(phases[phase])
            deviation = max(deviation, float(np.max(np.abs(result.v_final_v[0] - mine))))
        return {"settling_time_s": times[0], "settling_time_1pct_s": times[1], "equilibrium_dev_v": deviation,
                "ode_unsettled": settles_stopped_short(settles),
                **{f"energy_{t}_j": v for t, v in energy.items()}}

    def _phase_voltages(self, states) -> np.ndarray:
        keep, self.previous = self.previous, states
        try:
            return self._voltages(None)[0]
        finally:
            self.previous = keep


# ------------------------------------------------------------------------------------------
# The digital reference


def train_digital_reference(config: ExperimentConfig, data: TrainingData, algo: str, *,
                            progress: Callable[[int, int], object] | None = None) -> list[dict]:
    """Digital ``algo`` (dp or bp) with the crossbar's schedule: batch 1, SGD without momentum at
    ``config.lr`` (DP: same β, variant, α), float weights from the crossbar's initial weights,
    the same epoch order; per-epoch records with validation and test accuracy."""
    from .digital.train import BPClassifier, DPClassifier

    if algo not in DIGITAL_ALGORITHMS:
        raise ValueError(f"digital reference algo must be one of {', '.join(DIGITAL_ALGORITHMS)}, got {algo!r}")
    hidden = config.layers[1:-1]
    common = dict(activation="hardsigmoid", loss=config.loss, optimizer="sgd", lr=config.lr, momentum=0.0,
                  batch_size=1, epochs=config.epochs, seed=config.seed)
    if algo == "dp":
        classifier = DPClassifier(hidden, variant=config.variant, alpha=config.alpha, beta=config.beta, **common)
    else:
        classifier = BPClassifier(hidden, **common)
    classifier.initialize(config.layers[0], np.arange(config.layers[-1]))
    weights, biases = initial_weights(config.layers, config.seed)
    for target, source in zip(classifier.network_.weights + classifier.network_.biases, weights + biases):
        target[...] = source
    records = []
    for epoch in range(1, config.epochs + 1):
        tick = progress(epoch, len(data.y_train)) if progress is not None else None
        record = classifier.train_epoch(data.x_train, data.y_train, tick)
        records.append({"epoch": epoch, "train_loss": record["train_loss_running"],
                        "train_accuracy": record["train_accuracy_running"],
                        "val_accuracy": classifier.score(data.x_val, data.y_val) if len(data.y_val) else math.nan,
                        "test_accuracy": classifier.score(data.x_test, data.y_test),
                        "wall_time_s": record["seconds"],
                        "examples_per_s": len(data.y_train) / record["seconds"]})
    return records


def train(config: ExperimentConfig, *, progress: Callable[[str, int, int], object] | None = None,
          checkpoint: Checkpoint | None = None) -> TrainingResult:
    """The crossbar run of ``config`` and, with ``digital_reference``, digital DP and BP with the
    same schedule on the same data. ``progress(label, epoch, n)`` may return a per-example tick;
    ``checkpoint`` makes the crossbar run resumable (:func:`train_on_crossbar`)."""
    data = load_training_data(config)

    def bar(label):
        return None if progress is None else (lambda epoch, n: progress(label, epoch, n))

    result = train_on_crossbar(config, data, progress=bar(f"{config.algo} crossbar"), checkpoint=checkpoint)
    if config.digital_reference:
        result.digital = {algo: train_digital_reference(config, data, algo, progress=bar(f"{algo} digital"))
                          for algo in DIGITAL_ALGORITHMS}
    return result


def training_problems(result: TrainingResult) -> list[str]:
    """What makes a finished training run's figures untrustworthy, one sentence each: updates
    programmed from settles that stopped short of equilibrium (ODE engine)."""
    unsettled = sum(r.get("updates_unsettled", 0) for r in result.epochs)
    if not unsettled:
        return []
    return [f"{unsettled} of {sum(r['examples'] for r in result.epochs)} updates were programmed from settles "
            f"that stopped short of equilibrium"]


def run_record(config: ExperimentConfig, result: TrainingResult, *, wall_time_s: float,
               provenance: dict | None = None) -> dict:
    """The JSON record of a training run: the configuration, the per-epoch figures, the wall
    time and where the run came from."""
    return {"layers": list(config.layers), "algo": config.algo, "variant": config.variant,
            "alpha": config.alpha, "beta": config.beta, "lr": config.lr, "loss": config.loss,
            "config": config.to_dict(), "training": result.summary(), "wall_time_s": wall_time_s,
            "provenance": provenance}


def epoch_table(result: TrainingResult) -> str:
    """The per-epoch figures as a plain-text table (the digital reference's rows below)."""
    from .units import si

    sampled = result.config.settle == "equilibrium"
    lines = [f"{result.data.description}",
             f"{result.algo} on the crossbar, settle {result.config.settle}"
             + (f" (settling time and settle energy sampled every {result.config.ode_every} examples)"
                if sampled and result.config.ode_every else ""),
             f"{'run':<18}{'epoch':>6}{'train loss':>12}{'val acc':>9}{'test acc':>9}{'E/update':>11}"
             f"{'E/epoch':>11}{'t settle':>11}{'t update':>11}{'ex/s':>9}{'wall':>9}"]

    def accuracy(value):
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"

    for r in result.epochs:
        lines.append(f"{'crossbar ' + result.algo:<18}{r['epoch']:>6}{r['train_loss']:>12.4g}"
                     f"{accuracy(r.get('val_accuracy')):>9}{accuracy(r.get('test_accuracy')):>9}"
                     f"{si(r['energy_per_update_j'], 'J'):>11}{si(r['energy_j'], 'J'):>11}"
                     f"{si(r['settling_time_s'], 's'):>11}{si(r['update_time_s'], 's'):>11}"
                     f"{r['examples_per_s']:>9.0f}{si(r['wall_time_s'], 's'):>9}")
    for algo, records in result.digital.items():
        for r in records:
            lines.append(f"{'digital ' + algo:<18}{r['epoch']:>6}{r['train_loss']:>12.4g}"
                         f"{accuracy(r.get('val_accuracy')):>9}{accuracy(r.get('test_accuracy')):>9}"
                         f"{'-':>11}{'-':>11}{'-':>11}{'-':>11}{r['examples_per_s']:>9.0f}"
                         f"{si(r['wall_time_s'], 's'):>9}")
    for r in result.epochs:
        if r.get("updates_unsettled"):
            lines.append(f"epoch {r['epoch']}: {r['updates_unsettled']} of {r['examples']} updates were read from a "
                         f"settle that stopped short of equilibrium (left out of the settling time and energy)")
        if r.get("equilibrium_checks"):
            lines.append(f"epoch {r['epoch']}: equilibrium engine against the ODE on {r['equilibrium_checks']} sampled "
                         f"updates: largest deviation {si(r['equilibrium_check_max_dev_v'], 'V')}, "
                         f"{r['equilibrium_check_disagreements']} ended in another stable state, "
                         f"{r['ode_samples_unsettled']} ODE settles stopped short of equilibrium")
    return "\n".join(lines)
