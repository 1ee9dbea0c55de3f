"""Solver speed on the 784-256-10 DP circuit, measured side by side in one run.

Prints a few readable lines, then, as its last line, one JSON object:
  batch1_settle_ms       median warm wall time of one batch-1 settle (target ≤ 10 ms)
  examples_per_second    at batch 100 (all CPUs)
  solve_ivp_over_numba   wall-time ratio for the same ODE, tolerance and window (target ≥ 20)
Run: python benchmarks/solver_speed.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from analogdp.circuit import NetworkCircuit, dyad_neuron
from analogdp.solver import StepController, settle, solve_ivp_reference


def build(sizes=(784, 256, 10), batch=100, seed=0):
    rng = np.random.default_rng(seed)
    weights = [rng.uniform(-1, 1, (sizes[k + 1], sizes[k])) / np.sqrt(sizes[k]) for k in range(len(sizes) - 1)]
    biases = [np.zeros(n) for n in sizes[1:]]
    circuit = NetworkCircuit.from_weights(weights, biases, neuron_kind=dyad_neuron("dp", 0.5), beta=0.1, loss="ce")
    x = rng.random((batch, sizes[0]))
    y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], batch)]
    return circuit, x, y


def wall(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30, help="timed repetitions per figure (default 30)")
    args = parser.parse_args()
    circuit, x, y = build()
    controller = StepController()
    settle(circuit, x[:1], y[:1])  # compile / load the kernel cache
    batch1_s = wall(lambda: settle(circuit, x[:1], y[:1], controller=controller), args.repeats)
    batch100_s = wall(lambda: settle(circuit, x, y, controller=controller), max(3, args.repeats // 10))
    one = settle(circuit, x[:1], y[:1], controller=controller)
    window_s = float(one.t_final_s[0])
    numba_window_s = wall(lambda: settle(circuit, x[:1], y[:1], controller=controller, t_end_s=window_s),
                          args.repeats)
    scipy_s = wall(lambda: solve_ivp_reference(circuit, x[0], y[0], t_stop_s=window_s, rtol=controller.rtol,
                                               atol_fraction=controller.atol_fraction),
                   max(3, args.repeats // 10))
    ref = solve_ivp_reference(circuit, x[0], y[0], t_stop_s=window_s, rtol=controller.rtol,
                              atol_fraction=controller.atol_fraction)
    deviation_v = float(np.abs(ref.y[:circuit.n_compartments, -1] - one.v_final_v[0]).max())
    figures = {
        "network": "784-256-10",
        "batch1_settle_ms": round(batch1_s * 1e3, 3),
        "batch1_steps": int(one.n_steps[0]),
        "examples_per_second": round(100 / batch100_s, 1),
        "numba_window_ms": round(numba_window_s * 1e3, 3),
        "solve_ivp_window_ms": round(scipy_s * 1e3, 3),
        "solve_ivp_over_numba": round(scipy_s / numba_window_s, 1),
        "solve_ivp_rhs_evaluations": int(ref.nfev),
        "numba_rhs_evaluations": int(one.n_evaluations[0]),
        "final_state_deviation_v": deviation_v,
        "window_s": window_s,
        "rtol": controller.rtol,
    }
    print(f"batch-1 settle of 784-256-10: {figures['batch1_settle_ms']} ms ({figures['batch1_steps']} steps)")
    print(f"batch 100: {figures['examples_per_second']} examples/s")
    print(f"same ODE and tolerance over {window_s * 1e9:.1f} ns: solve_ivp {figures['solve_ivp_window_ms']} ms, "
          f"numba {figures['numba_window_ms']} ms, ratio {figures['solve_ivp_over_numba']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
