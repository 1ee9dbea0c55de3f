"""Cross-check the numba circuit solver against ngspice on one network and one input.

    python -m sims.spice_check --layers 32x16x10
    python -m sims.spice_check --layers 64x32x10 --variant dpT --alpha 0.3 --runner shared \\
        --export-netlist /tmp/net.cir --json /tmp/check.json

Builds a network with seeded random weights (analogdp.spice.examples.random_problem), writes
its ngspice netlist, runs it, settles the same circuit with the numba solver over the same
window, and prints max |dv| over the transient, final |dv|, the settling time and the energy
of each, and the wall time of each, against the tolerances of the cross-check.

Exit status: 0 the simulators agree within the tolerances; 1 they do not; 2 bad arguments
(one line on stderr); 3 ngspice is missing or failed (its own words on stderr).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from analogdp.experiment import ExperimentConfig
from sims.cli import (EXIT_FAILED, EXIT_STATUS_HELP, OVERWRITE_POLICY, SPICE_LONG_RUN_S, OneLineParser,
                      UsageError, add_version_option, field_type, check_outputs, command_line, layer_sizes,
                      non_negative_int, run_command, timeout_seconds, unit_interval_float)

PROG = "sims.spice_check"
# SI prefixes of a time; exact decimal scaling, so that '50us' is 5e-05 s and not 4.9999999999999996e-05.
_TIME_UNITS = {"s": 0, "ms": -3, "us": -6, "µs": -6, "ns": -9, "ps": -12}
_TIME = re.compile(r"\s*([0-9.eE+\-]+)\s*(s|ms|us|µs|ns|ps)?\s*")


def time_s(text: str) -> float:
    """'200e-9', '200ns', '0.2us' or '50us' -> seconds (positive, finite), scaled exactly."""
    from decimal import Decimal, InvalidOperation

    match = _TIME.fullmatch(text)
    value = math.nan
    if match is not None:
        try:
            value = float(Decimal(match.group(1)).scaleb(_TIME_UNITS[match.group(2) or "s"]))
        except (InvalidOperation, ValueError):
            pass
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive time such as 200e-9 or 200ns")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Run one network in ngspice and in the numba circuit solver over the same "
                    "window and compare waveforms, settling time, energy and wall time.",
        epilog=f"{EXIT_STATUS_HELP} (1: the simulators disagree beyond the tolerances, or the numba "
               f"solver hit a limit.) {OVERWRITE_POLICY} Example: python -m sims.spice_check --layers 32x16x10")
    add_version_option(parser)
    net = parser.add_argument_group("network (seeded random weights, one input, one-hot target)")
    net.add_argument("--layers", type=layer_sizes, default="32x16x10", metavar="N0xN1x...",
                     help="layer sizes, input first")
    net.add_argument("--neuron", choices=("dyad", "ep"), default="dyad",
                     help="two-compartment DP dyad, or single-compartment EP neuron")
    net.add_argument("--variant", choices=("dp", "dpT"), default="dp", help="DP variant (dyad neurons)")
    net.add_argument("--alpha", type=unit_interval_float, default=0.5, help="dyad mean weight alpha")
    net.add_argument("--beta", type=field_type(ExperimentConfig, "beta"), default=0.5,
                     help="nudge strength β > 0 (EP neurons need β < 1)")
    net.add_argument("--no-nudge", action="store_true", help="no target: the output is not nudged")
    net.add_argument("--loss", choices=("mse", "ce"), default="mse", help="loss whose gradient nudges the output")
    net.add_argument("--scheme", choices=("bidirectional", "dual-array"), default="bidirectional",
                     help="one crossbar for both directions, or a separate transposed feedback array")
    net.add_argument("--seed", type=non_negative_int, default=0, help="seed of weights, input and target")
    from analogdp.circuit.presets import PRESETS

    net.add_argument("--device", choices=PRESETS, default="ideal",
                     help="device response model (DESIGN §7.3): the conductances are those the devices hold "
                          "(own bounds, stuck devices) and, with read or write noise, one read of them")
    net.add_argument("--device-param", action="append", default=None, metavar="NAME=VALUE",
                     help="override one field of the device model (repeatable), e.g. read_noise=0.02")
    net.add_argument("--weights", default=None, metavar="PATH.npz",
                     help="trained weights (sims.train --save-weights, or a --dump) instead of random ones")
    sim = parser.add_argument_group("simulation")
    sim.add_argument("--t-stop", type=time_s, default="200ns", metavar="TIME",
                     help="transient window, in seconds (200e-9) or with a unit (200ns)")
    sim.add_argument("--t-step", type=time_s, default="1ns", metavar="TIME",
                     help="print step of .tran (also caps ngspice's time step)")
    sim.add_argument("--runner", choices=("subprocess", "shared"), default="subprocess",
                     help="ngspice -b in a subprocess, or libngspice in-process (PySpice)")
    sim.add_argument("--transistor-level", action="store_true",
                     help="run the network with SKY130 transistor-level line holders and compartments "
                          "(DESIGN §10.5) and compare with the numba ODE of --reference")
    sim.add_argument("--reference", choices=("ideal", "macromodel", "transfer-curve", "macromodel-clip",
                                             "macromodel-uniform"), default="ideal",
                     help="with --transistor-level: the ODE compared with: ideal amplifiers, the characterised "
                          "sky130-tt macromodel per stage kind with the compartment's measured transfer curve "
                          "(macromodel-clip: its swing as the clip; macromodel-uniform: the line holder for "
                          "every stage), or ideal amplifiers with hidden compartments on the measured curve")
    out = parser.add_argument_group("output")
    out.add_argument("--export-netlist", type=Path, default=None, metavar="PATH",
                     help="also write the netlist that is run to PATH")
    out.add_argument("--interactive", action="store_true",
                     help="export the netlist without the batch control block, for the ngspice prompt")
    out.add_argument("--json", type=Path, default=None, metavar="PATH",
                     help="write the figures as JSON to PATH")
    sim.add_argument("--ngspice-timeout-s", type=timeout_seconds, default=None, metavar="S",
                     help="stop an ngspice run that takes longer, seconds (default: ten times its "
                          "estimated time plus 60 s)")
    out.add_argument("--force", action="store_true",
                     help=f"run even when ngspice is estimated to need more than "
                          f"{SPICE_LONG_RUN_S:.0f} s, and replace existing output files")
    out.add_argument("--no-progress", action="store_true",
                     help="accepted for symmetry with the other commands (this one shows no progress bar)")
    return parser


def _table(check) -> str:
    d = check.as_dict()
    rows = [
        ("network", f"{'-'.join(map(str, check.layer_sizes))} {check.neuron_kind} {check.scheme}"),
        ("window", f"{check.t_stop_s * 1e9:.1f} ns, {check.n_time_points} ngspice points"),
        ("max |dv| over transient", f"{check.max_abs_dev_v:.3e} V (tolerance {check.tolerances.max_abs_dev_v:.0e} V)"),
        ("final |dv|", f"{check.final_abs_dev_v:.3e} V (tolerance {check.tolerances.final_abs_dev_v:.0e} V)"),
        ("settling time 0.1 %", f"ngspice {check.settling_time_s * 1e9:.3f} ns, numba "
                                f"{check.settling_time_numba_s * 1e9:.3f} ns "
                                f"({100 * check.settling_time_rel_dev:.3f} %)"),
        ("settling time 1 %", f"ngspice {check.settling_time_1pct_s * 1e9:.3f} ns, numba "
                              f"{check.settling_time_1pct_numba_s * 1e9:.3f} ns"),
        ("energy (xbar+neuron+cap)", f"ngspice {check.energy_j:.6e} J, numba {check.energy_numba_j:.6e} J "
                                     f"({100 * check.energy_rel_dev:.4f} %)"),
        ("static amplifier energy", f"{check.amplifier_static_energy_j:.4e} J (same in both)"),
        ("wall time", f"ngspice {check.wall_time_s:.3f} s ({check.runner}), numba "
                      f"{check.wall_time_numba_s * 1e3:.3f} ms, ratio {d['wall_time_ratio']:.0f}"),
        ("ngspice", check.ngspice_version),
        ("verdict", "AGREE" if check.passed() else "DISAGREE: " + "; ".join(check.failures())),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _on_devices(circuit, args):
    """The circuit as the chosen devices hold it and one settle reads it, and the model's
    description. Bad presets or parameters raise ValueError naming them."""
    from analogdp.circuit.presets import device_from_preset, parse_device_param
    from analogdp.programming import ConductanceProgrammer

    overrides = dict(parse_device_param(text) for text in args.device_param or ())
    model = device_from_preset(args.device, circuit.device, **overrides)
    programmer = ConductanceProgrammer(seed=[args.seed, 2], device_model=model)
    return programmer.seen_circuit(programmer.prepare(circuit)), model.describe()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    command = command_line(f"python -m {PROG}", argv)
    return run_command(PROG, lambda: _run(args, command))


def check_arguments(args) -> None:
    if args.t_step > args.t_stop:
        raise UsageError(f"--t-step ({args.t_step:g} s) exceeds --t-stop ({args.t_stop:g} s)")
    if args.neuron == "ep" and not args.beta < 1.0:
        raise UsageError(f"--beta {args.beta:g}: EP neurons need β below 1 (the −β output stage is "
                         f"unstable otherwise)")
    if args.neuron == "ep" and (args.variant != "dp" or args.alpha != 0.5):
        raise UsageError("--variant and --alpha set the dyad; EP neurons have one compartment")
    check_outputs({"--export-netlist": args.export_netlist, "--json": args.json}, force=args.force)
    if args.interactive and args.export_netlist is None:
        raise UsageError("--interactive applies to --export-netlist")


def _run(args, command: str) -> int:
    from analogdp.circuit import dyad_neuron, ep_neuron
    from analogdp.experiment import load_weights, ngspice_timeout_s
    from analogdp.report import provenance, write_json
    from analogdp.spice import SpiceOptions, cross_check, estimate_ngspice_seconds, write_netlist
    from analogdp.spice.examples import random_problem

    check_arguments(args)
    record = provenance(command)
    kind = ep_neuron() if args.neuron == "ep" else dyad_neuron(args.variant, args.alpha)
    loaded = None if args.weights is None else load_weights(args.weights, args.layers)
    circuit, x, y = random_problem(args.layers, neuron_kind=kind, beta=args.beta, loss=args.loss,
                                   scheme=args.scheme, seed=args.seed, nudge=not args.no_nudge,
                                   weights_and_biases=loaded)
    try:
        circuit, device_model = _on_devices(circuit, args)
    except ValueError as error:
        raise UsageError(str(error)) from None
    estimate = estimate_ngspice_seconds(circuit, args.t_stop, t_step_s=args.t_step)
    if estimate > SPICE_LONG_RUN_S and not args.force:
        raise UsageError(f"ngspice would take about {estimate:.0f} s for this network and window "
                         f"(limit {SPICE_LONG_RUN_S:.0f} s); pass --force to run it anyway")
    if estimate > 10:
        print(f"{PROG}: ngspice will take about {estimate:.0f} s", file=sys.stderr)
    if args.transistor_level:
        return _run_transistor_level(args, circuit, x, y, record)
    if args.export_netlist is not None:
        write_netlist(circuit, x, y, args.export_netlist, t_stop_s=args.t_stop, t_step_s=args.t_step,
                      device_model=device_model, options=SpiceOptions(interactive=args.interactive))
        print(f"netlist written to {args.export_netlist}")
    check = cross_check(circuit, x, y, t_stop_s=args.t_stop, t_step_s=args.t_step, runner=args.runner,
                        timeout_s=args.ngspice_timeout_s or ngspice_timeout_s(estimate))
    print(_table(check))
    if args.json is not None:
        report = check.as_dict()
        report["command"] = record["command"]
        report["provenance"] = record
        report["estimated_ngspice_s"] = estimate
        report["device_model"] = device_model
        write_json(args.json, report)
    return 0 if check.passed() else EXIT_FAILED


def _run_transistor_level(args, circuit, x, y, record) -> int:
    from analogdp.report import write_json
    from analogdp.spice.transistor_check import transistor_cross_check

    if args.runner != "subprocess" or args.neuron != "dyad" or args.scheme != "bidirectional":
        raise UsageError("--transistor-level runs dyad neurons in the bidirectional scheme with the subprocess runner")
    try:
        check = transistor_cross_check(circuit, x, y, reference=args.reference, t_stop_s=args.t_stop,
                                       t_step_s=args.t_step, timeout_s=args.ngspice_timeout_s,
                                       netlist_path=args.export_netlist)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.export_netlist is not None:
        print(f"netlist written to {args.export_netlist}")
    rows = [
        ("network", f"{'-'.join(map(str, check.layer_sizes))} {check.neuron_kind}, SKY130 {check.corner}, "
                    f"reference: numba {check.reference}"),
        ("window", f"{check.t_stop_s * 1e9:.1f} ns, {check.n_time_points} ngspice points"),
        ("settled |dv|", f"{check.final_abs_dev_v:.3e} V = {100 * check.final_abs_dev_rel_v_r:.2f} % of V_r"),
        ("settling time 0.1 %", f"transistors {check.settling_time_s * 1e9:.1f} ns, numba "
                                f"{check.settling_time_reference_s * 1e9:.1f} ns "
                                f"({100 * check.settling_time_rel_dev:.1f} %)"),
        ("energy (xbar+neuron+cap)", f"transistors {check.energy_j:.4e} J, numba {check.energy_reference_j:.4e} J "
                                     f"({100 * check.energy_rel_dev:.1f} %)"),
        ("dyad difference cosine", f"{check.dyad_cosine:.5f}"),
        ("supply energy", f"transistors {check.supply_energy_j:.4e} J, "
                          f"numba static {check.static_energy_reference_j:.4e} J"),
        ("wall time", f"ngspice {check.wall_time_s:.1f} s"),
        ("verdict", "AGREE" if check.passed() else "DISAGREE: " + "; ".join(check.failures())),
    ]
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    if args.json is not None:
        report = check.as_dict()
        report["command"] = record["command"]
        report["provenance"] = record
        write_json(args.json, report)
    return 0 if check.passed() else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
