"""python -m sims.crossbar: single-phase dual-propagation learning on resistive crossbars
(DESIGN §3; every option and JSON key in the README and ``--help``).

Parses, builds an :class:`analogdp.experiment.ExperimentConfig`, calls the library, prints.
Options and output paths are checked before any data is read or any circuit is simulated.
"""

from __future__ import annotations

import time

STARTED_S = time.perf_counter()  # before the imports below, for the wall-time breakdown

import argparse  # noqa: E402
import sys  # noqa: E402
from dataclasses import fields  # noqa: E402
from pathlib import Path  # noqa: E402

from analogdp import experiment, report  # noqa: E402
from analogdp.checkpoint import DEFAULT_CHECKPOINT_EVERY_S, Checkpoint  # noqa: E402
from analogdp.circuit import DeviceParams, NeuronParams, ProgrammingParams, SampleHoldParams  # noqa: E402
from analogdp.circuit.updates import PulseCoincidenceParams  # noqa: E402
from analogdp.circuit.amplifiers import AmplifierParams  # noqa: E402
from analogdp.circuit.wires import WireParams  # noqa: E402
from analogdp.experiment import SHORTHAND_OPTIONS, ExperimentConfig  # noqa: E402
from analogdp.names import EP_ALGORITHMS  # noqa: E402
from sims.cli import (EXIT_FAILED, EXIT_NGSPICE, EXIT_STATUS_HELP, OVERWRITE_POLICY,  # noqa: E402
                      SPICE_LONG_RUN_S, OneLineParser, UsageError, add_field_options, add_version_option,
                      attach_dash_values, check_outputs, command_line, given_options, layer_sizes,
                      add_amplifier_options, add_wire_options, print_error, progress_callback, progress_counter,
                      positive_float, report_problems, run_command, size_pair, timeout_seconds)

PROG = "python -m sims.crossbar"
DEFAULT_SIZE = "784x256"
PLOT_SUFFIXES = (".png", ".pdf", ".svg")
ALGORITHM_FIELDS = ("algo", "variant", "alpha", "beta", "lr", "loss", "seed", "weights")
PERIPHERY_FIELDS = {DeviceParams: None, NeuronParams: None, ProgrammingParams: None,
                    SampleHoldParams: None, ExperimentConfig: ("scheme", "rounding", "policy", "amplifiers")}
DEVICE_MODEL_FIELDS = {ExperimentConfig: ("device_model", "device_param", "update", "time_per_update_s"),
                       PulseCoincidenceParams: None}
DATA_FIELDS = ("dataset", "data_dir", "samples")
TRAINING_FIELDS = ("settle", "ode_every", "lead_in_tau", "epochs", "train_examples", "evaluate", "digital_reference")
WIRE_OPTIONS = SHORTHAND_OPTIONS + tuple(f.name for f in fields(WireParams))
AMPLIFIER_OPTIONS = tuple(f.name for f in fields(AmplifierParams))
OUTPUTS = ("json", "csv", "plot", "dump", "export_netlist")


def build_parser() -> OneLineParser:
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
            "to conductance pairs (one device of a pair at G_min).\n"
            f"{EXIT_STATUS_HELP}\n{OVERWRITE_POLICY}\nExample:\n"
            f"  {PROG} --size 784x256 --samples 200 --json results/run.json --plot run.png"))
    add_version_option(parser)
    net = parser.add_argument_group("network and algorithm")
    net.add_argument("--size", type=size_pair, default=None, metavar="RxC",
                     help=f"crossbar under study, rows x columns (default {DEFAULT_SIZE}); the "
                          "network is R x C x 10 unless --layers is given")
    net.add_argument("--layers", type=layer_sizes, default=None, metavar="N0xN1x...",
                     help="full network, layer sizes from the input to the output (default R x C x "
                          "10); --size must then be one of its crossbars")
    add_field_options(net, ExperimentConfig, ALGORITHM_FIELDS)
    net.add_argument("--compare", action="store_true",
                     help="also run the other algorithms of dp, ep, ep-centered on the same weights "
                          "and examples; prints a comparison table, JSON gets a 'compare' object "
                          "(EP needs --beta below 1)")
    dev = parser.add_argument_group("devices and periphery (defaults: analogdp.circuit.params)")
    for cls, names in PERIPHERY_FIELDS.items():
        add_field_options(dev, cls, names, defaults={"delta_g_per_pulse_s": "(G_max − G_min)/64"})
    add_wire_options(parser)
    add_amplifier_options(parser)
    devices = parser.add_argument_group("device response and update scheme (DESIGN §7)")
    for cls, names in DEVICE_MODEL_FIELDS.items():
        add_field_options(devices, cls, names)
    data = parser.add_argument_group("data")
    add_field_options(data, ExperimentConfig, DATA_FIELDS)
    training = parser.add_argument_group("training over a dataset (--epochs) and the settle engine")
    add_field_options(training, ExperimentConfig, TRAINING_FIELDS)
    training.add_argument("--checkpoint", type=Path, default=None, metavar="PATH",
                          help="with --epochs: save the run's whole state here now and then (atomically), "
                               "and go on from it when the same command finds it (a killed run loses at "
                               "most --checkpoint-every-s of work; the numbers are those of a run never "
                               "stopped); removed once the outputs are written. Refused when another "
                               "configuration or another analogdp version wrote it")
    training.add_argument("--checkpoint-every-s", type=positive_float, default=None, metavar="S",
                          help="seconds of training between checkpoint saves (default: "
                               f"{DEFAULT_CHECKPOINT_EVERY_S:.0f}; each epoch's end is saved too)")
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
                          "reset)")
    out.add_argument("--transistor-level", action="store_true",
                     help="SKY130 transistor-level line holders and compartments (DESIGN §10.3) instead of "
                          "ideal sources: in --export-netlist, and --spice-check against the ODE (§10.5)")
    out.add_argument("--interactive", action="store_true",
                     help="with --export-netlist: no batch control block (run, wrdata, quit), for the "
                          "ngspice prompt")
    out.add_argument("--spice-check", action="store_true",
                     help="cross-check the first example's settle against ngspice; refuses "
                          f"networks estimated above {SPICE_LONG_RUN_S:.0f} s of ngspice unless --force")
    out.add_argument("--ngspice-timeout-s", type=timeout_seconds, default=None, metavar="S",
                     help="stop an ngspice run that takes longer, seconds (default: ten times its "
                          "estimated time plus 60 s)")
    out.add_argument("--force", action="store_true",
                     help="replace existing output files; run --spice-check whatever its "
                          "estimated time")
    out.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


# ------------------------------------------------------------------------------------------
# Configuration checked as a whole (before any work)


def network_layers(args) -> tuple[tuple[int, int] | None, tuple[int, ...]]:
    """(size, layers): --size alone gives R x C x 10; --layers alone studies its first crossbar."""
    if args.layers is None:
        size = args.size or size_pair(DEFAULT_SIZE)
        return None, (size[0], size[1], experiment.N_CLASSES)
    return args.size, tuple(args.layers)


def check_flags_apply(args, config: ExperimentConfig) -> None:
    """Refuse options that the algorithms run would ignore (a silently ignored flag misleads)."""
    runs_dp = config.algo == "dp" or args.compare
    runs_ep = config.algo in EP_ALGORITHMS or args.compare
    ignored = [option for option, given, used in (
        ("--variant", args.variant, runs_dp), ("--alpha", args.alpha, runs_dp),
        ("--c-hold-f", args.c_hold_f, runs_ep),
        ("--ngspice-timeout-s", args.ngspice_timeout_s, args.spice_check),
        ("--transistor-level", args.transistor_level or None, args.export_netlist is not None or args.spice_check),
        ("--interactive", args.interactive or None, args.export_netlist)) if given is not None and not used]
    if ignored:
        raise UsageError(f"{', '.join(ignored)} do not apply to this run (the dyad's options apply to "
                         f"dp, the sample-and-hold to ep and ep-centered, the ngspice timeout to "
                         f"--spice-check, --interactive to --export-netlist, --transistor-level to either)")


def resolve_config(args) -> ExperimentConfig:
    size, layers = network_layers(args)
    names = ALGORITHM_FIELDS + DATA_FIELDS + TRAINING_FIELDS + WIRE_OPTIONS + AMPLIFIER_OPTIONS + tuple(
        f.name for groups in (PERIPHERY_FIELDS, DEVICE_MODEL_FIELDS) for cls, only in groups.items()
        for f in fields(cls) if not only or f.name in only)
    try:
        config = ExperimentConfig.from_options(layers=layers, size=size, **given_options(args, names))
        if args.compare:
            experiment.check_comparison(config)
        if args.transistor_level and args.spice_check:
            experiment.check_transistor_level(config)
        if config.epochs is not None and (args.compare or args.spice_check or args.export_netlist
                                          or args.plot or args.dump):
            raise ValueError("--epochs reports per-epoch figures (--json, --csv); --compare, --spice-check, "
                             "--export-netlist, --plot and --dump belong to the --samples run")
        if config.epochs is None and (args.checkpoint is not None or args.checkpoint_every_s is not None):
            raise ValueError("--checkpoint and --checkpoint-every-s apply to training over a dataset (--epochs)")
        if args.checkpoint_every_s is not None and args.checkpoint is None:
            raise ValueError("--checkpoint-every-s needs --checkpoint PATH")
    except ValueError as error:
        raise UsageError(str(error)) from None
    check_outputs({"--" + name.replace("_", "-"): getattr(args, name) for name in OUTPUTS},
                  force=args.force, suffixes={"--plot": PLOT_SUFFIXES})
    check_flags_apply(args, config)
    if config.weights is not None:
        experiment.load_weights(config.weights, config.layers)  # a bad file is bad input: now
    if config.variant == "dp" and config.alpha != 0.5 and (config.algo == "dp" or args.compare):
        print(f"{PROG}: warning: variant dp with alpha {config.alpha} can be unstable "
              f"(use --variant dpT)", file=sys.stderr)
    return config


# ------------------------------------------------------------------------------------------
# Entry point


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(attach_dash_values(argv, parser))
    args.command = command_line(PROG, argv)

    def run() -> int:
        try:
            return _run(args)
        except MemoryError:
            print_error(PROG, f"not enough memory to simulate {'x'.join(map(str, network_layers(args)[1]))}")
            return EXIT_FAILED

    return run_command(PROG, run)


def _run(args) -> int:
    from analogdp.report import provenance

    args.provenance = provenance(args.command)
    config = resolve_config(args)
    import analogdp.solver  # noqa: F401  (the numba solver, timed with the start-up)

    if config.epochs is not None:
        return _run_training(args, config)
    mark = time.perf_counter()
    # From this module's first line (the interpreter's own start-up is not visible here): the
    # imports of numpy, the library and numba, and the option checks.
    timings = {"imports_and_options": mark - STARTED_S}
    examples = experiment.load_examples(config)  # a DataError is bad input (exit 2)
    timings["data"] = time.perf_counter() - mark

    spice_estimate = None
    if args.export_netlist is not None or args.spice_check:
        mark = time.perf_counter()
        spice_estimate = _spice_preflight(args, config, examples)
        timings["spice_export"] = time.perf_counter() - mark

    bar = progress_callback(f"{config.algo} learning", config.samples, args.no_progress)
    result = experiment.run_experiment(config, examples, progress=bar)
    timings.update(learning_first_step=result.timings_s["first_step"],
                   learning_other_steps=result.timings_s["other_steps"],
                   inference_settle=result.timings_s["inference_settle"])

    spice_error = None
    if args.spice_check:
        print(f"SPICE check: running ngspice on the first example (estimated {spice_estimate:.1f} s)")
        mark = time.perf_counter()
        timeout_s = args.ngspice_timeout_s or experiment.ngspice_timeout_s(spice_estimate)
        spice_error = experiment.spice_check_keeping_results(result, timeout_s=timeout_s,
                                                             transistor_level=args.transistor_level)
        timings["spice_check"] = time.perf_counter() - mark

    runs = {}
    if args.compare:
        mark = time.perf_counter()
        result.comparison = experiment.compare_algorithms(
            config, reuse=result, progress=lambda algo: progress_callback(f"{algo} learning", config.samples,
                                                                 args.no_progress), runs=runs)
        timings["compare"] = time.perf_counter() - mark

    summary = result.summary(wall_time_s=time.perf_counter() - STARTED_S, timings_s=timings)
    summary["provenance"] = args.provenance
    print(report.summary_table(summary, examples.description))
    if result.comparison is not None:
        print()
        print(report.comparison_table(result.comparison))
    _write_outputs(args, result, summary, [run for algo, run in runs.items() if run is not result])
    if spice_error is not None:
        print_error(PROG, spice_error)
        return EXIT_NGSPICE
    return report_problems(PROG, report.run_problems(summary))


def _run_training(args, config: ExperimentConfig) -> int:
    """--epochs: train over the dataset, print the per-epoch table, write JSON and CSV."""
    from analogdp import training

    checkpoint = None
    if args.checkpoint is not None:
        checkpoint = Checkpoint(args.checkpoint, args.checkpoint_every_s or DEFAULT_CHECKPOINT_EVERY_S)
    result = training.train(config, progress=lambda label, epoch, n: progress_counter(
        f"{label} epoch {epoch}", n, args.no_progress), checkpoint=checkpoint)
    summary = training.run_record(config, result, wall_time_s=time.perf_counter() - STARTED_S,
                                  provenance=args.provenance)
    print(training.epoch_table(result))
    if args.json is not None:
        report.write_json(args.json, summary)
    if args.csv is not None:
        result.to_csv(args.csv, provenance=args.provenance)
    if checkpoint is not None:
        checkpoint.remove()
    return report_problems(PROG, training.training_problems(result))


def _write_outputs(args, result, summary: dict, others: list) -> None:
    if args.json is not None:
        report.write_json(args.json, summary)
    if args.csv is not None:
        result.to_csv(args.csv, provenance=args.provenance, others=others)
    if args.dump is not None:
        result.to_npz(args.dump, summary)
    if args.plot is not None:
        report.plot_run(result, summary, args.plot, title_prefix=PROG)


def _spice_preflight(args, config: ExperimentConfig, examples) -> float | None:
    """Check the ngspice budget and export the netlist before the learning run."""
    estimate = None
    if args.spice_check:
        estimate = experiment.estimate_spice_seconds(config, transistor_level=args.transistor_level)
        if estimate > SPICE_LONG_RUN_S and not args.force:
            raise UsageError(f"--spice-check on {'x'.join(map(str, config.layers))} would take "
                             f"ngspice about {estimate:.0f} s (limit {SPICE_LONG_RUN_S:.0f} s); pass "
                             f"--force to run it anyway")
    if args.export_netlist is not None:
        experiment.export_netlist(config, examples, args.export_netlist, title_prefix=PROG,
                                  interactive=args.interactive, transistor_level=args.transistor_level)
        ep = config.algo in EP_ALGORITHMS
        print(f"netlist: {args.export_netlist} (first example, {'free phase, ' if ep else ''}"
              f"initial weights, from reset)")
    return estimate


if __name__ == "__main__":
    sys.exit(main())
