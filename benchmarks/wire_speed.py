"""Speed of the crossbar wire-grid solve (analogdp.circuit.wires), side by side in one run.

    python benchmarks/wire_speed.py                 # 784x256 at 3 Ω per cell (22 nm)
    python benchmarks/wire_speed.py --rows 256 --cols 128

One differential layer of R rows × C weight columns (2C column lines), devices uniform in the
NeuroSim RRAM range (0.59–10 µS), rows at V_r·U(0, 1), column pairs at ±U(−V_r, V_r). Reported:

- ``ideal_s``: the ideal-wire terminal currents (two matrix-vector products; the floor);
- ``cold_s`` / ``cold_sweeps``: a grid solve from the ideal-wire state, the first one of a grid
  (it measures the Gauss–Seidel contraction and fixes the over-relaxation factor), and a second
  cold solve of the same grid (ω known);
- ``warm_*``: re-solves after the column drivers move by a random step of the given size (V), as
  between two right-hand-side evaluations of a settle; at the default tolerance (1e-13 V) and at
  a looser one;
- solves along a settle-like trajectory (the column pairs relax exponentially with spread time
  constants, sampled at RK4 stage times), warm-started from the previous solution only
  (history 1) or by superposition of the last four (history 4);
- the same with the layer split into ``--tile`` × ``--tile`` arrays;
- the IR-drop error of the layer (max and RMS relative deviation of the sensed forward and
  backward signals from the ideal-wire ones).

The last line is one JSON object with the figures. Later target (with the ODE): one settle with
wires ≤ 200× an ideal settle (≤ 100× tiled), so a warm re-solve must cost a few sweeps.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np

from analogdp.circuit.wires import (
    CrossbarGrid,
    TiledCrossbar,
    WireParams,
    ideal_currents,
    ir_drop_error,
    line_rc_s,
)


def _best(fn, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return float(best)


def _warm(grid, row_v, d, rng, step_v: float, repeats: int = 5) -> tuple[float, float]:
    """Mean time and sweeps of warm re-solves, each after the columns move by ~step_v."""
    times, sweeps = [], []
    for _ in range(repeats):
        d = d + step_v * rng.standard_normal(d.size)
        start = time.perf_counter()
        result = grid.solve(row_v, d, -d)
        times.append(time.perf_counter() - start)
        sweeps.append(result.sweeps)
    return float(np.mean(times)), float(np.mean(sweeps))


def trajectory(grid_factory, row_v, d_final, rng, tol_v: float, history: int, steps: int = 40,
               step_s: float = 2.5e-9) -> tuple[float, float]:
    """Mean time and sweeps per solve along a settle-like trajectory: each column pair relaxes
    as d_j(t) = d_j∞ (1 − e^{−t/τ_j}) with τ_j ∈ [5, 20] ns, evaluated at the stage times of
    classical RK4 (t, t + h/2, t + h/2, t + h) for 40 steps of h = 2.5 ns."""
    tau = rng.uniform(5e-9, 20e-9, d_final.size)
    grid = grid_factory(tol_v, history)
    times, sweeps = [], []
    grid.solve(row_v, 0 * d_final, 0 * d_final)
    for n in range(steps):
        for offset in (0.0, 0.5, 0.5, 1.0):
            t = (n + offset) * step_s
            d = d_final * (1.0 - np.exp(-t / tau))
            start = time.perf_counter()
            result = grid.solve(row_v, d, -d)
            times.append(time.perf_counter() - start)
            sweeps.append(result.sweeps)
    return float(np.mean(times)), float(np.mean(sweeps))


def measure(grid_factory, label: str, row_v, d, rng, loose_tol_v: float) -> dict:
    grid = grid_factory(1e-13, 4)
    start = time.perf_counter()
    first = grid.solve(row_v, d, -d)
    first_s = time.perf_counter() - start
    grid.reset()
    start = time.perf_counter()
    second = grid.solve(row_v, d, -d)
    cold_s = time.perf_counter() - start
    row = {"first_cold_s": first_s, "first_cold_sweeps": first.sweeps, "cold_s": cold_s, "cold_sweeps": second.sweeps}
    for step_v in (1e-3, 1e-5):
        t, s = _warm(grid, row_v, d, rng, step_v)
        row[f"warm_step_{step_v:g}_v_s"], row[f"warm_step_{step_v:g}_v_sweeps"] = t, s
    loose = grid_factory(loose_tol_v, 4)
    loose.solve(row_v, d, -d)
    t, s = _warm(loose, row_v, d, rng, 1e-3)
    row[f"warm_step_0.001_v_tol_{loose_tol_v:g}_s"], row[f"warm_step_0.001_v_tol_{loose_tol_v:g}_sweeps"] = t, s
    for tol_v in (1e-13, loose_tol_v):
        for history in (1, 4):
            tt, ss = trajectory(grid_factory, row_v, d, rng, tol_v, history)
            row[f"trajectory_tol_{tol_v:g}_history_{history}_s"] = tt
            row[f"trajectory_tol_{tol_v:g}_history_{history}_sweeps"] = ss
            print(f"[{label}] settle-like trajectory, tol {tol_v:g} V, history {history}: {tt * 1e3:.1f} ms, "
                  f"{ss:.1f} sweeps per solve", flush=True)
    print(f"[{label}] first cold {first_s * 1e3:.1f} ms ({first.sweeps} sweeps), cold {cold_s * 1e3:.1f} ms "
          f"({second.sweeps}), warm after 1 mV {row['warm_step_0.001_v_s'] * 1e3:.1f} ms "
          f"({row['warm_step_0.001_v_sweeps']:.1f}), after 10 µV {row['warm_step_1e-05_v_s'] * 1e3:.1f} ms "
          f"({row['warm_step_1e-05_v_sweeps']:.1f}), after 1 mV at tol {loose_tol_v:g} V "
          f"{t * 1e3:.1f} ms ({s:.1f})", flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=784)
    parser.add_argument("--cols", type=int, default=256, help="weight columns (pairs of lines)")
    parser.add_argument("--ohm-per-cell", type=float, default=3.0)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--loose-tol", type=float, default=1e-9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    g_pos = rng.uniform(10e-6 / 17, 10e-6, (args.rows, args.cols))
    g_neg = rng.uniform(10e-6 / 17, 10e-6, (args.rows, args.cols))
    row_v = 0.2 * rng.random(args.rows)
    d = rng.uniform(-0.2, 0.2, args.cols)
    wires = WireParams(r_row_segment_ohm=args.ohm_per_cell, r_col_segment_ohm=args.ohm_per_cell)
    tiled_wires = WireParams(r_row_segment_ohm=args.ohm_per_cell, r_col_segment_ohm=args.ohm_per_cell,
                             max_rows=args.tile, max_cols=args.tile)
    # compile once (numba caches to disk; the first call of a fresh checkout compiles)
    CrossbarGrid(g_pos[:4, :3], g_neg[:4, :3], wires).solve(row_v[:4], d[:3], -d[:3])
    ideal_s = _best(lambda: ideal_currents(g_pos, g_neg, row_v, d, -d))
    print(f"[{args.rows}x{args.cols}] ideal currents {ideal_s * 1e3:.2f} ms", flush=True)
    whole = measure(lambda tol, h: CrossbarGrid(g_pos, g_neg, wires, tol_v=tol, history=h), f"{args.rows}x{args.cols}",
                    row_v, d, rng, args.loose_tol)
    tiled = measure(lambda tol, h: TiledCrossbar(g_pos, g_neg, tiled_wires, tol_v=tol, history=h),
                    f"{args.rows}x{args.cols} in {args.tile}x{args.tile} tiles", row_v, d, rng, args.loose_tol)
    error = ir_drop_error(g_pos, g_neg, wires, row_v, d, -d)
    error_tiled = ir_drop_error(g_pos, g_neg, tiled_wires, row_v, d, -d)
    print(f"IR-drop error: forward max {error['forward_max_rel']:.3g} rms {error['forward_rms_rel']:.3g}, "
          f"backward max {error['backward_max_rel']:.3g} rms {error['backward_rms_rel']:.3g}; tiled forward max "
          f"{error_tiled['forward_max_rel']:.3g}, backward max {error_tiled['backward_max_rel']:.3g}", flush=True)
    rc = line_rc_s(max(args.rows, 2 * args.cols), args.ohm_per_cell)
    summary = {
        "benchmark": "wire_speed", "machine": {"platform": platform.platform()},
        "rows": args.rows, "weight_columns": args.cols, "ohm_per_cell": args.ohm_per_cell, "tile": args.tile,
        "ideal_s": ideal_s, "whole": whole, "tiled": tiled,
        "warm_to_ideal_ratio": whole["warm_step_0.001_v_s"] / ideal_s,
        "warm_tiled_to_ideal_ratio": tiled["warm_step_0.001_v_s"] / ideal_s,
        "trajectory_to_ideal_ratio": whole[f"trajectory_tol_{args.loose_tol:g}_history_4_s"] / ideal_s,
        "trajectory_tiled_to_ideal_ratio": tiled[f"trajectory_tol_{args.loose_tol:g}_history_4_s"] / ideal_s,
        "ir_drop_error": error, "ir_drop_error_tiled": error_tiled,
        "longest_line_rc_s": rc,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
