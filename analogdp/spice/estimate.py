"""How long ngspice will take on a netlist of :func:`write_netlist`, before running it.

Model: wall time = (number of ngspice time points) × (time per point).

- Time points: ngspice takes small steps while the compartments move fast and then steps at
  the largest step TMAX = min(print step, ``max_step_tau`` · τ) (1 ns by default), so
  points ≈ 150 + t_stop / TMAX (measured: 224–395 points for 200 ns on two-layer networks,
  604 on the slower-settling 32-16-16-10, 292 for 100 ns on 784-256-10).
- Time per point: loading the devices, factorising and, at large sizes above all, ordering
  the sparse matrix (see below); it grows faster than the device count D (both devices of
  every pair, bias rows included). A power law fitted (least squares in
  log-log) to the calibration runs below, each divided by its modelled point count, gives
  about 1.17 ms · (D / 4 820)^1.46; the whole estimate then comes within a factor of two of
  every run (0.69× for 64-32-10 to 1.68× for the single 128×64 layer).

Calibration (``benchmarks/spice_vs_numba.py``, stock ngspice-39, subprocess runner, default
:class:`SpiceOptions`, 2-core machine):

    network        devices   window   points   wall       per point
    64-32-10         4 820   200 ns      340    0.59 s     1.7 ms
    128x64          16 512   200 ns      224    1.47 s     6.5 ms
    256-128-10      68 372   200 ns      395   20.0 s     51 ms
    784-256-10     407 060   100 ns      292    218 s     0.75 s

For comparison, DESIGN §6 quotes 0.4 s, 17.5 s and 113 s for hand-written netlists of
64-32-10, 256-128-10 and 784-256-10 (200 ns, 1 ns step). This project's netlists take about
as long at the two smaller sizes, but 218 s for only 100 ns at 784-256-10: there, ngspice
spends most of its time ordering the sparse matrix (Sparse 1.3's Markowitz search; ``rusage``
on a 10 ns run with the operating point: 132 s of 192 s in "matrix reorder", although the
fill-in is only 2 %), so these runs,
not the DESIGN figures, calibrate the estimate. A 200 ns run of 784-256-10 took 683 s while
other jobs shared the two cores (the estimate says 266 s on an idle machine). Treat the
estimate as an order of magnitude; a dual-array netlist is estimated by its device count.

These calibration runs predate the leaner netlists (ngspice's default charge tolerance instead of
1e-22 C, the operating point only up to 20 000 devices, power vectors only on request, only the
used vectors saved): the cross-check's netlists now take about 217 instead of 395 points for
200 ns and run in roughly half the time at 256-128-10 (DESIGN §8.3), so the estimate errs high,
on the safe side of the 180 s refusal.

Small networks with fine print steps: the power law goes to zero with the device count, but
ngspice spends a floor of time on every point whatever the size (the step's solve, its
bookkeeping and writing the point out). Measured on 3x2 (200 ns, subprocess runner, stock
ngspice-39, the machine shared with two other jobs): 200 012 points at a 1 ps print step in
3.36 s and 1 000 012 points at 0.2 ps in 16.0 s, 16.8 and 16.0 µs a point; the estimate takes
at least ``MIN_SECONDS_PER_POINT`` per point. (Without it a 3x2 check at a 32 fs step was
estimated at 1.7 s, given the 77 s timeout that follows from that, and stopped by it.)

Resistive wires put a node at every cell of every wired line, and the wire mesh, not the device
count, then sets the time per point: ngspice refactorises the mesh at every Newton iteration
(DESIGN §8.1), at a cost that grows about as the square of the matrix size (``rusage all``,
single layers at 1 Ω, 200 ns, stock ngspice-39):

    layer     matrix size*   TMAX     points   wall
    16x8             816      1 ns      217    0.18 s
    32x16          3 168      1 ns      218    2.8 s
    64x32         12 480      1 ns      220    63 s
    128x64        49 536      5 ns       87    746 s   (10 Ω)

    * devices plus wire cell nodes (:func:`analogdp.spice.netlist.matrix_size_estimate`)

Each physical array is a mesh of its own (crossbars and tiles meet only through amplifiers), so a
wired circuit's mesh time per point is the sum of the fitted cost over its arrays, and the circuit
takes the larger of that and the device model.
"""

from __future__ import annotations

import numpy as np

from ..circuit.network import NetworkCircuit
from ..circuit.wires import tile_shapes
from .netlist import SpiceOptions, matrix_size_estimate

STARTUP_POINTS = 150
MIN_SECONDS_PER_POINT = 16e-6  # the per-point floor of any netlist (module docstring)
CALIBRATION_MAX_STEP_S = 1e-9  # TMAX of the calibration runs (default options, 1 ns print step)
# (devices, window s, ngspice time points, wall s) of this project's netlists, measured
CALIBRATION = ((4820, 200e-9, 340, 0.592), (16512, 200e-9, 224, 1.466),
               (68372, 200e-9, 395, 20.01), (407060, 100e-9, 292, 217.6))


def _fit() -> tuple[float, float]:
    """(exponent, log prefactor) of seconds per point = exp(c) · D^p over the calibration.

    The wall times are divided by the *modelled* point count (not ngspice's actual one), so
    that the fit minimises the error of the whole estimate, point-count model included."""
    devices = np.log([row[0] for row in CALIBRATION])
    modelled_points = [STARTUP_POINTS + window_s / CALIBRATION_MAX_STEP_S for _, window_s, _, _ in CALIBRATION]
    per_point = np.log([row[3] / points for row, points in zip(CALIBRATION, modelled_points)])
    exponent, log_prefactor = np.polyfit(devices, per_point, 1)
    return float(exponent), float(log_prefactor)


# (matrix size, window s, TMAX s, wall s) of wired single layers (the table above)
WIRED_CALIBRATION = ((816, 200e-9, 1e-9, 0.18), (3168, 200e-9, 1e-9, 2.8), (12480, 200e-9, 1e-9, 63.0),
                     (49536, 200e-9, 5e-9, 746.0))


def _fit_wired() -> tuple[float, float]:
    """(exponent, log prefactor) of seconds per point = exp(c) · M^p over the wired calibration
    (M the matrix size; wall times divided by the modelled point count, as :func:`_fit`)."""
    size = np.log([row[0] for row in WIRED_CALIBRATION])
    per_point = np.log([wall_s / (STARTUP_POINTS + window_s / t_max_s)
                        for _, window_s, t_max_s, wall_s in WIRED_CALIBRATION])
    exponent, log_prefactor = np.polyfit(size, per_point, 1)
    return float(exponent), float(log_prefactor)


EXPONENT, LOG_PREFACTOR = _fit()
WIRED_EXPONENT, WIRED_LOG_PREFACTOR = _fit_wired()


def mesh_sizes(circuit: NetworkCircuit) -> list[int]:
    """Matrix size (devices plus wire cell nodes, as :func:`matrix_size_estimate` counts them) of
    every physical array: each crossbar, or each of its tiles."""
    wires = circuit.wires
    per_device = matrix_size_estimate(circuit) // circuit.n_devices
    return [2 * rows * columns * per_device for x in circuit.crossbars
            for rows, columns in tile_shapes(x.n_rows, x.n_columns, wires)]


def estimate_time_points(circuit: NetworkCircuit, t_stop_s: float, *, t_step_s: float = 1e-9,
                         options: SpiceOptions = SpiceOptions()) -> float:
    max_step_s = min(t_step_s, options.max_step_tau * circuit.neuron.tau_s)
    return STARTUP_POINTS + t_stop_s / max_step_s


def estimate_ngspice_seconds(circuit: NetworkCircuit, t_stop_s: float, *, t_step_s: float = 1e-9,
                             options: SpiceOptions = SpiceOptions()) -> float:
    """Estimated ngspice wall time (s) of a ``t_stop_s`` transient of ``circuit``'s netlist
    (written with print step ``t_step_s`` and ``options``)."""
    if not np.isfinite(t_stop_s) or t_stop_s <= 0:
        raise ValueError(f"t_stop_s must be a positive finite time, got {t_stop_s!r}")
    per_point_s = np.exp(LOG_PREFACTOR + EXPONENT * np.log(circuit.n_devices))
    if not circuit.wires.ideal:
        mesh_s = sum(np.exp(WIRED_LOG_PREFACTOR + WIRED_EXPONENT * np.log(size)) for size in mesh_sizes(circuit))
        per_point_s = max(per_point_s, mesh_s)
    per_point_s = max(per_point_s, MIN_SECONDS_PER_POINT)
    return float(estimate_time_points(circuit, t_stop_s, t_step_s=t_step_s, options=options) * per_point_s)
