"""How long ngspice will take on a netlist of :func:`write_netlist`, before running it.

Fit (DESIGN §6 anchors, ngspice-39 on the project's 2-core machines, 200 ns transient at a
1 ns step, dyad networks of the §3.2/§3.3 kind):

    64-32-10: 0.4 s,   256-128-10: 17.5 s,   784-256-10: 113 s.

ngspice's time per time point is dominated by the sparse LU factorisation of the crossbar
matrix, which grows faster than the device count because the dense row/column coupling fills
in. A power law in the device count D (both devices of every pair, bias rows included),
least-squares in log-log over the three anchors, gives

    t ≈ 0.44 s · (D / 4 820)^1.28 · (t_stop / 200 ns) · (1 ns / TMAX),

within 25 % of each anchor. The time-point count is taken as proportional to the window over
the netlist's largest step TMAX (min(print step, ``max_step_tau`` · τ), 1 ns by default);
ngspice's smaller steps at the start add a fixed overhead that the estimate ignores. Treat it
as an order of magnitude: these machines are noisy, and a dual-array netlist, which has
twice the devices but less coupling, is estimated by its device count alone.
"""

from __future__ import annotations

import numpy as np

from ..circuit.network import NetworkCircuit
from .netlist import SpiceOptions

ANCHOR_WINDOW_S = 200e-9
ANCHOR_MAX_STEP_S = 1e-9
# (layer sizes, seconds) from DESIGN §6
ANCHORS = (((64, 32, 10), 0.4), ((256, 128, 10), 17.5), ((784, 256, 10), 113.0))


def _devices(layer_sizes) -> int:
    """Devices of a bidirectional network with bias rows: two per cross point."""
    return int(sum(2 * (layer_sizes[k] + 1) * layer_sizes[k + 1] for k in range(len(layer_sizes) - 1)))


def _fit() -> tuple[float, float]:
    """(exponent, log prefactor) of seconds = exp(c) · D^p over the anchors."""
    devices = np.log([_devices(sizes) for sizes, _ in ANCHORS])
    seconds = np.log([s for _, s in ANCHORS])
    exponent, log_prefactor = np.polyfit(devices, seconds, 1)
    return float(exponent), float(log_prefactor)


EXPONENT, LOG_PREFACTOR = _fit()


def estimate_ngspice_seconds(circuit: NetworkCircuit, t_stop_s: float, *, t_step_s: float = 1e-9,
                             options: SpiceOptions = SpiceOptions()) -> float:
    """Estimated ngspice wall time (s) of a ``t_stop_s`` transient of ``circuit``'s netlist."""
    if not np.isfinite(t_stop_s) or t_stop_s <= 0:
        raise ValueError(f"t_stop_s must be a positive finite time, got {t_stop_s!r}")
    max_step_s = min(t_step_s, options.max_step_tau * circuit.neuron.tau_s)
    per_anchor_window = np.exp(LOG_PREFACTOR + EXPONENT * np.log(circuit.n_devices))
    return float(per_anchor_window * (t_stop_s / ANCHOR_WINDOW_S) * (ANCHOR_MAX_STEP_S / max_step_s))
