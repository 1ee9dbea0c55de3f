"""python -m sims.crossbar: single-phase dual-propagation learning on resistive crossbars.

Presents N examples one at a time to the circuit of DESIGN §3; each settles from the state the
previous one left, then the weight update is programmed as conductance pulses. Reports the
settling time, the energy per update (with its breakdown), the energy per MAC, the error of the
settled state against the closed-form DP fixed point, and whether the loss falls. See the
README section "python -m sims.crossbar" for every option and JSON key, and ``--help``.

Fast failure by design: options and output paths are checked before any data is read or any
circuit is simulated, and the heavy imports (the numba solver, matplotlib, the SPICE package)
happen only once the options are known to be good.
"""

from __future__ import annotations

import time

STARTED_S = time.perf_counter()  # before the imports below, for the wall-time breakdown

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import numpy as np  # noqa: E402

from sims.cli import (  # noqa: E402
    SPICE_LONG_RUN_S, OneLineParser, UsageError, attach_dash_values, layer_sizes, non_negative_float, non_negative_int,
    positive_float, positive_int, print_error, size_pair, unit_interval_float)

if TYPE_CHECKING:
    from analogdp.circuit import DeviceParams, NeuronParams, ProgrammingParams, SampleHoldParams

PROG = "python -m sims.crossbar"
DATASET_CHOICES = ("auto", "digits", "fashion-mnist", "mnist", "random")
N_CLASSES = 10
DEFAULT_SIZE = "784x256"
DEFAULT_LR = 0.02
DEFAULT_BETA = 0.5
# --spice-check refuses (without --force) networks whose ngspice run is estimated above this.
# The examples are held in memory as float64 (N × R); beyond this a run is refused up front
# rather than exhausting memory part-way.
MAX_INPUT_BYTES = 2e9
# The SPICE transient spans this many compartment time constants τ = R_m C_m (200 ns at the
# default τ = 10 ns; the circuit settles in about 8 τ), sampled at τ/10 (1 ns by default).
SPICE_WINDOW_TAU = 20.0
SPICE_STEP_TAU = 0.1
# Real data: examples are drawn (seeded) from the first this many training images (the IDX
# files are read and checked whole by the data module).
IDX_POOL = 2000
# --compare runs these on the same weights and examples; ratios are taken against the first.
COMPARED_ALGORITHMS = ("dp", "ep", "ep-centered")
EP_ALGORITHMS = ("ep", "ep-centered")
PLOT_SUFFIXES = (".png", ".pdf", ".svg")


# ------------------------------------------------------------------------------------------
# Option parsing: every value is checked here (argument types of sims.cli), with a message
# that names the option.


def build_parser() -> OneLineParser:
    from analogdp.learning import POLICIES, ROUNDINGS

    parser = OneLineParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Single-phase dual-propagation (DP) learning on resistive crossbar arrays.\n"
            "Presents --samples examples one at a time; each settles from the state the previous\n"
            "one left, then the update ΔW = lr·δ s̄ᵀ/β is programmed as conductance pulses.\n"
            "Reports settling time, energy per update with its breakdown, energy per MAC, the\n"
            "error against the closed-form DP fixed point, and the loss before/after learning.\n"
            "--algo ep / ep-centered runs equilibrium propagation on the same crossbars instead\n"
            "(free phase, sample-and-hold, one or two nudged phases); --compare runs DP, EP and\n"
            "centered EP on the same weights and examples and tabulates them side by side.\n"
            "All quantities are SI (s, J, V, S, Ω, F, W)."),
        epilog=(
            "Initial weights: uniform in ±1/sqrt(n_in) per layer from --seed, biases 0, mapped\n"
            "to conductance pairs (one device of a pair at G_min). Exit status: 0 done, 1 the\n"
            "run or the SPICE check failed, 2 bad input. Example:\n"
            f"  {PROG} --size 784x256 --samples 200 --json results/run.json --plot run.png"))
    net = parser.add_argument_group("network and algorithm")
    net.add_argument("--size", type=size_pair, default=None, metavar="RxC",
                     help=f"crossbar under study, rows x columns (default {DEFAULT_SIZE}); the "
                          "network is R x C x 10 unless --layers is given")
    net.add_argument("--layers", type=layer_sizes, default=None, metavar="N0xN1x...",
                     help="full network, layer sizes from the input to the output (default R x C x "
                          "10); --size must then be one of its crossbars")
    net.add_argument("--algo", choices=sorted(ALGORITHM_BUILDERS), default="dp",
                     help="learning algorithm: dp (one settle per update), ep (free + nudged "
                          "settle), ep-centered (free, +β and −β settles) (default dp)")
    net.add_argument("--compare", action="store_true",
                     help="also run the other algorithms of dp, ep, ep-centered on the same weights "
                          "and examples; prints a comparison table, JSON gets a 'compare' object "
                          "(EP needs --beta below 1)")
    net.add_argument("--variant", choices=("dp", "dpT"), default="dp",
                     help="DP variant: dp (2023) or dpT (DP⊤, stable for any alpha) (default dp)")
    net.add_argument("--alpha", type=unit_interval_float, default=0.5,
                     help="dyad mean weight α in [0, 1] (default 0.5; variant dp needs 0.5)")
    net.add_argument("--beta", type=positive_float, default=DEFAULT_BETA,
                     help=f"output nudge strength β > 0, dimensionless (default {DEFAULT_BETA})")
    net.add_argument("--lr", type=positive_float, default=DEFAULT_LR,
                     help=f"learning rate η > 0 of ΔW = η δ s̄ᵀ/β (default {DEFAULT_LR})")
    net.add_argument("--loss", choices=("mse", "ce"), default="mse",
                     help="loss: mse (½‖s−y‖²) or ce (softmax cross-entropy) (default mse)")
    net.add_argument("--seed", type=non_negative_int, default=0,
                     help="seed of the initial weights, the example order and the stochastic "
                          "rounding of pulses (default 0)")
    dev = parser.add_argument_group("devices and periphery (defaults: analogdp.circuit.params)")
    dev.add_argument("--v-read-v", type=positive_float, default=0.2, metavar="V",
                     help="read voltage V_r of activity 1, volts (default 0.2)")
    dev.add_argument("--g-min-s", type=positive_float, default=10e-6 / 17, metavar="S",
                     help="lowest device conductance, siemens (default 5.88e-07: 10 µS / on-off 17)")
    dev.add_argument("--g-max-s", type=positive_float, default=10e-6, metavar="S",
                     help="highest device conductance, siemens (default 1e-05)")
    dev.add_argument("--w-max", type=positive_float, default=1.0, metavar="W",
                     help="weight realised by the full conductance swing, dimensionless (default 1)")
    dev.add_argument("--r-m-ohm", type=positive_float, default=100e3, metavar="OHM",
                     help="compartment drive resistor R_m, ohms (default 1e5)")
    dev.add_argument("--c-m-f", type=positive_float, default=100e-15, metavar="F",
                     help="compartment capacitance C_m, farads (default 1e-13; τ = R_m C_m = 10 ns)")
    dev.add_argument("--p-amp-w", type=non_negative_float, default=1e-6, metavar="W",
                     help="static power of each amplifier / line driver, watts (default 1e-06)")
    dev.add_argument("--delta-g-s", type=positive_float, default=None, metavar="S",
                     help="conductance step of one programming pulse, siemens (default "
                          "(G_max − G_min)/64, 1.47e-07 with the default range)")
    dev.add_argument("--e-pulse-j", type=non_negative_float, default=4e-13, metavar="J",
                     help="energy of one programming pulse, joules (default 4e-13: 2 V, 10 µS, 10 ns)")
    dev.add_argument("--c-hold-f", type=positive_float, default=100e-15, metavar="F",
                     help="EP sample-and-hold capacitance per stored value, farads; writing v costs "
                          "C_h v² (default 1e-13)")
    dev.add_argument("--scheme", choices=("bidirectional", "dual-array"), default="bidirectional",
                     help="feedback path: bidirectional (the same devices carry W and Wᵀ) or "
                          "dual-array (a transposed copy) (default bidirectional)")
    dev.add_argument("--rounding", choices=ROUNDINGS, default="stochastic",
                     help="pulse count rounding: stochastic (seeded, unbiased) or nearest "
                          "(drops updates below half a pulse) (default stochastic)")
    dev.add_argument("--policy", choices=POLICIES, default="reset-then-set",
                     help="device that receives the pulses: reset-then-set (depress the partner "
                          "device to G_min first, then potentiate) or set-only (potentiate G⁺ "
                          "for ΔW > 0, G⁻ for ΔW < 0) (default reset-then-set)")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASET_CHOICES, default="auto",
                      help="auto: Fashion-MNIST when installed and R = 784, else the bundled "
                           "8x8 digits resampled to R inputs; random: uniform inputs in [0, 1] "
                           "with random labels (default auto)")
    data.add_argument("--data-dir", default=None, metavar="DIR",
                      help="directory with the four IDX files (MNIST needs it; Fashion-MNIST "
                           "defaults to /usr/share/datasets/fashion-mnist)")
    data.add_argument("--samples", type=positive_int, default=32, metavar="N",
                      help="learning steps, one example each (default 32)")
    out = parser.add_argument_group("outputs")
    out.add_argument("--json", type=Path, default=None, metavar="PATH",
                     help="write the summary as JSON (SI units; keys in the README)")
    out.add_argument("--csv", type=Path, default=None, metavar="PATH",
                     help="write one row per example (loss, settling times, energy terms, pulses)")
    out.add_argument("--plot", type=Path, default=None, metavar="PATH.png",
                     help="plot the first example's settling waveforms and the energy breakdown "
                          "(.png, .pdf or .svg)")
    out.add_argument("--dump", type=Path, default=None, metavar="PATH.npz",
                     help="save weights, conductances, inputs, targets, the first example's "
                          "v⁺/v⁻ of every layer, per-example records and the parameters")
    out.add_argument("--export-netlist", type=Path, default=None, metavar="PATH",
                     help="write the SPICE netlist of the first example (initial weights, from "
                          "reset); an existing file is kept unless --force")
    out.add_argument("--spice-check", action="store_true",
                     help="cross-check the first example's settle against ngspice; refuses "
                          f"networks estimated above {SPICE_LONG_RUN_S:.0f} s of ngspice unless --force")
    out.add_argument("--force", action="store_true",
                     help="overwrite an existing --export-netlist file; run --spice-check "
                          "whatever its estimated time")
    out.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


# ------------------------------------------------------------------------------------------
# Configuration checked as a whole (before any work)


@dataclass
class RunConfig:
    args: argparse.Namespace
    size: tuple[int, int]
    layers: tuple[int, ...]
    device: DeviceParams
    neuron: NeuronParams
    programming: ProgrammingParams
    sample_hold: SampleHoldParams


def resolve_network(args) -> tuple[tuple[int, int], tuple[int, ...]]:
    """(size, layers): --size alone gives R x C x 10; --layers alone takes its first crossbar;
    both must agree (--size one of the crossbars of --layers)."""
    if args.layers is None:
        size = args.size or size_pair(DEFAULT_SIZE)
        return size, (size[0], size[1], N_CLASSES)
    if len(args.layers) < 2:
        raise UsageError(f"--layers {'x'.join(map(str, args.layers))}: needs at least two layers")
    pairs = list(zip(args.layers[:-1], args.layers[1:]))
    if args.size is None:
        return pairs[0], tuple(args.layers)
    if tuple(args.size) not in pairs:
        raise UsageError(f"--size {args.size[0]}x{args.size[1]} is not a crossbar of --layers "
                         f"{'x'.join(map(str, args.layers))}")
    return tuple(args.size), tuple(args.layers)


def check_output_paths(args) -> None:
    """Every output can be written: its directory exists, and a netlist is not overwritten
    without --force. Done first, so that a typo costs nothing."""
    outputs = {"--json": args.json, "--csv": args.csv, "--plot": args.plot, "--dump": args.dump,
               "--export-netlist": args.export_netlist}
    for option, path in outputs.items():
        if path is None:
            continue
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise UsageError(f"{option} {path}: directory {parent} does not exist")
        if path.is_dir():
            raise UsageError(f"{option} {path}: is a directory, expected a file name")
        if not os.access(parent, os.W_OK):
            raise UsageError(f"{option} {path}: directory {parent} is not writable")
    if args.plot is not None and args.plot.suffix.lower() not in PLOT_SUFFIXES:
        raise UsageError(f"--plot {args.plot}: the name must end in {', '.join(PLOT_SUFFIXES)}")
    if args.export_netlist is not None and args.export_netlist.exists() and not args.force:
        raise UsageError(f"--export-netlist {args.export_netlist} exists; pass --force to overwrite it")


def resolve_config(args) -> RunConfig:
    from analogdp.circuit import DeviceParams, NeuronParams, ProgrammingParams, SampleHoldParams

    size, layers = resolve_network(args)
    if args.dataset not in ("random",) and layers[-1] != N_CLASSES:
        raise UsageError(f"--dataset {args.dataset} has {N_CLASSES} classes, but the output layer "
                         f"has {layers[-1]} neurons (use --layers ...x{N_CLASSES} or --dataset random)")
    if args.dataset == "mnist" and args.data_dir is None:
        raise UsageError("--dataset mnist needs --data-dir DIR with the four MNIST IDX files")
    check_output_paths(args)
    input_bytes = args.samples * layers[0] * np.dtype(np.float64).itemsize
    if input_bytes > MAX_INPUT_BYTES:
        raise UsageError(f"--samples {args.samples} with {layers[0]} inputs would hold "
                         f"{input_bytes / 1e9:.3g} GB of examples in memory (limit "
                         f"{MAX_INPUT_BYTES / 1e9:.3g} GB); use fewer samples")
    if args.g_min_s >= args.g_max_s:
        raise UsageError(f"--g-min-s {args.g_min_s:g} must be below --g-max-s {args.g_max_s:g}")
    try:
        device = DeviceParams(g_min_s=args.g_min_s, g_max_s=args.g_max_s, w_max=args.w_max)
        neuron = NeuronParams(v_read_v=args.v_read_v, r_m_ohm=args.r_m_ohm, c_m_f=args.c_m_f,
                              p_amp_static_w=args.p_amp_w)
        delta_g = args.delta_g_s if args.delta_g_s is not None else (device.g_max_s - device.g_min_s) / 64
        programming = ProgrammingParams(delta_g_per_pulse_s=delta_g, e_pulse_j=args.e_pulse_j)
        sample_hold = SampleHoldParams(c_hold_f=args.c_hold_f)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if programming.delta_g_per_pulse_s > device.g_max_s - device.g_min_s:
        raise UsageError(f"--delta-g-s {programming.delta_g_per_pulse_s:g} exceeds the conductance "
                         f"range G_max − G_min = {device.g_max_s - device.g_min_s:g} S")
    if args.variant == "dp" and args.alpha != 0.5:
        print(f"{PROG}: warning: variant dp with alpha {args.alpha} can be unstable "
              f"(use --variant dpT)", file=sys.stderr)
    if (args.algo in EP_ALGORITHMS or args.compare) and args.beta >= 1.0:
        raise UsageError(f"--beta {args.beta:g}: EP needs β below 1 (its −β output stage and the "
                         f"digital EP reference are unstable otherwise)")
    return RunConfig(args, size, layers, device, neuron, programming, sample_hold)


# ------------------------------------------------------------------------------------------
# Data


@dataclass
class Examples:
    inputs: np.ndarray  # (N, n_0), activities in [0, 1]
    labels: np.ndarray  # (N,)
    targets: np.ndarray  # (N, n_L), one-hot
    name: str
    description: str  # one line for stdout: what the data is and why it was chosen


def load_examples(args, n_inputs: int, n_classes: int) -> Examples:
    """N examples in a seeded order, with inputs fitted to the crossbar's R rows."""
    from analogdp.data import fashion_mnist_available, one_hot

    rng = np.random.default_rng([args.seed, 1])
    name, why = args.dataset, ""
    if name == "auto":
        if n_inputs == 784 and fashion_mnist_available(args.data_dir):
            name, why = "fashion-mnist", "auto: Fashion-MNIST is installed and R = 784"
        else:
            name = "digits"
            why = ("auto: R != 784" if n_inputs != 784 else "auto: Fashion-MNIST is not installed")
    if name == "random":
        inputs = rng.random((args.samples, n_inputs))
        labels = rng.integers(0, n_classes, args.samples)
        return Examples(inputs, labels, one_hot(labels, n_classes), name,
                        f"random: {args.samples} uniform inputs in [0, 1] with random labels")
    if name == "digits":
        images, labels, side, source = _digits_training_images()
    else:
        images, labels, side, source = _idx_training_head(name, args.data_dir, max(args.samples, IDX_POOL))
    order = _example_order(len(labels), args.samples, rng)
    inputs, fitted = fit_images(images[order], side, n_inputs)
    description = f"{name} ({source}), {args.samples} training examples, {fitted}"
    if why:
        description += f" [{why}]"
    return Examples(inputs, labels[order], one_hot(labels[order], n_classes), name, description)


def _example_order(pool: int, count: int, rng) -> np.ndarray:
    """A seeded permutation of the pool, repeated (reshuffled) when more examples are asked for."""
    rounds = [rng.permutation(pool) for _ in range(math.ceil(count / pool))]
    return np.concatenate(rounds)[:count]


def _digits_training_images():
    from analogdp.data import load_dataset

    digits = load_dataset("digits", seed=0)
    return digits.x_train, digits.y_train, 8, "scikit-learn bundled 8x8 digits"


def _idx_training_head(name: str, data_dir, count: int):
    """The first ``count`` training images and labels of an IDX dataset (the whole files are
    read and checked by the data module, then the head is kept)."""
    from analogdp.data import load_training_images

    images, labels, source = load_training_images(name, data_dir)
    images, labels = images[:count], labels[:count]
    if images.shape[1] != images.shape[2]:
        raise ValueError(f"{name}: images are {images.shape[1]}x{images.shape[2]}, not square")
    side = images.shape[1]
    return images.reshape(len(images), -1) / 255.0, labels, side, source


def fit_images(images: np.ndarray, side: int, n_inputs: int) -> tuple[np.ndarray, str]:
    """Square images (flattened) fitted to ``n_inputs`` rows: resampled (bilinear) to the
    largest square side s with s² ≤ R, the remaining R − s² inputs held at 0."""
    from analogdp.data import resample_images

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
    """W_k uniform in ±1/sqrt(n_k) (the usual fan-in scaling, inside the ±w_max range), b_k = 0."""
    rng = np.random.default_rng([seed, 0])
    weights = [rng.uniform(-1.0, 1.0, (n_out, n_in)) / math.sqrt(n_in)
               for n_in, n_out in zip(layers[:-1], layers[1:])]
    return weights, [np.zeros(n_out) for n_out in layers[1:]]


def build_dp(config: RunConfig):
    from analogdp.learning import ConductanceProgrammer, DualPropagation

    args = config.args
    programmer = ConductanceProgrammer(config.programming, rounding=args.rounding,
                                       policy=args.policy, seed=[args.seed, 2])
    return DualPropagation(variant=args.variant, alpha=args.alpha, lr=args.lr, programmer=programmer)


def build_ep(config: RunConfig, centered: bool = False):
    from analogdp.ep_circuit import EquilibriumPropagation
    from analogdp.learning import ConductanceProgrammer

    args = config.args
    programmer = ConductanceProgrammer(config.programming, rounding=args.rounding,
                                       policy=args.policy, seed=[args.seed, 2])
    return EquilibriumPropagation(centered=centered, lr=args.lr, programmer=programmer,
                                  sample_hold=config.sample_hold)


# Algorithm name → builder from the run configuration; --compare runs `simulate` once per
# entry of COMPARED_ALGORITHMS on the same circuit weights and data.
ALGORITHM_BUILDERS = {"dp": build_dp, "ep": build_ep,
                      "ep-centered": lambda config: build_ep(config, centered=True)}


def build_circuit(config: RunConfig, algorithm):
    from analogdp.circuit import NetworkCircuit

    weights, biases = initial_weights(config.layers, config.args.seed)
    return NetworkCircuit.from_weights(
        weights, biases, neuron_kind=algorithm.neuron_kind(), device=config.device,
        neuron=config.neuron, beta=config.args.beta, loss=config.args.loss,
        scheme=config.args.scheme)


# ------------------------------------------------------------------------------------------
# SPICE (the analogdp.spice package is imported only when asked for)


def spice_window(circuit) -> tuple[float, float]:
    tau = circuit.neuron.tau_s
    return SPICE_WINDOW_TAU * tau, SPICE_STEP_TAU * tau


def export_netlist(circuit, examples: Examples, path: Path, nudged: bool = True) -> None:
    """The first settle of the first example: DP's single nudged phase, or (``nudged``
    False) EP's free phase."""
    from analogdp.spice import write_netlist

    t_stop, t_step = spice_window(circuit)
    phase = "nudged" if nudged else "free phase (no nudge)"
    write_netlist(circuit, examples.inputs[0], examples.targets[0] if nudged else None, path,
                  t_stop_s=t_stop, t_step_s=t_step,
                  title=f"{PROG}: first example, {phase}, initial weights, from reset")


# An EP phase's cross-check window reaches its equilibrium, about three times DP's window.
EP_SPICE_WINDOW_FACTOR = 3.0


def check_spice_budget(circuit, force: bool, phases: int = 1) -> float:
    """Estimated ngspice time; refuses (UsageError) above the limit unless ``force``.
    ``phases`` > 1: EP, whose phases are each checked over a longer window."""
    from analogdp.spice import estimate_ngspice_seconds

    t_stop, t_step = spice_window(circuit)
    window_factor = 1.0 if phases == 1 else EP_SPICE_WINDOW_FACTOR
    estimate = phases * float(estimate_ngspice_seconds(circuit, window_factor * t_stop, t_step_s=t_step))
    if estimate > SPICE_LONG_RUN_S and not force:
        raise UsageError(f"--spice-check on {'x'.join(map(str, circuit.layer_sizes))} would take "
                         f"ngspice about {estimate:.0f} s (limit {SPICE_LONG_RUN_S:.0f} s); pass "
                         f"--force to run it anyway")
    return estimate


# Keys of the cross-check kept in the JSON "spice" object (documented in the README).
SPICE_KEYS = ("max_abs_dev_v", "final_abs_dev_v", "settling_time_s", "settling_time_numba_s",
              "energy_j", "energy_numba_j", "wall_time_s", "wall_time_numba_s", "ngspice_version",
              "t_stop_s", "tolerances", "passed", "failures")


def spice_tolerances(circuit):
    """The cross-check tolerances, whose voltage bounds are stated for V_r = 0.2 V, scaled to
    this circuit's V_r (relative bounds unchanged)."""
    from dataclasses import replace

    from analogdp.spice import TOLERANCES

    scale = circuit.neuron.v_read_v / 0.2
    return replace(TOLERANCES, max_abs_dev_v=TOLERANCES.max_abs_dev_v * scale,
                   final_abs_dev_v=TOLERANCES.final_abs_dev_v * scale)


def run_spice_check(circuit, examples: Examples) -> dict:
    """ngspice against the numba solver on the first example (initial weights, from reset)."""
    from analogdp.spice import cross_check

    t_stop, t_step = spice_window(circuit)
    check = cross_check(circuit, examples.inputs[0], examples.targets[0], t_stop_s=t_stop,
                        t_step_s=t_step, tolerances=spice_tolerances(circuit))
    report = check.as_dict()
    return {key: _plain(report[key]) for key in SPICE_KEYS}


def run_ep_spice_check(circuit, examples: Examples, centered: bool) -> dict:
    """ngspice against the numba solver on every EP phase of the first example (free from
    reset, each nudged phase from the state the previous one settled to). The top-level
    figures combine the phases (worst deviation; settling times, energies and wall times
    summed, as the phases run in sequence); ``phases`` holds each one's."""
    from analogdp.ep_circuit import cross_check_phases

    checks = cross_check_phases(circuit, examples.inputs[0], examples.targets[0], centered=centered,
                                t_step_s=spice_window(circuit)[1], time_numba=True,
                                tolerances=spice_tolerances(circuit))
    phases = {}
    for phase, check in checks.items():
        report = check.as_dict()
        phases[phase] = {key: _plain(report[key]) for key in SPICE_KEYS}
    first = next(iter(phases.values()))
    combined = {key: max(p[key] for p in phases.values()) for key in ("max_abs_dev_v", "final_abs_dev_v")}
    combined.update({key: sum(p[key] for p in phases.values()) for key in (
        "settling_time_s", "settling_time_numba_s", "energy_j", "energy_numba_j", "wall_time_s",
        "wall_time_numba_s", "t_stop_s")})
    combined.update(ngspice_version=first["ngspice_version"], tolerances=first["tolerances"],
                    passed=all(p["passed"] for p in phases.values()),
                    failures=[f"{phase}: {failure}" for phase, p in phases.items() for failure in p["failures"]],
                    phases=phases)
    return combined


# ------------------------------------------------------------------------------------------
# Simulation


@dataclass
class RunOutcome:
    algorithm: object
    learner: object
    initial_circuit: object
    energy_per_inference_j: float
    timings_s: dict[str, float] = field(default_factory=dict)
    # settle (phase) name → settling time of that phase in every update, s
    phase_settling_time_s: dict[str, np.ndarray] = field(default_factory=dict)


def simulate(config: RunConfig, algo_name: str, circuit, examples: Examples) -> RunOutcome:
    """Learn from every example with one algorithm; a --compare mode calls this per algorithm."""
    from analogdp.learning import CrossbarLearning
    from analogdp.solver import settle

    algorithm = ALGORITHM_BUILDERS[algo_name](config)
    learner = CrossbarLearning(circuit, algorithm)
    progress = _progress_bar(config.args, algo_name)
    phase_times: dict[str, list[float]] = {}

    def on_step(i, step):
        for phase, result in step.settles.items():
            phase_times.setdefault(phase, []).append(float(result.settling_time_s[0]))
        if progress is not None:
            progress.update(1)

    try:
        learner.run(examples.inputs, examples.targets, on_step=on_step)
    finally:
        if progress is not None:
            progress.close()
    # EP's inference is its free phase, settled with the step limit its coupling needs.
    infer = getattr(algorithm, "inference", None)
    inference = (infer(circuit, examples.inputs[:1]) if infer is not None
                 else settle(circuit, examples.inputs[:1], None, allow_unsettled=True))
    timings = {"first_step": learner.first_step_wall_time_s_,
               "other_steps": learner.wall_time_s_ - learner.first_step_wall_time_s_}
    return RunOutcome(algorithm, learner, circuit, float(inference.energy.total[0]), timings,
                      {phase: np.asarray(times) for phase, times in phase_times.items()})


def _progress_bar(args, algo_name: str):
    if args.no_progress:
        return None
    from tqdm import tqdm

    return tqdm(total=args.samples, desc=f"{algo_name} learning", unit="example", file=sys.stderr,
                leave=False)


# ------------------------------------------------------------------------------------------
# Results


def summarize(config: RunConfig, outcome: RunOutcome, examples: Examples, spice: dict | None,
              wall_time_s: float, timings_s: dict) -> dict:
    """The JSON summary; every key is documented in the README (SI units)."""
    args = config.args
    history = outcome.learner.history_
    summary = {
        "size": f"{config.size[0]}x{config.size[1]}",
        "layers": list(config.layers),
        "algo": outcome.algorithm.name,
        "variant": args.variant,
        "alpha": args.alpha,
        "beta": args.beta,
        "lr": args.lr,
        "samples": history.n_samples,
        "dataset": examples.name,
        **outcome_figures(outcome),
        "wall_time_s": wall_time_s,
        "wall_time_breakdown_s": timings_s,
        "params": parameters(config, outcome, examples),
    }
    if len(summary["settling_time_per_phase_s"]) == 1:
        # one settle per update: its time is settling_time_s (kept in the compare object only)
        del summary["settling_time_per_phase_s"]
    if spice is not None:
        summary["spice"] = spice
    return summary


def outcome_figures(outcome: RunOutcome) -> dict:
    """What one algorithm's run measured (medians over its updates; SI units)."""
    history = outcome.learner.history_
    energy_per_update = float(np.median(history.energy_per_update_j))
    macs = int(outcome.algorithm.macs_per_update(outcome.initial_circuit))
    return {
        "settling_time_s": float(np.median(history.settling_time_s)),
        "settling_time_1pct_s": float(np.median(history.settling_time_1pct_s)),
        "settling_time_per_phase_s": {phase: float(np.median(times))
                                      for phase, times in outcome.phase_settling_time_s.items()},
        "energy_per_update_j": energy_per_update,
        "energy_breakdown_j": history.median_update_energy_j(),
        "energy_per_inference_j": outcome.energy_per_inference_j,
        "energy_per_mac_j": energy_per_update / macs,
        "macs_per_update": macs,
        "pulses_per_update": float(np.median(history.pulses)),
        "fixed_point_error_v": _max_or_nan(history.fixed_point_error_v),
        "loss_first": history.loss_first(),
        "loss_last": history.loss_last(),
        "loss_window": history.window(),
        "not_settled": int(np.sum(~history.settled)),
    }


def _max_or_nan(values: np.ndarray) -> float:
    return float(np.max(values)) if not np.any(np.isnan(values)) else math.nan


def parameters(config: RunConfig, outcome: RunOutcome, examples: Examples) -> dict:
    args = config.args
    return {
        "seed": args.seed,
        "dataset": examples.name,
        "data": examples.description,
        "init": "W_k uniform in ±1/sqrt(n_k), biases 0",
        "circuit": outcome.initial_circuit.describe(),
        "algorithm": outcome.algorithm.describe(),
        "loss_window_fraction": 0.1,
    }


def _plain(value):
    """JSON-safe: NaN/inf → null, numpy scalars → Python numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


SI_PREFIXES = ((1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m"), (1.0, ""))


def si(value: float, unit: str) -> str:
    """3 significant digits with an SI prefix, e.g. 8.12e-08 s → '81.2 ns'."""
    if value is None or not math.isfinite(value):
        return f"n/a {unit}"
    if value == 0:
        return f"0 {unit}"
    scale, prefix = SI_PREFIXES[0]
    for candidate, name in SI_PREFIXES:
        if abs(value) >= candidate:
            scale, prefix = candidate, name
    return f"{value / scale:.3g} {prefix}{unit}"


def summary_table(summary: dict, examples: Examples) -> str:
    v_r = summary["params"]["circuit"]["neuron"]["v_read_v"]
    fp = summary["fixed_point_error_v"]
    fp_text = "n/a (no stable DP fixed point)" if fp is None or not math.isfinite(fp) else \
        f"{si(fp, 'V')}  ({fp / v_r:.2g} of V_r)"
    n = summary["samples"]
    rows = [
        ("network", f"{'x'.join(map(str, summary['layers']))}  (crossbar under study {summary['size']})"),
        ("algorithm", f"{summary['algo']} (β = {summary['beta']:g}, lr = {summary['lr']:g}, sample-and-hold "
                      f"C_h = {si(summary['params']['algorithm']['c_hold_f'], 'F')})"
         if summary["algo"] in EP_ALGORITHMS else
         f"{summary['algo']} (variant {summary['variant']}, α = {summary['alpha']:g}, "
         f"β = {summary['beta']:g}, lr = {summary['lr']:g})"),
        ("data", examples.description),
        ("settling time (median, 0.1 % of V_r)", si(summary["settling_time_s"], "s")),
        *[(f"  {phase.replace('_', ' ')} phase (median)", si(value, "s"))
          for phase, value in summary.get("settling_time_per_phase_s", {}).items()],
        ("settling time (median, 1 % of V_r)", si(summary["settling_time_1pct_s"], "s")),
        ("energy per update (median)", si(summary["energy_per_update_j"], "J")),
    ]
    rows += [(f"  {term.replace('_', ' ')}", si(value, "J"))
             for term, value in summary["energy_breakdown_j"].items()]
    rows += [
        ("energy per inference (forward settle)", si(summary["energy_per_inference_j"], "J")),
        ("MACs per update", f"{summary['macs_per_update']:,}"),
        ("energy per MAC", si(summary["energy_per_mac_j"], "J")),
        ("pulses per update (median)", f"{summary['pulses_per_update']:g}"),
        ("fixed-point error (max over run)", fp_text),
        (f"loss, first / last {summary['loss_window']} examples",
         f"{summary['loss_first']:.4f} -> {summary['loss_last']:.4f}"),
        ("not settled", f"{summary['not_settled']} of {n}"),
        ("wall time", f"{summary['wall_time_s']:.2f} s"),
    ]
    spice = summary.get("spice")
    if spice is not None:
        rows += [("SPICE check (first example)", "passed" if spice["passed"] else
                  f"FAILED ({'; '.join(spice['failures'])})"),
                 ("  max / final |Δv| vs ngspice",
                  f"{si(spice['max_abs_dev_v'], 'V')} / {si(spice['final_abs_dev_v'], 'V')}"),
                 ("  ngspice wall time", f"{spice['wall_time_s']:.2f} s")]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def write_json(path: Path, summary: dict) -> None:
    path.write_text(json.dumps(_plain(summary), indent=2) + "\n")


def write_csv(path: Path, history, labels: np.ndarray) -> None:
    import csv

    columns = {"sample": np.arange(history.n_samples), "label": labels, **history.columns()}
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for i in range(history.n_samples):
            writer.writerow([_csv_value(values[i]) for values in columns.values()])


def _csv_value(value):
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    return repr(float(value))


def write_dump(path: Path, outcome: RunOutcome, examples: Examples, summary: dict) -> None:
    """Arrays a designer can reload: see the README for the names."""
    learner = outcome.learner
    arrays = {"inputs": examples.inputs, "targets": examples.targets, "labels": examples.labels,
              "params_json": np.array(json.dumps(_plain(summary["params"]))),
              "summary_json": np.array(json.dumps(_plain(summary)))}
    final_w, final_b = learner.circuit_.effective_weights()
    initial_w, initial_b = outcome.initial_circuit.effective_weights()
    for k, xbar in enumerate(learner.circuit_.crossbars):
        arrays[f"weight_{k}"] = final_w[k]
        arrays[f"bias_{k}"] = final_b[k] if final_b[k] is not None else np.zeros(0)
        arrays[f"weight_initial_{k}"] = initial_w[k]
        arrays[f"bias_initial_{k}"] = initial_b[k] if initial_b[k] is not None else np.zeros(0)
        arrays[f"g_pos_s_{k}"] = xbar.g_pos_s
        arrays[f"g_neg_s_{k}"] = xbar.g_neg_s
    first = next(iter(learner.first_step_.settles.values()))
    for layer in range(1, first.circuit.n_layers + 1):
        volts = first.compartments(layer)[0] * first.circuit.neuron.v_read_v
        arrays[f"v_plus_v_{layer}"] = volts[:, 0]
        arrays[f"v_minus_v_{layer}"] = volts[:, -1]
    for name, values in learner.history_.columns().items():
        arrays[f"history_{name}"] = values
    with path.open("wb") as handle:
        np.savez(handle, **arrays)


def _telling_neurons(final_v: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` neurons with the largest final |v⁺ − v⁻| (the error signal),
    then the most active: the first neurons of a hidden layer are often just off."""
    difference = np.abs(final_v[:, 0] - final_v[:, -1])
    return np.lexsort((-final_v.mean(axis=1), -difference))[:count]


def write_plot(path: Path, outcome: RunOutcome, examples: Examples, summary: dict) -> None:
    """Settling waveforms of the first example (re-settled with saved time points) and the
    energy breakdown of the median update."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analogdp.solver import SaveAt, settle

    circuit = outcome.initial_circuit
    first = next(iter(outcome.learner.first_step_.settles.values()))
    horizon = max(1.5 * float(first.settling_time_s[0]), 5 * circuit.neuron.tau_s)
    times = np.linspace(0.0, horizon, 400)
    # The first settle as it ran (for EP its free phase: first.circuit carries β = 0).
    traced = settle(first.circuit, examples.inputs[:1], examples.targets[:1], saveat=SaveAt(ts_s=times),
                    allow_unsettled=True)
    voltages = traced.saved_voltages_v[0]
    n_layers = circuit.n_layers
    fig, axes = plt.subplots(1, n_layers + 1, figsize=(5 * (n_layers + 1), 4.2))
    for layer in range(1, n_layers + 1):
        ax = axes[layer - 1]
        per_neuron = traced.compartments(layer, voltages) * circuit.neuron.v_read_v  # (t, n, m)
        shown = min(per_neuron.shape[1], 8 if layer < n_layers else N_CLASSES)
        for j in _telling_neurons(per_neuron[-1], shown):
            line, = ax.plot(times * 1e9, per_neuron[:, j, 0] * 1e3, lw=1.2)
            ax.plot(times * 1e9, per_neuron[:, j, -1] * 1e3, lw=1.0, ls="--", color=line.get_color())
        ax.axvline(first.settling_time_s[0] * 1e9, color="k", lw=0.8, ls=":",
                   label=f"settled (0.1 % V_r): {si(float(first.settling_time_s[0]), 's')}")
        kind = "output" if layer == n_layers else "hidden"
        which = "all" if shown == per_neuron.shape[1] else f"{shown} of {per_neuron.shape[1]} (largest |v⁺−v⁻|)"
        styles = "v⁺ solid, v⁻ dashed" if circuit.compartments_per_neuron > 1 else "one compartment"
        ax.set_title(f"layer {layer} ({kind}): {styles}; {which}", fontsize=9)
        ax.set_xlabel("time (ns)")
        ax.set_ylabel("compartment voltage (mV)")
        ax.legend(fontsize=8, loc="best")
    ax = axes[-1]
    terms = summary["energy_breakdown_j"]
    names, values = list(terms)[::-1], list(terms.values())[::-1]
    bars = ax.barh([n.replace("_", " ") for n in names], [v * 1e12 for v in values], color="tab:blue")
    ax.bar_label(bars, labels=[si(v, "J") for v in values], fontsize=8, padding=3)
    ax.margins(x=0.25)
    ax.axvline(0.0, color="k", lw=0.6)
    ax.set_xlabel("energy per update (pJ)")
    ax.set_title(f"median update: {si(summary['energy_per_update_j'], 'J')} "
                 f"({summary['algo']}, {summary['size']})", fontsize=9)
    phase = "" if len(outcome.learner.first_step_.settles) == 1 else \
        f" ({next(iter(outcome.learner.first_step_.settles))} phase)"
    fig.suptitle(f"{PROG}: {'x'.join(map(str, summary['layers']))}, first example settling "
                 f"from reset{phase}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------
# --compare: DP, EP and centered EP on the same weights and examples


def compare(config: RunConfig, examples: Examples, outcome: RunOutcome | None = None) -> dict:
    """Run every algorithm of COMPARED_ALGORITHMS (reusing ``outcome``, the run of
    ``--algo``) on the initial weights of ``config`` and the same examples; the JSON
    ``compare`` object: per algorithm its figures (as in the summary), and the ratios of
    every algorithm's settling times and energies to the first one's (DP)."""
    outcomes = {} if outcome is None else {config.args.algo: outcome}
    for algo in COMPARED_ALGORITHMS:
        if algo not in outcomes:
            circuit = build_circuit(config, ALGORITHM_BUILDERS[algo](config))
            outcomes[algo] = simulate(config, algo, circuit, examples)
    figures = {algo: outcome_figures(outcomes[algo]) for algo in COMPARED_ALGORITHMS}
    reference = COMPARED_ALGORITHMS[0]
    return {
        "algorithms": list(COMPARED_ALGORITHMS),
        "reference": reference,
        "samples": len(examples.inputs),
        **figures,
        "ratios": {f"{algo}_over_{reference}": comparison_ratios(figures[algo], figures[reference])
                   for algo in COMPARED_ALGORITHMS[1:]},
    }


RATIO_KEYS = ("settling_time_s", "settling_time_1pct_s", "energy_per_update_j",
              "energy_per_inference_j", "energy_per_mac_j", "macs_per_update")


def comparison_ratios(figures: dict, reference: dict) -> dict:
    """Ratios (dimensionless) of one algorithm's figures to the reference's, named after the
    figure without its unit suffix; energy terms under ``energy_breakdown`` (NaN where the
    reference spends nothing on a term, e.g. DP's sample-and-hold)."""
    ratios = {_without_unit(key): _ratio(figures[key], reference[key]) for key in RATIO_KEYS}
    terms = list(reference["energy_breakdown_j"]) + [
        t for t in figures["energy_breakdown_j"] if t not in reference["energy_breakdown_j"]]
    ratios["energy_breakdown"] = {term: _ratio(figures["energy_breakdown_j"].get(term, 0.0),
                                               reference["energy_breakdown_j"].get(term, 0.0))
                                  for term in terms}
    return ratios


def _without_unit(key: str) -> str:
    return re.sub(r"_(s|j)$", "", key)


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference else math.nan


def comparison_table(comparison: dict) -> str:
    """Side-by-side table of the algorithms, with each one's ratio to the reference."""
    algos = comparison["algorithms"]
    reference = comparison["reference"]
    others = [a for a in algos if a != reference]
    terms = []
    for algo in algos:
        terms += [t for t in comparison[algo]["energy_breakdown_j"] if t not in terms]
    terms.sort(key=lambda term: term == "programming")  # programmed last, as it happens
    phases = {algo: comparison[algo]["settling_time_per_phase_s"] for algo in algos}

    def row(label, values, ratios):
        """``ratios``: None leaves the cell empty; NaN (nothing to compare with) shows n/a."""
        return [label] + values + ["" if r is None else "n/a" if not math.isfinite(r) else f"{r:.3g}"
                                   for r in ratios]

    def figure_row(label, key, unit):
        values = [comparison[a][key] for a in algos]
        return row(label, [si(v, unit) for v in values],
                   [_ratio(comparison[a][key], comparison[reference][key]) for a in others])

    rows = [["", *algos, *(f"{a}/{reference}" for a in others)],
            figure_row("settling time per update (0.1 % of V_r)", "settling_time_s", "s")]
    for phase in dict.fromkeys(p for algo in algos for p in phases[algo]):
        rows.append(row(f"  {phase.replace('_', ' ')} phase",
                        [si(phases[a][phase], "s") if phase in phases[a] else "-" for a in algos],
                        [None for _ in others]))
    rows += [figure_row("settling time per update (1 % of V_r)", "settling_time_1pct_s", "s"),
             figure_row("energy per update", "energy_per_update_j", "J")]
    for term in terms:
        values = [comparison[a]["energy_breakdown_j"].get(term, 0.0) for a in algos]
        rows.append(row(f"  {term.replace('_', ' ')}", [si(v, "J") for v in values],
                        [_ratio(v, values[0]) for v in values[1:]]))
    rows += [figure_row("energy per inference (free settle)", "energy_per_inference_j", "J"),
             figure_row("energy per MAC", "energy_per_mac_j", "J"),
             row("MACs per update", [f"{comparison[a]['macs_per_update']:,}" for a in algos],
                 [_ratio(comparison[a]["macs_per_update"], comparison[reference]["macs_per_update"])
                  for a in others]),
             row("loss, first -> last 10 %", [f"{comparison[a]['loss_first']:.3f} -> {comparison[a]['loss_last']:.3f}"
                                             for a in algos], [None for _ in others]),
             row("not settled", [f"{comparison[a]['not_settled']} of {comparison['samples']}" for a in algos],
                 [None for _ in others])]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    title = (f"comparison on the same weights and examples (medians over {comparison['samples']} "
             f"updates; ratios to {reference})")
    lines = [title] + ["  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                                 for i, cell in enumerate(r)) for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Entry point


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(attach_dash_values(argv, parser))
    try:
        return _run(args, started)
    except UsageError as error:
        print_error(PROG, error)
        return 2
    except MemoryError:
        print_error(PROG, f"not enough memory to simulate {'x'.join(map(str, resolve_network(args)[1]))}")
        return 1


def _run(args, started: float) -> int:
    config = resolve_config(args)
    from analogdp.data import DataError
    from analogdp.learning import CrossbarLearning  # noqa: F401  (imports the numba solver)

    mark = time.perf_counter()
    # From this module's first line (the interpreter's own start-up is not visible here): the
    # imports of numpy, the library and numba, and the option checks.
    timings = {"imports_and_options": mark - STARTED_S}
    try:
        examples = load_examples(args, config.layers[0], config.layers[-1])
    except DataError as error:
        raise UsageError(str(error)) from None
    timings["data"] = time.perf_counter() - mark
    circuit = build_circuit(config, ALGORITHM_BUILDERS[args.algo](config))

    spice_estimate = None
    if args.export_netlist is not None or args.spice_check:
        mark = time.perf_counter()
        spice_estimate = _spice_preflight(args, circuit, examples)
        timings["spice_export"] = time.perf_counter() - mark

    mark = time.perf_counter()
    outcome = simulate(config, args.algo, circuit, examples)
    timings.update({f"learning_{k}": v for k, v in outcome.timings_s.items()})
    timings["inference_settle"] = time.perf_counter() - mark - sum(outcome.timings_s.values())

    spice = None
    if args.spice_check:
        print(f"SPICE check: running ngspice on the first example (estimated {_seconds(spice_estimate)})")
        mark = time.perf_counter()
        if args.algo in EP_ALGORITHMS:
            spice = _spice_or_fail(lambda: run_ep_spice_check(circuit, examples, args.algo == "ep-centered"))
        else:
            spice = _spice_or_fail(lambda: run_spice_check(circuit, examples))
        timings["spice_check"] = time.perf_counter() - mark

    comparison = None
    if args.compare:
        mark = time.perf_counter()
        comparison = compare(config, examples, outcome)
        timings["compare"] = time.perf_counter() - mark

    wall_time = time.perf_counter() - STARTED_S
    summary = summarize(config, outcome, examples, spice, wall_time, timings)
    if comparison is not None:
        summary["compare"] = comparison
    print(summary_table(summary, examples))
    if comparison is not None:
        print()
        print(comparison_table(comparison))
    if args.json is not None:
        write_json(args.json, summary)
    if args.csv is not None:
        write_csv(args.csv, outcome.learner.history_, examples.labels)
    if args.dump is not None:
        write_dump(args.dump, outcome, examples, summary)
    if args.plot is not None:
        write_plot(args.plot, outcome, examples, summary)
    status = 0
    unsettled = {algo: figures["not_settled"] for algo, figures in
                 ((comparison or {args.algo: summary}).items()) if isinstance(figures, dict)
                 and figures.get("not_settled")}
    if unsettled:
        counts = ", ".join(f"{algo} {count} of {args.samples}" for algo, count in unsettled.items())
        print(f"{PROG}: updates that did not settle within the time limit ({counts}): their "
              f"settling times and energies are not equilibrium figures", file=sys.stderr)
        status = 1
    if spice is not None and not spice["passed"]:
        print(f"{PROG}: SPICE check failed: {'; '.join(spice['failures'])}", file=sys.stderr)
        status = 1
    return status


def _seconds(value: float | None) -> str:
    return "unknown time" if value is None or not math.isfinite(value) else f"{value:.1f} s"


def _spice_preflight(args, circuit, examples: Examples) -> float | None:
    """Export the netlist and check the ngspice budget before the learning run."""
    estimate = None
    ep = args.algo in EP_ALGORITHMS
    if args.spice_check:
        phases = (3 if args.algo == "ep-centered" else 2) if ep else 1
        estimate = _spice_or_fail(lambda: check_spice_budget(circuit, args.force, phases))
    if args.export_netlist is not None:
        _spice_or_fail(lambda: export_netlist(circuit, examples, args.export_netlist, nudged=not ep))
        print(f"netlist: {args.export_netlist} (first example, {'free phase, ' if ep else ''}"
              f"initial weights, from reset)")
    return estimate


def _spice_or_fail(action):
    """Run a SPICE action; a missing package or ngspice, or an ngspice error, ends the run
    with ngspice's own words (exit status 1)."""
    try:
        from analogdp.spice import NgspiceError, NgspiceNotFound
    except ImportError as error:
        print(f"{PROG}: error: SPICE support is not available ({error})", file=sys.stderr)
        raise SystemExit(1) from None
    try:
        return action()
    except (NgspiceError, NgspiceNotFound) as error:
        print(f"{PROG}: error: {type(error).__name__}: {error}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    sys.exit(main())
