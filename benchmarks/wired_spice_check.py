"""ngspice against the numba solver with resistive crossbar wires (DESIGN §8.1), every case of the
wire acceptance list in one run.

Cases (V_r = 0.2 V, 200 ns window, DP α = 1/2, β = 0.5, seeded random weights): a single 16×8
and 128×64 layer, a 64-32-10 network, and a 96-40-10 network in 32×32 tiles, each at 1 Ω and
10 Ω per cell segment of row and column lines. For each case the figures of
:func:`analogdp.spice.cross_check` (max |Δv| over the transient, final |Δv|, settling time and
energy relative deviations, pass/fail against the tolerances 1 mV, 10 µV, 2 %, 1 %), ngspice's
wall time and the numba solver's (best warm settle over the same window, ``--time-numba``), and
the CPU times of the ngspice process and of this process (the numba side: comparison settle plus
timed settles) next to the wall times (the machine is shared).
Cases run one at a time; ``--cases`` picks some (names as printed, e.g. ``layer_128x64_10ohm``).
``--max-step-tau`` sets ngspice's largest time step (and the print step) as a fraction of τ for
every case; by default it is 0.1 (the netlist default) except for the 128×64 cases, which run at
0.5: ngspice-39's sparse LU of the 128×64 wire mesh costs about 5 s of CPU per Newton iteration
and every time point takes two, so τ/2 (about 80 instead of 220 time points) makes a 12–13 min
run of what would be about 40 min (DESIGN §8.1). ``--timeout-s`` ends an ngspice run
that takes longer. The last line is one JSON object with the figures.

    python benchmarks/wired_spice_check.py [--cases NAME ...] [--no-time-numba] [--max-step-tau F]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analogdp.circuit.wires import WireParams  # noqa: E402
from analogdp.spice import cross_check  # noqa: E402
from analogdp.spice.examples import random_problem  # noqa: E402
from analogdp.spice.netlist import SpiceOptions  # noqa: E402

# largest ngspice step as a fraction of tau where the default 0.1 is not used (see the docstring)
MAX_STEP_TAU = {"layer_128x64": 0.5}
SHAPES = {"layer_16x8": ((16, 8), None), "layer_128x64": ((128, 64), None), "net_64x32x10": ((64, 32, 10), None),
          "tiled_96x40x10": ((96, 40, 10), 32)}
RESISTANCES_OHM = (1.0, 10.0)


def cases() -> dict[str, tuple[tuple[int, ...], int | None, float, float]]:
    return {f"{name}_{r:g}ohm": (sizes, tile, r, MAX_STEP_TAU.get(name, 0.1))
            for name, (sizes, tile) in SHAPES.items() for r in RESISTANCES_OHM}


def run_case(sizes, tile, r_ohm, *, time_numba: bool, max_step_tau: float = 0.1,
             timeout_s: float | None = None) -> dict:
    circuit, x, y = random_problem(sizes)
    wires = WireParams(r_row_segment_ohm=r_ohm, r_col_segment_ohm=r_ohm, max_rows=tile, max_cols=tile)
    cpu_start, children_start = time.process_time(), _children_cpu_s()
    # the print step follows the largest step: ngspice steps no further than either
    t_step_s = max_step_tau * circuit.neuron.tau_s
    check = cross_check(replace(circuit, wires=wires), x, y, time_numba=time_numba, t_step_s=t_step_s,
                        options=SpiceOptions(max_step_tau=max_step_tau), timeout_s=timeout_s)
    ngspice_cpu_s = _children_cpu_s() - children_start
    return {"sizes": list(sizes), "tile": tile, "r_wire_ohm": r_ohm, "passed": check.passed(),
            "failures": check.failures(), "max_abs_dev_v": check.max_abs_dev_v,
            "final_abs_dev_v": check.final_abs_dev_v, "settling_time_s": check.settling_time_s,
            "settling_time_rel_dev": check.settling_time_rel_dev, "energy_rel_dev": check.energy_rel_dev,
            "ngspice_wall_s": check.wall_time_s, "numba_wall_s": check.wall_time_numba_s,
            "ngspice_over_numba": check.wall_time_ratio, "ngspice_cpu_s": ngspice_cpu_s,
            "numba_cpu_s_total": time.process_time() - cpu_start,
            "time_points": check.n_time_points, "max_step_tau": max_step_tau,
            "operating_point": check.operating_point_abs_dev_v is not None}


def _children_cpu_s() -> float:
    """CPU time (user + system) of the finished child processes (the ngspice runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _positive(text: str) -> float:
    value = float(text)
    if not (value > 0.0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def main(argv=None) -> int:
    all_cases = cases()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(all_cases), default=list(all_cases))
    parser.add_argument("--no-time-numba", dest="time_numba", action="store_false",
                        help="skip the timed numba settles (the comparison itself still runs)")
    parser.add_argument("--max-step-tau", type=_positive, default=None,
                        help="ngspice's largest time step and print step as a fraction of tau, for every case "
                             "(default 0.1; 0.5 for the 128x64 cases)")
    parser.add_argument("--timeout-s", type=_positive, default=None,
                        help="end an ngspice run that takes longer than this (default: no limit)")
    args = parser.parse_args(argv)
    figures = {}
    for name in args.cases:
        sizes, tile, r_ohm, case_tau = all_cases[name]
        start = time.perf_counter()
        row = run_case(sizes, tile, r_ohm, time_numba=args.time_numba, max_step_tau=args.max_step_tau or case_tau,
                       timeout_s=args.timeout_s)
        row["case_wall_s"] = time.perf_counter() - start
        figures[name] = row
        print(name, {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    figures["all_passed"] = all(row["passed"] for row in figures.values())
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
