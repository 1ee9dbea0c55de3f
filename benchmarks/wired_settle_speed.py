"""One settle of a 784-256-10 DP network with resistive wires against the ideal-wire settle,
side by side in one run (DESIGN §8.1).

Cases: ideal wires; 3 Ω per cell segment (22 nm, NeuroSim's 1T1R wire) on whole arrays; the same
in 256×256 tiles. For each: wall time of one settle (after a warm-up settle of the ideal circuit
compiles the kernels; the wired settles are not repeated, they take seconds), the ratio to the
ideal settle and per right-hand-side evaluation, RK steps and evaluations, line-relaxation
sweeps, whether it reached the equilibrium tolerance within ``--t-max-tau`` τ, settling time and
IR-drop error of crossbar 0. CPU times of this process are reported next to the wall times (the
machine is shared; the CPU ratio is the steadier figure). ``--cases`` runs some of the wired cases
only (the ideal settle always runs: it is the reference). The last line is one JSON object with the
figures.

    python benchmarks/wired_settle_speed.py [--layers 784x256x10] [--r-wire-ohm 3] [--cases wired_tiled]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analogdp.circuit.wires import WireParams  # noqa: E402
from analogdp.solver import SettleCriteria, settle  # noqa: E402
from analogdp.spice.examples import random_problem  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="784x256x10")
    parser.add_argument("--r-wire-ohm", type=float, default=3.0)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--t-max-tau", type=float, default=300.0,
                        help="time limit of a settle in neuron time constants (a wired settle that has not "
                             "reached the equilibrium tolerance by then is reported as not settled)")
    parser.add_argument("--cases", nargs="+", choices=["wired", "wired_tiled"], default=["wired", "wired_tiled"])
    args = parser.parse_args(argv)
    sizes = tuple(int(n) for n in args.layers.split("x"))
    circuit, x, y = random_problem(sizes)
    x, y = x[None, :], y[None, :]
    settle(circuit, x, y)  # compile
    cases = {"ideal": circuit,
             "wired": replace(circuit, wires=WireParams(r_row_segment_ohm=args.r_wire_ohm,
                                                        r_col_segment_ohm=args.r_wire_ohm)),
             "wired_tiled": replace(circuit, wires=WireParams(r_row_segment_ohm=args.r_wire_ohm,
                                                              r_col_segment_ohm=args.r_wire_ohm,
                                                              max_rows=args.tile, max_cols=args.tile))}
    cases = {name: c for name, c in cases.items() if name == "ideal" or name in args.cases}
    figures = {"layers": args.layers, "r_wire_ohm": args.r_wire_ohm, "tile": args.tile}
    ideal_s = ideal_cpu_s = None
    criteria = SettleCriteria(t_max_s=args.t_max_tau * circuit.neuron.tau_s)
    for name, c in cases.items():
        start, cpu_start = time.perf_counter(), time.process_time()
        result = settle(c, x, y, criteria=criteria, allow_unsettled=True)
        elapsed, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
        if ideal_s is None:
            timings = [(elapsed, cpu_s)] + [_timed(c, x, y) for _ in range(4)]
            ideal_s, ideal_cpu_s = min(t[0] for t in timings), min(t[1] for t in timings)
            ideal_evaluations = int(result.n_evaluations[0])
            elapsed, cpu_s = ideal_s, ideal_cpu_s
        row = {"wall_time_s": elapsed, "ratio_to_ideal": elapsed / ideal_s, "cpu_time_s": cpu_s,
               "cpu_ratio_to_ideal": cpu_s / ideal_cpu_s, "steps": int(result.n_steps[0]),
               "evaluations": int(result.n_evaluations[0]), "settling_time_s": float(result.settling_time_s[0]),
               "settled": bool(result.settled[0]), "distance_v": float(result.distance_v[0]),
               "per_evaluation_ratio": (elapsed / int(result.n_evaluations[0])) / (ideal_s / ideal_evaluations)
               if ideal_s else 1.0}
        if result.ir_drop is not None:
            row.update(grid_sweeps=int(result.grid_sweeps[0]), grid_solves=int(result.grid_solves[0]),
                       **{f"ir_drop_{k}": float(v[0]) for k, v in result.ir_drop[0].items()})
        figures[name] = row
        print(name, {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    print(json.dumps(figures))
    return 0


def _timed(circuit, x, y) -> tuple[float, float]:
    start, cpu_start = time.perf_counter(), time.process_time()
    settle(circuit, x, y)
    return time.perf_counter() - start, time.process_time() - cpu_start


if __name__ == "__main__":
    sys.exit(main())
