"""One way to run what the command lines run: configure, run, read (scikit-learn style).

    from analogdp.experiment import ExperimentConfig, run_experiment

    config = ExperimentConfig(layers=(64, 32, 10), samples=8)
    result = run_experiment(config)
    result.summary()["energy_per_update_j"]

- :class:`ExperimentConfig`: a frozen, picklable description of one experiment (network,
  algorithm, devices and periphery, data, seed). It validates itself on construction;
  ``dataclasses.replace`` makes a variant; ``to_dict`` / ``from_dict`` round-trip it through
  JSON.
- :func:`load_examples` (the examples a configuration presents), :func:`run_experiment`
  (learn from them on the circuit) → :class:`ExperimentResult` (history, initial and final
  circuit, ``summary()``, ``to_npz``, ``to_csv``), :func:`compare_algorithms` (DP, EP and
  centered EP on the same weights and examples), :func:`spice_check` (the first update's
  settles against ngspice, for DP and EP alike).
- :func:`sweep`: many configurations through any ``map`` (the builtin, an executor's, a
  distributed client's); each configuration is run in the worker and only its summary returns.
  :func:`sweep_as_completed` does the same with a map that returns futures, yielding each
  result as it finishes (``analogdp.distributed`` runs it on Dask).

Everything the run measures is in SI units; summary keys carry the unit as a suffix.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .circuit import DeviceParams, NeuronParams, ProgrammingParams, SampleHoldParams
from .circuit.devices import MODELS, DeviceModel, with_overrides
from .circuit.params import check_ranges
from .circuit.network import SCHEMES
from .circuit.presets import PRESETS, device_from_preset, parse_device_param
from .circuit.updates import UPDATE_SCHEMES, PulseCoincidenceParams
from .circuit.amplifiers import AmplifierParams
from .circuit.wires import WireParams
from .digital.dp import VARIANTS
from .digital.functional import LOSSES
from .equilibrium import SETTLE_METHODS, make_settler
from .names import ALGORITHMS, EP_ALGORITHMS
from .programming import POLICIES, ROUNDINGS
from .units import jsonable

DATASETS = ("auto", "digits", "fashion-mnist", "mnist", "random")
N_CLASSES = 10
# The examples are held in memory as float64 (N × n_0); beyond this a run is refused up front
# rather than exhausting memory part-way.
MAX_INPUT_BYTES = 2e9
# Real data: examples are drawn (seeded) from the first this many training images (the IDX
# files are read and checked whole by the data module).
IDX_POOL = 2000
# loss_first / loss_last average this fraction of the examples (single examples are noisy).
LOSS_WINDOW_FRACTION = 0.1
INIT_DESCRIPTION = "W_k uniform in ±1/sqrt(n_k), biases 0"
# The parameter dataclasses an experiment composes, by the name of its field.
PARAMETER_GROUPS = {"device": DeviceParams, "neuron": NeuronParams, "programming": ProgrammingParams,
                    "sample_hold": SampleHoldParams, "coincidence": PulseCoincidenceParams, "wires": WireParams,
                    "amplifier": AmplifierParams}
# flat options that set several fields of a parameter group at once
SHORTHAND_OPTIONS = ("r_wire_ohm", "tile")


def _option(help_text: str, **metadata) -> dict:
    return {"help": help_text, **metadata}


# ------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment. Field metadata carries the help text the command lines show."""

    layers: tuple[int, ...] = field(default=(784, 256, 10), metadata=_option(
        "full network, layer sizes from the input to the output"))
    size: tuple[int, int] | None = field(default=None, metadata=_option(
        "crossbar under study, rows x columns; one of the network's crossbars (None: the first)"))
    algo: str = field(default="dp", metadata=_option(
        "learning algorithm: dp (one settle per update), ep (free + nudged settle), "
        "ep-centered (free, +β and −β settles)", choices=ALGORITHMS))
    variant: str = field(default="dp", metadata=_option(
        "DP variant: dp (2023) or dpT (DP⊤, stable for any alpha)", choices=VARIANTS))
    alpha: float = field(default=0.5, metadata=_option(
        "dyad mean weight α in [0, 1] (variant dp needs 0.5)", check="unit_interval"))
    beta: float = field(default=0.5, metadata=_option(
        "output nudge strength β > 0, dimensionless (EP needs β < 1)", check="positive",
        range=(1e-9, 1e3)))
    lr: float = field(default=0.02, metadata=_option(
        "learning rate η > 0 of ΔW = η δ s̄ᵀ/β", check="positive", range=(1e-12, 100.0)))
    loss: str = field(default="mse", metadata=_option(
        "loss: mse (½‖s−y‖²) or ce (softmax cross-entropy)", choices=LOSSES))
    scheme: str = field(default="bidirectional", metadata=_option(
        "feedback path: bidirectional (the same devices carry W and Wᵀ) or dual-array "
        "(a transposed copy)", choices=SCHEMES))
    rounding: str = field(default="stochastic", metadata=_option(
        "pulse count rounding: stochastic (seeded, unbiased) or nearest (drops updates below "
        "half a pulse)", choices=ROUNDINGS))
    policy: str = field(default="reset-then-set", metadata=_option(
        "device that receives the pulses: reset-then-set (depress the partner device to G_min "
        "first, then potentiate) or set-only (potentiate G⁺ for ΔW > 0, G⁻ for ΔW < 0)",
        choices=POLICIES))
    dataset: str = field(default="auto", metadata=_option(
        "auto: Fashion-MNIST when installed (or in data_dir) and R = 784, else the bundled 8x8 "
        "digits resampled to R inputs; random: uniform inputs in [0, 1] with random labels",
        choices=DATASETS))
    data_dir: str | None = field(default=None, metadata=_option(
        "directory with the four IDX files (MNIST needs it; Fashion-MNIST defaults to "
        "/usr/share/datasets/fashion-mnist)"))
    samples: int = field(default=32, metadata=_option(
        "learning steps, one example each", check="positive_int"))
    seed: int = field(default=0, metadata=_option(
        "seed of the initial weights, the example order, the stochastic rounding of pulses and "
        "the device populations and noise", check="non_negative_int"))
    device_model: str | DeviceModel = field(default="ideal", metadata=_option(
        "device response model: a preset (DESIGN §7.3) or, from Python, a DeviceModel",
        choices=PRESETS, option="--device"))
    device_param: tuple = field(default=(), metadata=_option(
        "override one field of the device model, NAME=VALUE (repeatable), e.g. read_noise=0.02",
        repeat=True, option="--device-param", metavar="NAME=VALUE"))
    update: str = field(default="per-device", metadata=_option(
        "update scheme: per-device (each device its own pulse count), pulse-coincidence "
        "(stochastic row and column pulse trains of BL slots), refresh (SET-only pulses, "
        "saturated pairs refreshed)", choices=UPDATE_SCHEMES))
    time_per_update_s: float | None = field(default=None, metadata=_option(
        "time between updates, seconds, over which devices with drift_nu > 0 drift (default: no drift)",
        check="positive", metavar="S"))
    weights: str | None = field(default=None, metadata=_option(
        "NPZ file of trained weights (weight_0, bias_0, … as sims.train --save-weights and --dump "
        "write them) mapped onto the crossbar instead of the random initialisation; weights beyond "
        "±w_max are clipped (reported)"))
    amplifiers: str | None = field(default=None, metadata=_option(
        "characterised amplifier set (e.g. sky130-tt, analogdp/spice/amplifier_sets): the static power of "
        "every amplifier is the measured one of the cell that realises it instead of p_amp_static_w"))
    settle: str = field(default="ode", metadata=_option(
        "how each example's settled state is computed: ode (integrate the circuit; settling time "
        "and energy of every settle) or equilibrium (solve the circuit's steady state directly: "
        "closed form where the circuit is ideal; time and energy only where --ode-every samples)",
        choices=SETTLE_METHODS))
    ode_every: int | None = field(default=None, metadata=_option(
        "with settle equilibrium: also integrate every K-th example with the ODE, for sampled "
        "settling time and energy and a check of the equilibrium state", check="positive_int",
        metavar="K"))
    lead_in_tau: float | None = field(default=None, metadata=_option(
        "with settle equilibrium: integrate the first T τ of every settle with the ODE before solving "
        "for its equilibrium, so that where a settle has several stable states the engine ends in "
        "the one the circuit's transient reaches (DESIGN §9; 8 τ did in every case measured; "
        "default: solve from the start state)", check="positive", range=(1e-3, 1e4), metavar="T"))
    epochs: int | None = field(default=None, metadata=_option(
        "train for E passes over the dataset's training split, each in a seeded order (instead of "
        "--samples examples); per-epoch loss, accuracy, energy and times", check="positive_int",
        metavar="E"))
    train_examples: int | None = field(default=None, metadata=_option(
        "with epochs: use only the first N examples of the (seeded) training split",
        check="positive_int", metavar="N"))
    evaluate: bool = field(default=False, metadata=_option(
        "with epochs: after every epoch, test (and validation) accuracy of the network as the "
        "crossbar realises it (forward settle of every example with the programmed conductances)",
        option="--eval", flag=True))
    digital_reference: bool = field(default=False, metadata=_option(
        "with epochs: also train digital DP and BP with the same online schedule (batch 1, same "
        "lr and β, float weights, same initial weights and order)", flag=True))
    device: DeviceParams = field(default_factory=DeviceParams)
    neuron: NeuronParams = field(default_factory=NeuronParams)
    # None: (G_max − G_min)/64 of ``device`` per pulse (see :attr:`programming_params`).
    programming: ProgrammingParams | None = None
    sample_hold: SampleHoldParams = field(default_factory=SampleHoldParams)
    coincidence: PulseCoincidenceParams = field(default_factory=PulseCoincidenceParams)
    # crossbar wire resistance and tiling (DESIGN §8.1); ideal wires by default
    wires: WireParams = field(default_factory=WireParams)
    # finite sense and compartment amplifiers (DESIGN §8.2); ideal by default
    amplifier: AmplifierParams = field(default_factory=AmplifierParams)

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(int(n) for n in self.layers))
        object.__setattr__(self, "device_param", _device_overrides(self.device_param))
        if self.size is not None:
            object.__setattr__(self, "size", tuple(int(n) for n in self.size))
        if len(self.layers) < 2 or min(self.layers) < 1:
            raise ValueError(f"layers {_sizes_text(self.layers)}: needs at least two layers of "
                             f"at least one neuron")
        if self.size is not None and self.size not in self.crossbar_shapes:
            raise ValueError(f"size {_sizes_text(self.size)} is not a crossbar of layers "
                             f"{_sizes_text(self.layers)}")
        for name in ("algo", "variant", "loss", "scheme", "rounding", "policy", "dataset", "update",
                     "settle"):
            allowed = ExperimentConfig.__dataclass_fields__[name].metadata["choices"]
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        _check_number("alpha", self.alpha, lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
        _check_number("beta", self.beta, lambda v: v > 0, "positive")
        _check_number("lr", self.lr, lambda v: v > 0, "positive")
        check_ranges(self)
        _check_integer("samples", self.samples, 1)
        _check_integer("seed", self.seed, 0)
        for name in ("ode_every", "epochs", "train_examples"):
            if getattr(self, name) is not None:
                _check_integer(name, getattr(self, name), 1)
        if self.lead_in_tau is not None:
            _check_number("lead_in_tau", self.lead_in_tau, lambda v: v > 0, "positive")
            if self.settle != "equilibrium":
                raise ValueError("lead_in_tau starts the equilibrium engine from the circuit's transient; "
                                 "with settle ode every settle is the whole transient already")
        if self.ode_every is not None and self.settle != "equilibrium":
            raise ValueError("ode_every samples the ODE alongside settle equilibrium; with settle ode "
                             "every example is integrated already")
        if self.epochs is None and (self.evaluate or self.digital_reference or self.train_examples):
            raise ValueError("evaluate, digital_reference and train_examples need epochs")
        if self.epochs is not None and self.dataset == "random":
            raise ValueError("epochs need a dataset with a test split (digits, fashion-mnist, mnist)")
        if self.algo in EP_ALGORITHMS and not self.beta < 1.0:
            raise ValueError(f"beta {self.beta:g}: EP needs β below 1 (its −β output stage and the "
                             f"digital EP reference are unstable otherwise)")
        if self.dataset != "random" and self.layers[-1] != N_CLASSES:
            raise ValueError(f"dataset {self.dataset} has {N_CLASSES} classes, but the output layer "
                             f"has {self.layers[-1]} neurons (use layers ...x{N_CLASSES} or dataset random)")
        if self.dataset == "mnist" and self.data_dir is None:
            raise ValueError("dataset mnist needs data_dir, the directory with the four MNIST IDX files")
        if self.data_dir is not None and self.dataset in ("digits", "random"):
            raise ValueError(f"data_dir is read by fashion-mnist and mnist; dataset {self.dataset} reads "
                             f"no directory (drop data_dir)")
        if self.data_dir is not None and self.dataset == "auto" and self.layers[0] != 784:
            raise ValueError(f"data_dir is read by fashion-mnist and mnist, but dataset auto with "
                             f"{self.layers[0]} inputs uses the bundled digits (drop data_dir, or "
                             f"name the dataset)")
        input_bytes = self.samples * self.layers[0] * np.dtype(np.float64).itemsize
        if input_bytes > MAX_INPUT_BYTES:
            raise ValueError(f"samples {self.samples} with {self.layers[0]} inputs would hold "
                             f"{input_bytes / 1e9:.3g} GB of examples in memory (limit "
                             f"{MAX_INPUT_BYTES / 1e9:.3g} GB); use fewer samples")
        for name, cls in PARAMETER_GROUPS.items():
            value = getattr(self, name)
            if not (value is None and name == "programming") and not isinstance(value, cls):
                raise ValueError(f"{name} must be a {cls.__name__}, got {type(value).__name__}")
        if not isinstance(self.device_model, DeviceModel) and self.device_model not in PRESETS:
            raise ValueError(f"device_model must be a DeviceModel or one of {', '.join(PRESETS)}, "
                             f"got {self.device_model!r}")
        if self.amplifiers is not None:
            from .spice.sky130 import load_characterised

            load_characterised(self.amplifiers)  # ValueError naming the known sets
        if self.time_per_update_s is not None:
            _check_number("time_per_update_s", self.time_per_update_s, lambda v: v > 0, "positive")
        self.device_response  # validates the overrides (ValueError naming the parameter)
        step = self.programming_params.delta_g_per_pulse_s
        if step > self.device.g_max_s - self.device.g_min_s:
            raise ValueError(f"delta_g_per_pulse_s {step:g} exceeds the conductance range "
                             f"G_max − G_min = {self.device.g_max_s - self.device.g_min_s:g} S")

    # ---- derived --------------------------------------------------------------------------
    @property
    def crossbar_shapes(self) -> list[tuple[int, int]]:
        return list(zip(self.layers[:-1], self.layers[1:]))

    @property
    def crossbar_size(self) -> tuple[int, int]:
        """The crossbar under study (the first one unless ``size`` names another)."""
        return self.size if self.size is not None else self.crossbar_shapes[0]

    @property
    def device_response(self) -> DeviceModel:
        """The device model: the preset (translated to ``device``'s range) or the given model,
        with the ``device_param`` overrides."""
        overrides = dict(self.device_param)
        if isinstance(self.device_model, DeviceModel):
            return with_overrides(self.device_model, **overrides)
        return device_from_preset(self.device_model, self.device, **overrides)

    @property
    def programming_params(self) -> ProgrammingParams:
        """The pulses: as given, or 64 levels over the device's conductance range."""
        if self.programming is not None:
            return self.programming
        return ProgrammingParams(delta_g_per_pulse_s=(self.device.g_max_s - self.device.g_min_s) / 64)

    # ---- construction from flat options, and JSON -----------------------------------------
    @classmethod
    def from_options(cls, **options) -> "ExperimentConfig":
        """A configuration from flat keyword options: this class's own fields and the fields
        of the parameter dataclasses it composes (e.g. ``v_read_v``, ``g_min_s``), which are
        unique across them. Unknown names raise ValueError."""
        own = {f.name for f in fields(cls)} - set(PARAMETER_GROUPS)
        grouped: dict[str, dict] = {name: {} for name in PARAMETER_GROUPS}
        top = {}
        owners = {f.name: group for group, params in PARAMETER_GROUPS.items() for f in fields(params)}
        options = dict(options)
        r_wire = options.pop("r_wire_ohm", None)
        if r_wire is not None:  # one resistance per cell segment for rows and columns alike
            for name in ("r_row_segment_ohm", "r_col_segment_ohm"):
                options.setdefault(name, r_wire)
        tile = options.pop("tile", None)
        if tile is not None:  # (rows, weight columns) of one physical array
            options.setdefault("max_rows", tile[0])
            options.setdefault("max_cols", tile[1])
        for name, value in options.items():
            if name in own:
                top[name] = value
            elif name in owners:
                grouped[owners[name]][name] = value
            else:
                raise ValueError(f"unknown experiment option {name!r}")
        device = DeviceParams(**grouped["device"])
        programming = None
        if grouped["programming"]:
            programming = ProgrammingParams(**{
                "delta_g_per_pulse_s": (device.g_max_s - device.g_min_s) / 64, **grouped["programming"]})
        return cls(**top, device=device, neuron=NeuronParams(**grouped["neuron"]),
                   programming=programming, sample_hold=SampleHoldParams(**grouped["sample_hold"]),
                   coincidence=PulseCoincidenceParams(**grouped["coincidence"]),
                   wires=WireParams(**grouped["wires"]), amplifier=AmplifierParams(**grouped["amplifier"]))

    def to_dict(self) -> dict:
        """Plain JSON data (lists for tuples, dicts for the parameter dataclasses)."""
        data = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, DeviceModel):
                value = value.describe()
            elif dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
            elif f.name == "device_param":
                value = [list(pair) for pair in value]
            elif isinstance(value, tuple):
                value = list(value)
            data[f.name] = value
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ExperimentConfig":
        """The inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown experiment fields: {', '.join(sorted(unknown))}")
        values = dict(data)
        for name, params in PARAMETER_GROUPS.items():
            if isinstance(values.get(name), dict):
                values[name] = params(**values[name])
        for name in ("layers", "size"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        if isinstance(values.get("device_model"), dict):
            values["device_model"] = _model_from_description(values["device_model"])
        return cls(**values)


def _model_from_description(description: dict) -> DeviceModel:
    """The DeviceModel a ``describe()`` dict stands for."""
    description = dict(description)
    name = description.pop("model", None)
    if name not in MODELS:
        raise ValueError(f"device_model: unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name](**description)


def _device_overrides(value) -> tuple:
    """``device_param`` as a tuple of (name, value) pairs, from pairs, a dict, or
    ``NAME=VALUE`` strings (typed by the field, as on the command line)."""
    if isinstance(value, dict):
        value = list(value.items())
    if isinstance(value, str):
        value = [value]
    pairs = []
    for entry in value or ():
        if isinstance(entry, str):
            pairs.append(parse_device_param(entry))
        elif isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str):
            pairs.append((entry[0], entry[1]))
        else:
            raise ValueError(f"device_param entries must be NAME=VALUE, got {entry!r}")
    return tuple(pairs)


def _sizes_text(sizes) -> str:
    return "x".join(map(str, sizes))


def _check_number(name: str, value, accept, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not accept(value):
        raise ValueError(f"{name} must be a finite number {what}, got {value!r}")


def _check_integer(name: str, value, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be an integer ≥ {least}, got {value!r}")


# ------------------------------------------------------------------------------------------
# Data


@dataclass
class Examples:
    """The examples an experiment presents, in order."""

    inputs: np.ndarray  # (N, n_0), activities in [0, 1]
    labels: np.ndarray  # (N,)
    targets: np.ndarray  # (N, n_L), one-hot
    name: str
    description: str  # one line: what the data is and why it was chosen


def load_examples(config: ExperimentConfig) -> Examples:
    """``config.samples`` examples in a seeded order, with inputs fitted to the first
    crossbar's rows. Raises :class:`analogdp.data.DataError` for missing or damaged files."""
    from .data import fashion_mnist_available, one_hot

    n_inputs, n_classes, count = config.layers[0], config.layers[-1], config.samples
    rng = np.random.default_rng([config.seed, 1])
    name, why = config.dataset, ""
    if name == "auto":
        if config.data_dir is not None:  # a directory given is used, or its fault reported
            name, why = "fashion-mnist", f"auto: R = 784 and data_dir {config.data_dir}"
        elif n_inputs == 784 and fashion_mnist_available():
            name, why = "fashion-mnist", "auto: Fashion-MNIST is installed and R = 784"
        else:
            name = "digits"
            why = ("auto: R != 784" if n_inputs != 784 else "auto: Fashion-MNIST is not installed")
    if name == "random":
        inputs = rng.random((count, n_inputs))
        labels = rng.integers(0, n_classes, count)
        return Examples(inputs, labels, one_hot(labels, n_classes), name,
                        f"random: {count} uniform inputs in [0, 1] with random labels")
    if name == "digits":
        images, labels, side, source = _digits_training_images()
    else:
        images, labels, side, source = _idx_training_head(name, config.data_dir, max(count, IDX_POOL))
    order = _example_order(len(labels), count, rng)
    inputs, fitted = fit_images(images[order], side, n_inputs)
    description = f"{name} ({source}), {count} training examples, {fitted}"
    if why:
        description += f" [{why}]"
    return Examples(inputs, labels[order], one_hot(labels[order], n_classes), name, description)


def load_test_examples(config: ExperimentConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """The test split of the configuration's dataset, fitted to its inputs as the training
    examples are: (inputs, labels); None for random data. Digits: the 20 % test split of
    :func:`analogdp.data.load_dataset` (seed 0), the one ``sims.train`` scores on."""
    from .data import fashion_mnist_available, load_dataset

    name = config.dataset
    if name == "auto":
        fashion = config.data_dir is not None or (config.layers[0] == 784 and fashion_mnist_available())
        name = "fashion-mnist" if fashion else "digits"
    if name == "random":
        return None
    data = load_dataset(name, data_dir=config.data_dir, seed=0)
    side = math.isqrt(data.n_features)
    inputs, _ = fit_images(data.x_test, side, config.layers[0])
    return inputs, data.y_test


def circuit_predictions(algorithm, circuit, inputs: np.ndarray, batch: int = 256) -> np.ndarray:
    """Class predicted for each input by the circuit itself: the forward (free) settle from
    reset, the output neurons' voltages read as the network's output."""
    from .errors import NotSettledError

    start = circuit.compartment_offset(circuit.n_layers)
    predictions = []
    for first in range(0, len(inputs), batch):
        settled = algorithm.inference(circuit, inputs[first:first + batch])
        if not np.all(settled.settled):
            raise NotSettledError("an inference settle did not settle; its output cannot be read")
        outputs = settled.v_final_v[:, start:].reshape(len(settled.v_final_v), circuit.layer_sizes[-1], -1)
        predictions.append(outputs.mean(axis=2).argmax(axis=1))
    return np.concatenate(predictions)


def score_test_split(config: ExperimentConfig, algorithm, circuit) -> dict:
    """Test accuracy of the network the crossbar realises, through the circuit (ODE settles)
    and digitally from the realised weights; empty without a test split."""
    from .digital.dp import feedforward

    split = load_test_examples(config)
    if split is None:
        return {}
    inputs, labels = split
    weights, biases = circuit.effective_weights()
    digital = feedforward(weights, biases, inputs, circuit.activation)[-1].argmax(axis=1)
    through_circuit = circuit_predictions(algorithm, circuit, inputs)
    return {"test_examples": int(len(labels)),
            "test_accuracy_circuit": float(np.mean(through_circuit == labels)),
            "test_accuracy_digital": float(np.mean(digital == labels)),
            "test_prediction_agreement": float(np.mean(through_circuit == digital))}


def _example_order(pool: int, count: int, rng) -> np.ndarray:
    """A seeded permutation of the pool, repeated (reshuffled) when more examples are asked for."""
    rounds = [rng.permutation(pool) for _ in range(math.ceil(count / pool))]
    return np.concatenate(rounds)[:count]


def _digits_training_images():
    from .data import load_dataset

    digits = load_dataset("digits", seed=0)
    return digits.x_train, digits.y_train, 8, "scikit-learn bundled 8x8 digits"


def _idx_training_head(name: str, data_dir, count: int):
    """The first ``count`` training images and labels of an IDX dataset (the whole files are
    read and checked by the data module, then the head is kept)."""
    from .data import DataError, load_training_images

    images, labels, source = load_training_images(name, data_dir)
    images, labels = images[:count], labels[:count]
    if images.shape[1] != images.shape[2]:
        raise DataError(f"{name}: images are {images.shape[1]}x{images.shape[2]}, not square")
    side = images.shape[1]
    return images.reshape(len(images), -1) / 255.0, labels, side, source


def fit_images(images: np.ndarray, side: int, n_inputs: int) -> tuple[np.ndarray, str]:
    """Square images (flattened) fitted to ``n_inputs`` rows: resampled (bilinear) to the
    largest square side s with s² ≤ R, the remaining R − s² inputs held at 0."""
    from .data import resample_images

    target_side = math.isqrt(n_inputs)
    fitted = images if target_side == side else resample_images(images, side, target_side)
    fitted = np.clip(np.asarray(fitted, dtype=np.float64), 0.0, 1.0)
    padding = n_inputs - target_side * target_side
    how = f"{side}x{side} pixels" if target_side == side else f"resampled {side}x{side} -> {target_side}x{target_side}"
    if padding:
        fitted = np.hstack([fitted, np.zeros((len(fitted), padding))])
        how += f", {padding} inputs padded with 0"
    return fitted, how


# ------------------------------------------------------------------------------------------
# Network and algorithm


def initial_weights(layers, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """W_k uniform in ±1/sqrt(n_k) (the usual fan-in scaling, inside the ±w_max range), b_k = 0;
    the stream is ``default_rng([seed, 0])``."""
    rng = np.random.default_rng([seed, 0])
    weights = [rng.uniform(-1.0, 1.0, (n_out, n_in)) / math.sqrt(n_in)
               for n_in, n_out in zip(layers[:-1], layers[1:])]
    return weights, [np.zeros(n_out) for n_out in layers[1:]]


def sweep_layers(size: tuple[int, int], depth: int, n_classes: int = N_CLASSES) -> tuple[int, ...]:
    """The network of a size × depth sweep point: R x C x … x C x classes, ``depth`` hidden
    layers of C neurons."""
    rows, columns = size
    return (rows,) + (columns,) * depth + (n_classes,)


def build_algorithm(config: ExperimentConfig, algo: str | None = None):
    """The learning algorithm ``algo`` (default ``config.algo``) as the configuration sets it up."""
    from .algorithms import DualPropagation, EquilibriumPropagation
    from .programming import ConductanceProgrammer

    algo = config.algo if algo is None else algo
    programmer = ConductanceProgrammer(config.programming_params, rounding=config.rounding,
                                       policy=config.policy, seed=[config.seed, 2],
                                       device_model=config.device_response, update=config.update,
                                       coincidence=config.coincidence,
                                       time_per_update_s=config.time_per_update_s)
    settler = None if config.settle == "ode" else make_settler(config.settle, config.lead_in_tau)
    if algo == "dp":
        return DualPropagation(variant=config.variant, alpha=config.alpha, beta=config.beta,
                               lr=config.lr, programmer=programmer, settler=settler)
    if algo in EP_ALGORITHMS:
        return EquilibriumPropagation(centered=algo == "ep-centered", beta=config.beta, lr=config.lr,
                                      programmer=programmer, sample_hold=config.sample_hold,
                                      settler=settler)
    raise ValueError(f"algo must be one of {', '.join(ALGORITHMS)}, got {algo!r}")


def load_weights(path, layers) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(weights, biases) from an NPZ file with ``weight_k`` (n_{k+1} × n_k) and ``bias_k`` for
    every crossbar k of ``layers``; a missing array, a wrong shape or a non-finite value raises
    :class:`analogdp.data.DataError` naming the file and the array."""
    from .data import DataError

    path = Path(path)
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"weights file {path}: cannot be read as NPZ ({error})") from None
    weights, biases = [], []
    with arrays:
        for k, (n_in, n_out) in enumerate(zip(layers[:-1], layers[1:])):
            for name, shape in ((f"weight_{k}", (n_out, n_in)), (f"bias_{k}", (n_out,))):
                if name not in arrays.files:
                    raise DataError(f"weights file {path}: no array {name} (layers {_sizes_text(layers)} "
                                    f"need weight_0 … weight_{len(layers) - 2} and their biases)")
                value = np.asarray(arrays[name], dtype=np.float64)
                if name.startswith("bias") and value.size == 0:
                    value = np.zeros(n_out)  # a layer without bias, as a dump records it
                if value.shape != shape:
                    raise DataError(f"weights file {path}: {name} has shape {value.shape}, layers "
                                    f"{_sizes_text(layers)} need {shape}")
                if not np.all(np.isfinite(value)):
                    raise DataError(f"weights file {path}: {name} holds NaN or infinite values")
                (weights if name.startswith("weight") else biases).append(value)
    return weights, biases


def starting_weights(config: ExperimentConfig) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The weights the crossbar is programmed with first: loaded, or the seeded initialisation."""
    if config.weights is not None:
        return load_weights(config.weights, config.layers)
    return initial_weights(config.layers, config.seed)


def weights_report(config: ExperimentConfig) -> dict | None:
    """How loaded weights fit the devices: how many exceed ±w_max and were clipped."""
    if config.weights is None:
        return None
    weights, biases = starting_weights(config)
    values = np.concatenate([a.ravel() for a in weights + biases])
    clipped = int(np.count_nonzero(np.abs(values) > config.device.w_max))
    return {"path": str(config.weights), "parameters": int(values.size), "clipped": clipped,
            "clipped_fraction": clipped / values.size, "max_abs_weight": float(np.max(np.abs(values))),
            "w_max": config.device.w_max}


def build_circuit(config: ExperimentConfig, algorithm):
    """The initial circuit: the starting weights (loaded, or the seeded initialisation) on the
    configured devices (each within its own bounds, stuck devices stuck), with the neurons
    ``algorithm`` needs."""
    from .circuit import NetworkCircuit

    weights, biases = starting_weights(config)
    circuit = NetworkCircuit.from_weights(
        weights, biases, neuron_kind=algorithm.neuron_kind(), device=config.device,
        neuron=config.neuron, beta=config.beta, loss=config.loss, scheme=config.scheme, wires=config.wires,
        amplifier=config.amplifier)
    circuit = algorithm.programmer.prepare(circuit)
    if config.amplifiers is not None:
        from .spice.characterised import with_measured_static_power

        circuit = with_measured_static_power(circuit, config.amplifiers)
    return circuit


# ------------------------------------------------------------------------------------------
# Running


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` measured; ``summary()`` is the JSON summary."""

    config: ExperimentConfig
    examples: Examples
    algorithm: object
    initial_circuit: object
    final_circuit: object
    history: object  # analogdp.learning.LearningHistory
    first_step: object  # analogdp.algorithms.StepResult of the first example
    energy_per_inference_j: float  # NaN when the inference settle did not settle
    phase_settling_time_s: dict[str, np.ndarray]  # settle name → its time in every update, s
    timings_s: dict[str, float]  # first_step, other_steps, inference_settle
    loaded_weights: dict | None = None  # with config.weights: the fit and the test accuracy
    spice: dict | None = None  # set by spice_check()
    comparison: dict | None = None  # set by compare_algorithms(reuse=...)
    inference_not_settled: str | None = None  # why the inference settle did not settle

    @property
    def wall_time_s(self) -> float:
        return float(sum(self.timings_s.values()))

    def figures(self) -> dict:
        """What this algorithm's run measured (medians over its updates; SI units)."""
        history = self.history
        energy_per_update = float(np.median(history.energy_per_update_j))
        macs = int(self.algorithm.macs_per_update(self.initial_circuit))
        return {
            "settling_time_s": float(np.median(history.settling_time_s)),
            "settling_time_1pct_s": float(np.median(history.settling_time_1pct_s)),
            "settling_time_per_phase_s": {phase: float(np.median(times))
                                          for phase, times in self.phase_settling_time_s.items()},
            "energy_per_update_j": energy_per_update,
            "energy_breakdown_j": history.median_update_energy_j(),
            "energy_per_inference_j": self.energy_per_inference_j,
            "energy_per_mac_j": energy_per_update / macs,
            "macs_per_update": macs,
            "pulses_per_update": float(np.median(history.pulses)),
            "update_time_s": float(np.median(history.update_time_s)),
            "pulses_per_device": self.pulses_per_device(),
            "devices_at_bound_fraction": self.algorithm.programmer.bound_fractions(self.final_circuit),
            "pairs_refreshed": int(np.sum(history.pairs_refreshed)),
            "fixed_point_error_v": _max_or_nan(history.fixed_point_error_v),
            "loss_first": history.loss_first(),
            "loss_last": history.loss_last(),
            "loss_window": history.window(),
            "not_settled": int(np.sum(~history.settled)),
            # only when it happened: why the inference settle stopped short
            **({"inference_not_settled": self.inference_not_settled} if self.inference_not_settled else {}),
        }

    def pulses_per_device(self) -> dict:
        """Pulses per device pair: the mean over all pairs of one update (median update), the
        most one pair received in one update (over the run), and the median fraction of pairs
        an update touches."""
        history = self.history
        pairs = sum(x.g_pos_s.size for x in self.initial_circuit.crossbars)
        return {"mean_per_update": float(np.median(history.pulses)) / pairs,
                "max_per_update": int(np.max(history.pulses_device_max)),
                "touched_fraction": float(np.median(history.devices_touched)) / pairs,
                "pairs": int(pairs)}

    def parameters(self) -> dict:
        return {
            "seed": self.config.seed,
            "dataset": self.examples.name,
            "data": self.examples.description,
            "init": INIT_DESCRIPTION if self.config.weights is None else f"loaded from {self.config.weights}",
            "circuit": self.initial_circuit.describe(),
            "algorithm": self.algorithm.describe(),
            "loss_window_fraction": LOSS_WINDOW_FRACTION,
        }

    def summary(self, *, wall_time_s: float | None = None, timings_s: dict | None = None) -> dict:
        """The JSON summary (every key is documented in the README; SI units). The command
        line passes its own wall time and breakdown (which include start-up and data)."""
        config = self.config
        summary = {
            "size": _sizes_text(config.crossbar_size),
            "layers": list(config.layers),
            "algo": self.algorithm.name,
            "variant": config.variant,
            "alpha": config.alpha,
            "beta": config.beta,
            "lr": config.lr,
            "samples": self.history.n_samples,
            "dataset": self.examples.name,
            "device_model": self.algorithm.programmer.device_model.describe(),
            "update": self.algorithm.programmer.update,
            **self.figures(),
            "wall_time_s": self.wall_time_s if wall_time_s is None else wall_time_s,
            "wall_time_breakdown_s": dict(self.timings_s if timings_s is None else timings_s),
            "params": self.parameters(),
        }
        if len(summary["settling_time_per_phase_s"]) == 1:
            # one settle per update: its time is settling_time_s (kept in the compare object only)
            del summary["settling_time_per_phase_s"]
        ir_drop = self.ir_drop_error()
        if ir_drop is not None:
            summary["ir_drop_error"] = ir_drop
            first = next(iter(self.first_step.settles.values()))
            summary["wire_grid_sweeps"] = int(first.grid_sweeps[0])
        amplifiers = self.amplifier_limits()
        if amplifiers is not None:
            summary["amplifier_limits"] = amplifiers
        if self.loaded_weights is not None:
            summary["loaded_weights"] = self.loaded_weights
        if self.spice is not None:
            summary["spice"] = self.spice
        if self.comparison is not None:
            summary["compare"] = self.comparison
        return summary

    def ir_drop_error(self) -> list[dict] | None:
        """With resistive wires: per crossbar of the first update's (first) settle, the max and
        RMS deviation of the sensed forward and backward signals from the ideal-wire ones at the
        settled state, relative to the largest entry and the norm of the ideal signal; None with
        ideal wires."""
        first = next(iter(self.first_step.settles.values()))
        if first.ir_drop is None:
            return None
        return [{"crossbar": k, **{key: float(values[0]) for key, values in report.items()}}
                for k, report in enumerate(first.ir_drop)]

    def amplifier_limits(self) -> dict | None:
        """With finite amplifiers: per kind of stage (forward sense, backward sense, compartment) of
        the first update's circuit, the largest small-signal time constant N/(ω_t(1 + N/A0)) (s),
        the largest DC gain error N/A0, and the largest output offset N·|v_os| (V), the figures
        that bound the settling and shift the fixed point (DESIGN §8.2); None with ideal ones."""
        from .circuit.amplifiers import STAGE_KINDS, amplifier_stages

        first = next(iter(self.first_step.settles.values()))
        circuit = first.circuit
        if circuit.amplifier.ideal:
            return None
        stages = amplifier_stages(circuit)
        taus = first.amplifier_time_constants_s
        limits = {}
        for code, name in enumerate(STAGE_KINDS):
            mask = stages.kind == code
            if not np.any(mask):
                continue
            n = stages.noise_gain[mask]
            limits[name] = {"count": int(mask.sum()), "noise_gain_max": float(n.max()),
                            "time_constant_max_s": float(taus[mask].max()),
                            "gain_error_max": float((n / circuit.amplifier.a0).max()),
                            "output_offset_max_v": float(np.abs(n * stages.offset_v[mask]).max())}
        return limits

    def csv_columns(self) -> dict[str, np.ndarray]:
        """One column per recorded quantity, one row per example (algorithm, sample and label
        first)."""
        n = self.history.n_samples
        return {"algo": np.array([self.algorithm.name] * n), "sample": np.arange(n),
                "label": self.examples.labels, **self.history.columns()}

    def to_csv(self, path, provenance: dict | None = None, *, others: Iterable["ExperimentResult"] = ()) -> None:
        """The per-example CSV; ``others`` (e.g. the rest of a comparison) add their rows below,
        with an energy term an algorithm does not spend written as 0."""
        from .report import stack_columns, write_csv

        write_csv(path, stack_columns([self.csv_columns()] + [r.csv_columns() for r in others]), provenance)

    def to_npz(self, path, summary: dict | None = None) -> None:
        """Arrays a designer can reload (names in the README), written atomically."""
        from .report import write_npz

        summary = self.summary() if summary is None else summary
        examples = self.examples
        arrays = {"inputs": examples.inputs, "targets": examples.targets, "labels": examples.labels,
                  "params_json": np.array(_json_text(summary["params"])),
                  "summary_json": np.array(_json_text(summary))}
        final_w, final_b = self.final_circuit.effective_weights()
        initial_w, initial_b = self.initial_circuit.effective_weights()
        for k, xbar in enumerate(self.final_circuit.crossbars):
            arrays[f"weight_{k}"] = final_w[k]
            arrays[f"bias_{k}"] = final_b[k] if final_b[k] is not None else np.zeros(0)
            arrays[f"weight_initial_{k}"] = initial_w[k]
            arrays[f"bias_initial_{k}"] = initial_b[k] if initial_b[k] is not None else np.zeros(0)
            arrays[f"g_pos_s_{k}"] = xbar.g_pos_s
            arrays[f"g_neg_s_{k}"] = xbar.g_neg_s
        first = next(iter(self.first_step.settles.values()))
        for layer in range(1, first.circuit.n_layers + 1):
            volts = first.compartments(layer)[0] * first.circuit.neuron.v_read_v
            arrays[f"v_plus_v_{layer}"] = volts[:, 0]
            arrays[f"v_minus_v_{layer}"] = volts[:, -1]
        for name, values in self.history.columns().items():
            arrays[f"history_{name}"] = values
        write_npz(path, arrays)


def _json_text(value) -> str:
    import json

    return json.dumps(jsonable(value))


def _max_or_nan(values: np.ndarray) -> float:
    return float(np.max(values)) if not np.any(np.isnan(values)) else math.nan


def run_experiment(config: ExperimentConfig, examples: Examples | None = None, *,
                   progress: Callable[[int, object], None] | None = None,
                   algo: str | None = None) -> ExperimentResult:
    """Learn from every example (default :func:`load_examples`) with ``algo`` (default
    ``config.algo``), one at a time from the seeded initial weights; ``progress(i, step)`` is
    called after each update. Then settle the first example from reset for the energy per
    inference."""
    from .learning import CrossbarLearning

    examples = load_examples(config) if examples is None else examples
    algorithm = build_algorithm(config, algo)
    circuit = build_circuit(config, algorithm)
    learner = CrossbarLearning(circuit, algorithm)
    phase_times: dict[str, list[float]] = {}
    sampling = config.ode_every is not None and hasattr(algorithm.settler, "check_with_ode")
    if sampling:
        algorithm.settler.check_with_ode = True  # the first example, then every K-th

    def on_step(i, step):
        for phase, result in step.settles.items():
            phase_times.setdefault(phase, []).append(float(result.settling_time_s[0]))
        if sampling:
            algorithm.settler.check_with_ode = (i + 1) % config.ode_every == 0
        if progress is not None:
            progress(i, step)

    learner.run(examples.inputs, examples.targets, on_step=on_step)
    mark = time.perf_counter()
    loaded = weights_report(config)
    if loaded is not None:
        loaded.update(score_test_split(config, algorithm, circuit))
    inference = algorithm.inference(circuit, examples.inputs[:1])
    # an inference settle that stopped short is reported as such, never as an energy
    inference_not_settled = None if inference.settled[0] else inference.not_settled_reason(0)
    inference_energy_j = float(inference.energy.total[0]) if inference_not_settled is None else math.nan
    timings = {"first_step": learner.first_step_wall_time_s_,
               "other_steps": learner.wall_time_s_ - learner.first_step_wall_time_s_,
               "inference_settle": time.perf_counter() - mark}
    return ExperimentResult(config, examples, algorithm, circuit, learner.circuit_, learner.history_,
                            learner.first_step_, inference_energy_j,
                            {phase: np.asarray(times) for phase, times in phase_times.items()}, timings,
                            loaded_weights=loaded, inference_not_settled=inference_not_settled)


# ------------------------------------------------------------------------------------------
# DP against EP on the same weights and examples

RATIO_KEYS = ("settling_time_s", "settling_time_1pct_s", "energy_per_update_j",
              "energy_per_inference_j", "energy_per_mac_j", "macs_per_update")


def compare_algorithms(config: ExperimentConfig, algorithms: Iterable[str] = ALGORITHMS, *,
                       examples: Examples | None = None, reuse: ExperimentResult | None = None,
                       progress: Callable[[str], Callable[[int, object], None] | None] | None = None,
                       runs: dict | None = None) -> dict:
    """Run every algorithm on the initial weights of ``config`` and the same examples
    (reusing ``reuse``, a run of one of them); returns the ``compare`` object: per algorithm
    its figures (as in the summary), and the ratios of every algorithm's settling times and
    energies to the first one's. ``progress(algo)`` may return a per-step callback; ``runs``,
    when given, receives each algorithm's :class:`ExperimentResult`."""
    algorithms = check_comparison(config, algorithms)
    if examples is None:
        examples = reuse.examples if reuse is not None else load_examples(config)
    results = {} if reuse is None else {reuse.algorithm.name: reuse}
    for algo in algorithms:
        if algo not in results:
            results[algo] = run_experiment(config, examples, algo=algo,
                                           progress=None if progress is None else progress(algo))
    if runs is not None:
        runs.update({algo: results[algo] for algo in algorithms})
    figures = {algo: results[algo].figures() for algo in algorithms}
    reference = algorithms[0]
    return {
        "algorithms": list(algorithms),
        "reference": reference,
        "samples": len(examples.inputs),
        **figures,
        "ratios": {f"{algo}_over_{reference}": comparison_ratios(figures[algo], figures[reference])
                   for algo in algorithms[1:]},
    }


def check_comparison(config: ExperimentConfig, algorithms: Iterable[str] = ALGORITHMS) -> tuple[str, ...]:
    """The algorithms to compare, checked against the configuration (EP needs β < 1)."""
    algorithms = tuple(algorithms)
    for algo in algorithms:
        if algo not in ALGORITHMS:
            raise ValueError(f"algorithms must be among {', '.join(ALGORITHMS)}, got {algo!r}")
    if any(a in EP_ALGORITHMS for a in algorithms) and not config.beta < 1.0:
        raise ValueError(f"beta {config.beta:g}: EP needs β below 1 (its −β output stage and the "
                         f"digital EP reference are unstable otherwise)")
    return algorithms


def comparison_ratios(figures: dict, reference: dict) -> dict:
    """Ratios (dimensionless) of one algorithm's figures to the reference's, named after the
    figure without its unit suffix; energy terms under ``energy_breakdown`` (NaN where the
    reference spends nothing on a term, e.g. DP's sample-and-hold)."""
    ratios = {_without_unit(key): ratio(figures[key], reference[key]) for key in RATIO_KEYS}
    terms = list(reference["energy_breakdown_j"]) + [
        t for t in figures["energy_breakdown_j"] if t not in reference["energy_breakdown_j"]]
    ratios["energy_breakdown"] = {term: ratio(figures["energy_breakdown_j"].get(term, 0.0),
                                              reference["energy_breakdown_j"].get(term, 0.0))
                                  for term in terms}
    return ratios


def _without_unit(key: str) -> str:
    return re.sub(r"_(s|j)$", "", key)


def ratio(value: float, reference: float) -> float:
    """value / reference, NaN when the reference is zero."""
    return value / reference if reference else math.nan


# ------------------------------------------------------------------------------------------
# SPICE

# Keys of a cross-check kept in the summary's "spice" object (documented in the README).
SPICE_KEYS = ("max_abs_dev_v", "final_abs_dev_v", "settling_time_s", "settling_time_numba_s",
              "energy_j", "energy_numba_j", "wall_time_s", "wall_time_numba_s", "ngspice_version",
              "t_stop_s", "tolerances", "passed", "failures")


def spice_tolerances(circuit):
    """The cross-check tolerances, whose voltage bounds are stated for V_r = 0.2 V, scaled to
    this circuit's V_r (relative bounds unchanged)."""
    from .spice import TOLERANCES

    scale = circuit.neuron.v_read_v / 0.2
    return dataclasses.replace(TOLERANCES, max_abs_dev_v=TOLERANCES.max_abs_dev_v * scale,
                               final_abs_dev_v=TOLERANCES.final_abs_dev_v * scale)


def estimate_spice_seconds(config: ExperimentConfig, algo: str | None = None, *,
                           transistor_level: bool = False) -> float:
    """Estimated ngspice time of :func:`spice_check` (``transistor_level``:
    :func:`transistor_spice_check`) for this configuration, s."""
    from .algorithms import spice_window
    from .spice import estimate_ngspice_seconds

    algorithm = build_algorithm(config, algo)
    circuit = build_circuit(config, algorithm)
    if transistor_level:
        from .spice.transistor_check import TRANSISTOR_WINDOW_TAU, estimate_transistor_seconds

        return estimate_transistor_seconds(circuit, TRANSISTOR_WINDOW_TAU * circuit.neuron.tau_s)
    t_step = spice_window(circuit)[1]
    return float(sum(estimate_ngspice_seconds(circuit, window, t_step_s=t_step)
                     for window in algorithm.spice_windows_s(circuit)))


def export_netlist(config: ExperimentConfig, examples: Examples, path, *, title_prefix: str = "analogdp",
                   algo: str | None = None, interactive: bool = False, transistor_level: bool = False) -> None:
    """The netlist of the first settle of the first example, initial weights, from reset:
    DP's single nudged settle, or EP's free phase. ``interactive``: without the batch control
    block, for the ngspice prompt."""
    from .algorithms import spice_window
    from .spice import SpiceOptions, write_netlist

    algorithm = build_algorithm(config, algo)
    circuit = build_circuit(config, algorithm)
    t_stop, t_step = spice_window(circuit)
    targets = algorithm.netlist_targets(examples.targets[0])
    phase = "nudged" if targets is not None else "free phase (no nudge)"
    if transistor_level:
        if interactive:
            raise ValueError("interactive and transistor_level netlists cannot be combined yet")
        from .spice.transistor_netlist import write_transistor_netlist

        write_transistor_netlist(circuit, examples.inputs[0], targets, path, t_stop_s=t_stop, t_step_s=t_step,
                                 title=f"{title_prefix}: first example, {phase}, initial weights, from reset, "
                                       "SKY130 transistor level",
                                 device_model=algorithm.programmer.device_model.describe())
        return
    write_netlist(circuit, examples.inputs[0], targets, path, t_stop_s=t_stop, t_step_s=t_step,
                  title=f"{title_prefix}: first example, {phase}, initial weights, from reset",
                  device_model=algorithm.programmer.device_model.describe(),
                  options=SpiceOptions(interactive=interactive))


def spice_check_keeping_results(result: ExperimentResult, *, runner: str = "subprocess",
                                timeout_s: float | None = None, transistor_level: bool = False) -> str | None:
    """:func:`spice_check` (``transistor_level``: :func:`transistor_spice_check`), except that a
    missing or failing ngspice marks the ``spice`` section failed (with ngspice's words) and
    returns the message instead of raising: the learning run's results stay whole and can
    still be written."""
    from .errors import NgspiceError, NgspiceNotFound

    try:
        if transistor_level:
            transistor_spice_check(result, timeout_s=timeout_s)
        else:
            spice_check(result, runner=runner, timeout_s=timeout_s)
    except (NgspiceError, NgspiceNotFound) as error:
        result.spice = failed_spice_section(str(error))
        return str(error)
    return None


def failed_spice_section(message: str) -> dict:
    """The ``spice`` object of a cross-check that could not run (ngspice missing or failed)."""
    section = dict.fromkeys(SPICE_KEYS)
    section.update(passed=False, failures=[f"ngspice: {message}"], error=message)
    return section


def ngspice_timeout_s(estimate_s: float) -> float:
    """A generous bound on one ngspice run from its estimate: ten times it plus a minute (the
    estimate is calibrated to ±50 %; a run beyond this is hung, not slow)."""
    return 10.0 * estimate_s + 60.0


def spice_check(result: ExperimentResult, *, runner: str = "subprocess", timeout_s: float | None = None) -> dict:
    """ngspice against the numba solver on every settle of the first example (initial weights,
    from reset; EP: each nudged phase from the state the previous one settled to). Returns the
    summary's ``spice`` object and stores it in ``result.spice``. With several settles the
    top-level figures combine them (worst deviation; times and energies summed, as the phases
    run in sequence) and ``phases`` holds each one's."""
    circuit = result.initial_circuit
    checks = result.algorithm.spice_checks(circuit, result.examples.inputs[0],
                                           result.examples.targets[0], runner=runner, timeout_s=timeout_s,
                                           tolerances=spice_tolerances(circuit))
    phases = {}
    for phase, check in checks.items():
        report = check.as_dict()
        phases[phase] = {key: jsonable(report[key]) for key in SPICE_KEYS}
    if len(phases) == 1:
        result.spice = next(iter(phases.values()))
        return result.spice
    first = next(iter(phases.values()))
    combined = {key: max(p[key] for p in phases.values()) for key in ("max_abs_dev_v", "final_abs_dev_v")}
    combined.update({key: sum(p[key] for p in phases.values()) for key in (
        "settling_time_s", "settling_time_numba_s", "energy_j", "energy_numba_j", "wall_time_s",
        "wall_time_numba_s", "t_stop_s")})
    combined.update(ngspice_version=first["ngspice_version"], tolerances=first["tolerances"],
                    passed=all(p["passed"] for p in phases.values()),
                    failures=[f"{phase}: {failure}" for phase, p in phases.items() for failure in p["failures"]],
                    phases=phases)
    result.spice = combined
    return combined


def check_transistor_level(config: ExperimentConfig) -> None:
    """ValueError when the transistor-level check cannot run ``config``: the cells realise DP's dyad
    network in the bidirectional scheme with ideal wires."""
    if config.algo != "dp":
        raise ValueError(f"the transistor-level check runs DP's dyad network; algo is {config.algo!r}")
    if config.scheme != "bidirectional" or not config.wires.ideal:
        raise ValueError("the transistor-level check runs the bidirectional scheme with ideal wires")


def transistor_spice_check(result: ExperimentResult, *, timeout_s: float | None = None,
                           netlist_path=None) -> dict:
    """The first example's nudged DP settle (initial weights, from reset) at transistor level
    (SKY130 cells, :mod:`analogdp.spice.transistor_check`) against every available reference ODE:
    ``ideal``, ``transfer-curve`` and ``macromodel``. One ngspice run serves them all. The verdict
    (``passed``, ``failures``) is the macromodel's. Returns the summary's ``spice`` object and
    stores it in ``result.spice``."""
    from .spice.transistor_check import TRANSISTOR_WINDOW_TAU, compare_with_reference, run_transistor_level

    check_transistor_level(result.config)
    circuit = result.initial_circuit
    x = result.examples.inputs[0]
    y = result.algorithm.netlist_targets(result.examples.targets[0])
    tau = circuit.neuron.tau_s
    references = ("ideal", "transfer-curve", "macromodel")
    primary = "macromodel"
    run = run_transistor_level(circuit, x, y, t_stop_s=TRANSISTOR_WINDOW_TAU * tau, t_step_s=tau / 10,
                               timeout_s=timeout_s, netlist_path=netlist_path)
    checks = {reference: compare_with_reference(circuit, x, y, run, reference=reference)
              for reference in references}
    main_check = checks[primary]
    section = {
        "transistor_level": True, "corner": run.corner, "primary_reference": primary,
        "t_stop_s": main_check.t_stop_s, "wall_time_s": run.wall_time_s,
        "supply_energy_j": run.supply_energy_j, "final_abs_dev_v": main_check.final_abs_dev_v,
        "max_abs_dev_v": None, "passed": main_check.passed(), "failures": main_check.failures(),
        "references": {reference: jsonable(check.as_dict()) for reference, check in checks.items()},
    }
    result.spice = section
    return section


# ------------------------------------------------------------------------------------------
# Many configurations


def experiment_summary(config: ExperimentConfig) -> dict:
    """Run one configuration and return its summary (a top-level function, so that process
    pools and distributed schedulers can ship it to their workers)."""
    return run_experiment(config).summary()


def timed_comparison(config: ExperimentConfig) -> dict:
    """DP, EP and centered EP on one configuration: ``compare`` (the compare object) and
    ``wall_time_s`` (of the whole comparison)."""
    started = time.perf_counter()
    comparison = compare_algorithms(config)
    return {"compare": comparison, "wall_time_s": time.perf_counter() - started}


def sweep(configs: Iterable[ExperimentConfig], *, map: Callable = map,
          task: Callable[[ExperimentConfig], dict] = experiment_summary) -> Iterator[dict]:
    """``task`` (default: run and summarise) on every configuration through ``map``: the builtin
    (serial), a ``concurrent.futures`` executor's ``map``, or any map that returns results in
    the order of ``configs``. Returns an iterator over the results, as ``map`` delivers them
    (``list(sweep(...))`` to wait for all)."""
    return iter(map(task, _checked_configs(configs)))


def sweep_as_completed(configs: Iterable[ExperimentConfig], *, map: Callable, as_completed: Callable,
                       task: Callable[[ExperimentConfig], dict] = experiment_summary,
                       on_error: Callable[[int, BaseException], object] | None = None
                       ) -> Iterator[tuple[int, object]]:
    """``task`` on every configuration through a ``map`` that returns futures (a distributed
    client's ``map``, or ``lambda f, xs: [pool.submit(f, x) for x in xs]``), yielding
    ``(index, result)`` in the order the futures finish (``as_completed`` of the same
    library), so that results can be recorded as they arrive. A task that raises ends the
    iteration with its exception, unless ``on_error(index, exception)`` gives what to yield
    in its place."""
    configs = _checked_configs(configs)
    futures = list(map(task, configs))
    if len(futures) != len(configs):
        raise ValueError(f"map returned {len(futures)} futures for {len(configs)} configurations")
    index_of = {id(future): i for i, future in enumerate(futures)}
    for future in as_completed(futures):
        index = index_of[id(future)]
        try:
            result = future.result()
        except Exception as error:  # the task's own exception, re-raised by the future
            if on_error is None:
                raise
            result = on_error(index, error)
        yield index, result


def _checked_configs(configs: Iterable[ExperimentConfig]) -> list[ExperimentConfig]:
    configs = list(configs)
    for config in configs:
        if not isinstance(config, ExperimentConfig):
            raise TypeError(f"sweep takes ExperimentConfig objects, got {type(config).__name__}")
    return configs
