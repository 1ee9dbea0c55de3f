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
import json
import math
import re
import sys
from pathlib import Path

from sims.cli import (
    EXIT_USAGE,
    SPICE_LONG_RUN_S,
    OneLineParser,
    finite_float,
    layer_sizes,
    non_negative_float,
    non_negative_int,
    print_error,
    unit_interval_float,
)

PROG = "sims.spice_check"
EXIT_DISAGREE, EXIT_NGSPICE = 1, 3
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "ps": 1e-12}


def time_s(text: str) -> float:
    """'200e-9', '200ns' or '0.2us' -> seconds (positive, finite)."""
    match = re.fullmatch(r"\s*([0-9.eE+\-]+)\s*([munp]?s)?\s*", text)
    value = math.nan
    if match is not None:
        try:
            value = finite_float(match.group(1)) * _TIME_UNITS[match.group(2) or "s"]
        except argparse.ArgumentTypeError:
            pass
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive time such as 200e-9 or 200ns")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Run one network in ngspice and in the numba circuit solver over the same "
                    "window and compare waveforms, settling time, energy and wall time.",
        epilog="Exit status: 0 agree, 1 disagree beyond the tolerances, 2 bad arguments, "
               "3 ngspice missing or failed. Example: python -m sims.spice_check --layers 32x16x10")
    net = parser.add_argument_group("network (seeded random weights, one input, one-hot target)")
    net.add_argument("--layers", type=layer_sizes, default="32x16x10", metavar="N0xN1x...",
                     help="layer sizes, input first")
    net.add_argument("--neuron", choices=("dyad", "ep"), default="dyad",
                     help="two-compartment DP dyad, or single-compartment EP neuron")
    net.add_argument("--variant", choices=("dp", "dpT"), default="dp", help="DP variant (dyad neurons)")
    net.add_argument("--alpha", type=unit_interval_float, default=0.5, help="dyad mean weight alpha")
    net.add_argument("--beta", type=non_negative_float, default=0.5, help="nudge strength")
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
    sim = parser.add_argument_group("simulation")
    sim.add_argument("--t-stop", type=time_s, default="200ns", metavar="TIME",
                     help="transient window, in seconds (200e-9) or with a unit (200ns)")
    sim.add_argument("--t-step", type=time_s, default="1ns", metavar="TIME",
                     help="print step of .tran (also caps ngspice's time step)")
    sim.add_argument("--runner", choices=("subprocess", "shared"), default="subprocess",
                     help="ngspice -b in a subprocess, or libngspice in-process (PySpice)")
    out = parser.add_argument_group("output")
    out.add_argument("--export-netlist", type=Path, default=None, metavar="PATH",
                     help="also write the netlist that is run to PATH")
    out.add_argument("--json", type=Path, default=None, metavar="PATH",
                     help="write the figures as JSON to PATH")
    out.add_argument("--force", action="store_true",
                     help=f"run even when ngspice is estimated to need more than "
                          f"{SPICE_LONG_RUN_S:.0f} s, and overwrite an existing --export-netlist file")
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
    args = build_parser().parse_args(argv)
    from analogdp.circuit import dyad_neuron, ep_neuron
    from analogdp.spice import NgspiceError, NgspiceNotFound, cross_check, estimate_ngspice_seconds, write_netlist
    from analogdp.spice.examples import random_problem

    if args.t_step > args.t_stop:
        print_error(PROG, f"--t-step ({args.t_step:g} s) exceeds --t-stop ({args.t_stop:g} s)")
        return EXIT_USAGE
    for option, path in (("--export-netlist", args.export_netlist), ("--json", args.json)):
        if path is None:
            continue
        if not path.parent.is_dir():
            print_error(PROG, f"directory of {option} {path} does not exist")
            return EXIT_USAGE
        if path.is_dir():
            print_error(PROG, f"{option} {path} is a directory, expected a file name")
            return EXIT_USAGE
    if args.export_netlist is not None and args.export_netlist.exists() and not args.force:
        print_error(PROG, f"--export-netlist {args.export_netlist} exists; pass --force to overwrite it")
        return EXIT_USAGE
    kind = ep_neuron() if args.neuron == "ep" else dyad_neuron(args.variant, args.alpha)
    circuit, x, y = random_problem(args.layers, neuron_kind=kind, beta=args.beta, loss=args.loss,
                                   scheme=args.scheme, seed=args.seed, nudge=not args.no_nudge)
    try:
        circuit, device_model = _on_devices(circuit, args)
    except ValueError as error:
        print_error(PROG, str(error))
        return EXIT_USAGE
    estimate = estimate_ngspice_seconds(circuit, args.t_stop, t_step_s=args.t_step)
    if estimate > SPICE_LONG_RUN_S and not args.force:
        print_error(PROG, f"ngspice would take about {estimate:.0f} s for this network and window "
                          f"(limit {SPICE_LONG_RUN_S:.0f} s); pass --force to run it anyway")
        return EXIT_USAGE
    if estimate > 10:
        print(f"{PROG}: ngspice will take about {estimate:.0f} s", file=sys.stderr)
    if args.export_netlist is not None:
        write_netlist(circuit, x, y, args.export_netlist, t_stop_s=args.t_stop, t_step_s=args.t_step,
                      device_model=device_model)
        print(f"netlist written to {args.export_netlist}")
    try:
        check = cross_check(circuit, x, y, t_stop_s=args.t_stop, t_step_s=args.t_step, runner=args.runner)
    except NgspiceNotFound as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_NGSPICE
    except NgspiceError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_NGSPICE
    print(_table(check))
    if args.json is not None:
        report = check.as_dict()
        report["command"] = " ".join(["python", "-m", PROG] + (sys.argv[1:] if argv is None else list(argv)))
        report["estimated_ngspice_s"] = estimate
        report["device_model"] = device_model
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if check.passed() else EXIT_DISAGREE


if __name__ == "__main__":
    sys.exit(main())
