"""ngspice against the numba circuit solver, side by side in one run.

    python benchmarks/spice_vs_numba.py                 # everything (about 4 minutes on an idle machine)
    python benchmarks/spice_vs_numba.py --quick         # skip 784-256-10

For each network: write the netlist, run it with ``ngspice -b`` (subprocess runner), settle the
same circuit and input with the numba solver over the same window, and report the wall time of
each, their ratio, and the agreement (max |dv| over the transient, final |dv|, settling times,
energies; see ``analogdp.spice.compare``). The numba time is the best of a few warm batch-1
settles over the window; the ngspice time is one run (loading the netlist and simulating).

Two groups:

- ratio cases: 64-32-10 and 256-128-10 over 200 ns, 784-256-10 over a shorter window
  (``--t-stop-largest``, default 100 ns: its ngspice run is the bulk of the benchmark);
- acceptance cases of the cross-check: 6-4-3 (dp, α = ½, β = 0.5), 64-32-10,
  32-16-16-10 (dpT, α = 0.3) and a single 128×64 layer, over 200 ns.

The machines are noisy; only ratios measured in the same run mean anything. The last line of
the output is one JSON object with the ratios, the accuracies and whether the targets are met
(ratio ≥ 1000 at 256-128-10 and ≥ 10 000 at 784-256-10, every case within the tolerances).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

from analogdp.spice import TOLERANCES, cross_check, estimate_ngspice_seconds
from analogdp.spice.examples import ACCEPTANCE_CASES, Example

RATIO_TARGETS = {"256-128-10": 1000.0, "784-256-10": 10000.0}


def ratio_cases(t_stop_largest_s: float, quick: bool) -> list[tuple[Example, float]]:
    cases = [(Example("64-32-10", (64, 32, 10)), 200e-9), (Example("256-128-10", (256, 128, 10)), 200e-9)]
    if not quick:
        cases.append((Example("784-256-10", (784, 256, 10)), t_stop_largest_s))
    return cases


def measure(example: Example, t_stop_s: float, runner: str) -> dict:
    circuit, x, y = example.build()
    estimate = estimate_ngspice_seconds(circuit, t_stop_s)
    print(f"[{example.name}] {circuit.n_devices} devices, {circuit.n_amplifiers} amplifiers, "
          f"{t_stop_s * 1e9:.0f} ns; ngspice estimated {estimate:.1f} s ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    check = cross_check(circuit, x, y, t_stop_s=t_stop_s, runner=runner)
    row = {
        "case": example.name, "layer_sizes": list(circuit.layer_sizes), "neuron_kind": circuit.neuron_kind.name,
        "t_stop_s": check.t_stop_s, "n_time_points": check.n_time_points,
        "wall_time_ngspice_s": check.wall_time_s, "wall_time_numba_s": check.wall_time_numba_s,
        "wall_time_ratio": check.wall_time_ratio, "estimated_ngspice_s": estimate,
        "max_abs_dev_v": check.max_abs_dev_v, "final_abs_dev_v": check.final_abs_dev_v,
        "settling_time_ngspice_s": check.settling_time_s, "settling_time_numba_s": check.settling_time_numba_s,
        "settling_time_rel_dev": check.settling_time_rel_dev,
        "energy_ngspice_j": check.energy_j, "energy_numba_j": check.energy_numba_j,
        "energy_rel_dev": check.energy_rel_dev, "passed": check.passed(), "failures": check.failures(),
        "benchmark_case_s": time.perf_counter() - start,
    }
    print(f"[{example.name}] ngspice {check.wall_time_s:.3f} s, numba {check.wall_time_numba_s * 1e3:.3f} ms, "
          f"ratio {check.wall_time_ratio:,.0f}; max |dv| {check.max_abs_dev_v:.2e} V, final |dv| "
          f"{check.final_abs_dev_v:.2e} V, settling {check.settling_time_s * 1e9:.2f}/"
          f"{check.settling_time_numba_s * 1e9:.2f} ns ({100 * check.settling_time_rel_dev:.3f} %), energy "
          f"{100 * check.energy_rel_dev:.4f} %  "
          f"{'AGREE' if check.passed() else 'DISAGREE ' + '; '.join(check.failures())}",
          flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--t-stop-largest", type=float, default=100e-9,
                        help="window of 784-256-10 in seconds (200e-9 takes ngspice about twice as long)")
    parser.add_argument("--runner", choices=("subprocess", "shared"), default="subprocess")
    parser.add_argument("--quick", action="store_true", help="leave out 784-256-10")
    args = parser.parse_args(argv)

    ratio_rows = [measure(example, t_stop, args.runner)
                  for example, t_stop in ratio_cases(args.t_stop_largest, args.quick)]
    acceptance_rows = [measure(example, 200e-9, args.runner) for example in ACCEPTANCE_CASES]
    ratios = {row["case"]: row["wall_time_ratio"] for row in ratio_rows}
    targets_met = {case: ratios[case] >= target for case, target in RATIO_TARGETS.items() if case in ratios}
    summary = {
        "benchmark": "spice_vs_numba",
        "runner": args.runner,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "wall_time_ratios": ratios,
        "ratio_targets": RATIO_TARGETS,
        "ratio_targets_met": targets_met,
        "tolerances": {"max_abs_dev_v": TOLERANCES.max_abs_dev_v, "final_abs_dev_v": TOLERANCES.final_abs_dev_v,
                       "settling_time_rel": TOLERANCES.settling_time_rel, "energy_rel": TOLERANCES.energy_rel},
        "all_within_tolerances": all(row["passed"] for row in ratio_rows + acceptance_rows),
        "ratio_cases": ratio_rows,
        "acceptance_cases": acceptance_rows,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
