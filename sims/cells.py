"""Characterise the SKY130 transistor-level cells in ngspice (DESIGN §10).

    python -m sims.cells                 # every cell, 5 corners x (-40, 27, 125) °C
    python -m sims.cells --quick         # tt at 27 °C only
    python -m sims.cells --json cells.json --amplifiers-json sky130-tt.json
    python -m sims.cells --cells compartment --corners ss,ff    # a subset

Prints one line per cell, corner and temperature, then per cell its figures at tt/27 °C beside
the worst over the measured corners (and where), and the corners that miss the bounds of DESIGN
§10.2 (phase margin ≥ 45°; the compartment settles a 10 %-of-V_r step to 0.1 % within 2 × 6.9 τ).

``--json`` writes every figure (with the
compartment's measured transfer curve), ``--amplifiers-json`` the macromodel parameters at
tt/27 °C (the format of the committed ``analogdp/spice/amplifier_sets/sky130-tt.json``).
Outputs are written to a temporary file and renamed into place.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from sims.cli import (EXIT_STATUS_HELP, OVERWRITE_POLICY, OneLineParser, UsageError,
                      add_version_option, check_outputs, run_command)

PROG = "python -m sims.cells"


def _parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0],
                           epilog=f"{EXIT_STATUS_HELP} {OVERWRITE_POLICY}")
    add_version_option(parser)
    parser.add_argument("--quick", action="store_true", help="tt corner at 27 °C only")
    parser.add_argument("--corners", default=None, help="comma-separated subset of tt,ff,ss,fs,sf")
    parser.add_argument("--cells", default=None, help="comma-separated subset of line_holder,compartment")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--amplifiers-json", type=Path, default=None,
                        help="write the tt/27 °C macromodel parameters here")
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_command(PROG, lambda: _run(args))


def _run(args) -> int:
    from analogdp.spice import sky130

    try:
        corners = ("tt",) if args.quick else sky130.CORNERS
        if args.corners:
            corners = tuple(c.strip() for c in args.corners.split(","))
            unknown = [c for c in corners if c not in sky130.CORNERS]
            if unknown:
                raise ValueError(f"--corners: unknown corner(s) {', '.join(unknown)}; "
                                 f"choose from {','.join(sky130.CORNERS)}")
        temperatures = (27.0,) if args.quick else sky130.TEMPERATURES_C
        cells = tuple(sky130.CELLS)
        if args.cells:
            cells = tuple(c.strip() for c in args.cells.split(","))
            unknown = [c for c in cells if c not in sky130.CELLS]
            if unknown:
                raise ValueError(f"--cells: unknown cell(s) {', '.join(unknown)}; choose from {','.join(sky130.CELLS)}")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_outputs({"--json": args.json, "--amplifiers-json": args.amplifiers_json}, force=args.force)
    if args.amplifiers_json and not ("tt" in corners and 27.0 in temperatures and set(cells) == set(sky130.CELLS)):
        raise UsageError("--amplifiers-json needs every cell and the tt corner at 27 °C in the run")
    try:
        sky130.model_library()
    except sky130.PdkNotFound as exc:
        raise UsageError(str(exc)) from None
    figures = []
    print(f"{'cell':12s} {'corner':6s} {'T/°C':>5s} {'A0/dB':>6s} {'GBW/MHz':>8s} {'PM/°':>5s} "
          f"{'SR/(V/µs)':>9s} {'swing/V':>15s} {'σos/mV':>6s} {'P/µW':>6s} {'t_s/ns':>6s}")
    for cell in cells:
        for corner in corners:
            for f in sky130.characterise(cell, corner, temperatures):
                figures.append(f)
                print(f"{f.cell:12s} {f.corner:6s} {f.temperature_c:5.0f} {f.a0_db:6.1f} {f.gbw_hz / 1e6:8.2f} "
                      f"{f.phase_margin_deg:5.1f} {f.slew_rate_v_per_s / 1e6:9.0f} "
                      f"{f.swing_low_v:+7.3f}..{f.swing_high_v:+6.3f} {f.offset_sigma_v * 1e3:6.2f} "
                      f"{f.static_power_w * 1e6:6.2f} {(f.settling_time_s or 0) * 1e9:6.1f}", flush=True)
    worst = sky130.worst_corners(figures)
    misses = sky130.acceptance(figures)
    print(_worst_table(figures, worst))
    print("bounds (PM >= 45°, compartment 10 % step to 0.1 % <= 2 x 6.9 tau = 138 ns): "
          + ("met at every measured corner" if not misses else "MISSED: " + "; ".join(misses)))
    if args.json:
        sky130.write_json_atomically(args.json, {"pdk_licence": sky130.PDK_LICENCE,
                                                 "figures": [asdict(f) for f in figures],
                                                 "worst_corners": worst, "bound_misses": misses})
    if args.amplifiers_json:
        nominal = [f for f in figures if f.corner == "tt" and f.temperature_c == 27.0]
        sky130.write_json_atomically(args.amplifiers_json, {
            "name": "sky130-tt", "corner": "tt", "temperature_c": 27.0, "v_r_v": sky130.CHARACTERISATION_V_R_V,
            "pdk": f"{sky130.PDK_DISTRIBUTION} ({sky130.PDK_LICENCE})",
            "cells": sky130.macromodel_parameters(nominal),
            "transfer_curve_compartment": {
                "u": next(f.transfer_u for f in nominal if f.cell == "compartment"),
                "v_v": next(f.transfer_v for f in nominal if f.cell == "compartment")}})
    return 0


_WORST_ROWS = (("a0_db", "A0/dB", 1.0, ".1f"), ("gbw_hz", "GBW/MHz", 1e-6, ".2f"),
               ("phase_margin_deg", "PM/°", 1.0, ".1f"), ("slew_rate_v_per_s", "SR/(V/µs)", 1e-6, ".0f"),
               ("swing_span_v", "swing span/V", 1.0, ".3f"), ("swing_low_v", "swing low/V", 1.0, "+.4f"),
               ("static_power_w", "P/µW", 1e6, ".2f"), ("settling_time_s", "t_s/ns", 1e9, ".1f"))


def _worst_table(figures, worst) -> str:
    lines = ["", f"{'cell':12s} {'figure':14s} {'tt/27 °C':>10s} {'worst':>10s}  where"]
    for cell, by_figure in worst.items():
        nominal = next((f for f in figures if f.cell == cell and f.corner == "tt" and f.temperature_c == 27.0), None)
        from analogdp.spice.sky130 import figure_values

        nominal_values = figure_values(nominal) if nominal is not None else {}
        for name, label, scale, fmt in _WORST_ROWS:
            if name not in by_figure:
                continue
            w = by_figure[name]
            tt = nominal_values.get(name)
            tt_text = format(tt * scale, fmt) if tt is not None else "-"
            lines.append(f"{cell:12s} {label:14s} {tt_text:>10s} {format(w['value'] * scale, fmt):>10s}  "
                         f"{w['corner']} {w['temperature_c']:g} °C")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
