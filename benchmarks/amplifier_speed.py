"""Finite amplifiers: solver cost against the ideal circuit, and the ngspice cross-checks that are
too slow for the test suite.

Part 1 (side by side in one run): one warm settle of a 784-256-10 DP network (random weights, one
nudged example, from reset) with ideal amplifiers and with A0 = 60 dB amplifiers at 100 MHz (and
1 GHz); the ratio of wall and CPU times (target: at most 3x at 100 MHz). Part 2: the numba ODE
against ngspice running the exported macromodel netlist, A0 = 60 dB, offsets σ = 1 mV, on 6-4-3
and 64-32-10 at 100 MHz and 10 MHz (tolerances of analogdp.spice.compare). The last line printed
is one JSON object with every figure.

    python benchmarks/amplifier_speed.py [--repeats 3] [--no-spice]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace

import numpy as np

from analogdp.circuit.amplifiers import AmplifierParams
from analogdp.solver import settle
from analogdp.spice.compare import cross_check
from analogdp.spice.examples import random_problem

SPEED_NETWORK = (784, 256, 10)
SPICE_CASES = (((6, 4, 3), 100e6, 400e-9), ((6, 4, 3), 10e6, 3e-6), ((64, 32, 10), 100e6, 2e-6),
               ((64, 32, 10), 10e6, 15e-6))


def _timed(circuit, x, y, repeats: int) -> tuple[float, float, object]:
    settle(circuit, x, y)  # warm: compile, cache the packed circuit
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = settle(circuit, x, y)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return float(np.median(walls)), float(np.median(cpus)), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-spice", action="store_true", help="skip the ngspice cross-checks")
    args = parser.parse_args()
    figures: dict = {"network": "-".join(map(str, SPEED_NETWORK)), "load_average_before": os.getloadavg()[0]}
    circuit, x, y = random_problem(SPEED_NETWORK, seed=1)
    x, y = x[None], y[None]
    wall_ideal, cpu_ideal, ideal = _timed(circuit, x, y, args.repeats)
    figures["ideal"] = {"wall_s": wall_ideal, "cpu_s": cpu_ideal, "steps": int(ideal.n_steps[0]),
                        "settling_time_s": float(ideal.settling_time_s[0])}
    print(f"ideal amplifiers: {wall_ideal * 1e3:.2f} ms wall, {cpu_ideal * 1e3:.2f} ms CPU, "
          f"{ideal.n_steps[0]} steps")
    for gbw_hz in (1e9, 100e6):
        finite = replace(circuit, amplifier=AmplifierParams(a0_db=60.0, gbw_hz=gbw_hz))
        wall, cpu, result = _timed(finite, x, y, args.repeats)
        key = f"gbw_{gbw_hz:.0e}"
        figures[key] = {"wall_s": wall, "cpu_s": cpu, "wall_ratio": wall / wall_ideal, "cpu_ratio": cpu / cpu_ideal,
                        "steps": int(result.n_steps[0]), "rejected": int(result.n_rejected[0]),
                        "settling_time_s": float(result.settling_time_s[0]),
                        "slowest_stage_time_constant_s": float(result.amplifier_time_constants_s.max())}
        print(f"A0 60 dB, GBW {gbw_hz:.0e} Hz: {wall * 1e3:.1f} ms wall ({wall / wall_ideal:.0f}x), "
              f"{cpu * 1e3:.1f} ms CPU ({cpu / cpu_ideal:.0f}x), {result.n_steps[0]} steps, settling "
              f"{result.settling_time_s[0] * 1e9:.0f} ns (ideal {ideal.settling_time_s[0] * 1e9:.0f} ns)")
    if not args.no_spice:
        checks = []
        for sizes, gbw_hz, t_stop_s in SPICE_CASES:
            circuit, x1, y1 = random_problem(sizes, seed=1)
            finite = replace(circuit, amplifier=AmplifierParams(a0_db=60.0, gbw_hz=gbw_hz, offset_sigma_v=1e-3,
                                                                offset_seed=7))
            check = cross_check(finite, x1, y1, t_stop_s=t_stop_s, t_step_s=t_stop_s / 400)
            row = {"network": "-".join(map(str, sizes)), "gbw_hz": gbw_hz, "t_stop_s": t_stop_s,
                   "max_abs_dev_v": check.max_abs_dev_v, "final_abs_dev_v": check.final_abs_dev_v,
                   "settling_time_rel_dev": check.settling_time_rel_dev, "energy_rel_dev": check.energy_rel_dev,
                   "ngspice_wall_s": check.wall_time_s, "numba_wall_s": check.wall_time_numba_s,
                   "passed": check.passed(), "failures": check.failures()}
            checks.append(row)
            print(f"{row['network']} at {gbw_hz:.0e} Hz: max |dv| {check.max_abs_dev_v:.3g} V, final "
                  f"{check.final_abs_dev_v:.3g} V, settling {100 * check.settling_time_rel_dev:.3g} %, energy "
                  f"{100 * check.energy_rel_dev:.3g} %, ngspice {check.wall_time_s:.2f} s vs numba "
                  f"{check.wall_time_numba_s:.3f} s -> {'pass' if check.passed() else 'FAIL'}")
        figures["spice"] = checks
    figures["load_average_after"] = os.getloadavg()[0]
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
