"""Parallel update schemes on a crossbar: pulse coincidence and refresh (DESIGN §7).

**Pulse coincidence** (Gokmen & Vlasov, Front. Neurosci. 10:333, 2016; aihwkit's default
stochastic pulsed update, bit length 31). In each of BL time slots, row i fires a pulse with
probability p_i = C_x|s̄_i| and column j with q_j = C_δ|δ_j| (both clipped to 1); a device gets a
pulse where its row and its column fire in the same slot, with the polarity of δ_j·s̄_i. The
count of device (i, j) is Binomial(BL, p_i q_j), so its mean is BL·C_x C_δ|s̄_i δ_j|. Choosing
C_x C_δ·BL·Δ_w = lr/β, with Δ_w the weight change of one pulse, makes the expected change the DP
update lr·δ s̄ᵀ/β. The ratio C_x/C_δ is free; it is set so that the largest row and column
probabilities are equal (aihwkit's "update management"), which keeps both below 1 as long as
possible. The whole array updates in BL slots regardless of its size.

**Refresh** for one-directional devices (aihwkit OneSidedUnitCell, after Nandakumar et al.
2020): a pair whose larger device is above ``upper_threshold`` of its range and whose smaller one
is above ``lower_threshold`` is read, both devices are RESET to G_min, and the difference is
written back onto one device with SET pulses (open loop, with the device's noise-free response
deciding the pulse count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numba
import numpy as np

from .devices import DevicePopulation, _mean_step, apply_pulses, read_conductances

UPDATE_SCHEMES = ("per-device", "pulse-coincidence", "refresh")


def _check_positive(obj, *names):
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be a positive finite number, got {value!r}")


def _check_non_negative(obj, *names):
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be a non-negative finite number, got {value!r}")


@dataclass(frozen=True)
class PulseCoincidenceParams:
    """- ``bl``: pulse slots per update (aihwkit ``desired_bl`` default 31).
    - ``pulse_width_s``: one slot; 10 ns, NeuroSim's default write pulse width.
    - ``v_line_v``: amplitude each line driver applies; half of the 2 V write voltage, so that
      only a row-and-column coincidence puts the full write voltage across a device (half-select).
    - ``c_line_per_cell_f``: line capacitance per cell, ~0.1 fF (DESIGN §8); a line pulse costs
      C_line·V² with C_line = cells × this.
    """

    bl: int = field(default=31, metadata={
        "help": "pulse-coincidence bit length BL: pulse slots per update (aihwkit default)",
        "check": "positive_int", "metavar": "N"})
    pulse_width_s: float = field(default=10e-9, metadata={
        "help": "width of one programming pulse or pulse slot, seconds (NeuroSim default)",
        "check": "positive", "metavar": "S"})
    v_line_v: float = field(default=1.0, metadata={
        "help": "pulse-coincidence line-driver amplitude, volts (half the 2 V write voltage)",
        "check": "positive", "metavar": "V"})
    c_line_per_cell_f: float = field(default=0.1e-15, metadata={
        "help": "line capacitance per crossbar cell, farads (a line pulse charges cells x this)",
        "check": "non_negative", "metavar": "F"})

    def __post_init__(self):
        if isinstance(self.bl, bool) or not isinstance(self.bl, (int, np.integer)) or self.bl < 1:
            raise ValueError(f"PulseCoincidenceParams.bl must be an integer >= 1, got {self.bl!r}")
        _check_positive(self, "pulse_width_s", "v_line_v")
        _check_non_negative(self, "c_line_per_cell_f")


class CoincidenceOutcome(NamedTuple):
    counts: np.ndarray  # signed pulses per device (rows × columns): + raises W, − lowers it
    row_line_pulses: int
    column_line_pulses: int
    update_time_s: float
    line_energy_j: float
    c_x: float
    c_delta: float
    clipped_fraction: float  # of rows and columns whose probability was clipped at 1


def coincidence_scales(x_max: float, delta_max: float, lr_over_beta: float, bl: int,
                       pulse_weight: float) -> tuple[float, float]:
    """C_x and C_δ with C_x·C_δ·BL·Δ_w = lr/β and C_x·max|x| = C_δ·max|δ|."""
    product = lr_over_beta / (bl * pulse_weight)
    if x_max <= 0 or delta_max <= 0:
        return math.sqrt(product), math.sqrt(product)
    c_x = math.sqrt(product * delta_max / x_max)
    return c_x, product / c_x


def pulse_coincidence(x_mean: np.ndarray, delta: np.ndarray, lr_over_beta: float,
                      pulse_weight: float, rng: np.random.Generator,
                      params: PulseCoincidenceParams | None = None) -> CoincidenceOutcome:
    """Signed pulse counts of one stochastic parallel update on a crossbar whose rows carry
    ``x_mean`` (s̄, one per row, bias row included) and whose columns carry ``delta`` (δ, one per
    column). ``pulse_weight`` is the weight change of one pulse, Δ_w = ΔG/G_u."""
    params = params or PulseCoincidenceParams()
    x = np.asarray(x_mean, dtype=np.float64).reshape(-1)
    d = np.asarray(delta, dtype=np.float64).reshape(-1)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(d))):
        raise ValueError("x_mean and delta must be finite")
    for name, value in (("lr_over_beta", lr_over_beta), ("pulse_weight", pulse_weight)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    bl = int(params.bl)
    c_x, c_delta = coincidence_scales(float(np.abs(x).max(initial=0.0)), float(np.abs(d).max(initial=0.0)),
                                      lr_over_beta, bl, pulse_weight)
    p_raw = c_x * np.abs(x)
    q_raw = c_delta * np.abs(d)
    clipped = (np.count_nonzero(p_raw > 1) + np.count_nonzero(q_raw > 1)) / max(x.size + d.size, 1)
    p = np.minimum(p_raw, 1.0)
    q = np.minimum(q_raw, 1.0)
    rows = (rng.random((x.size, bl)) < p[:, None]).astype(np.float32)
    cols = (rng.random((d.size, bl)) < q[:, None]).astype(np.float32)
    counts = (rows @ cols.T).astype(np.int32)  # exact: integers far below 2^24
    sign = (np.sign(x)[:, None] * np.sign(d)[None, :]).astype(np.int32)
    counts *= sign
    row_pulses = int(rows.sum())
    col_pulses = int(cols.sum())
    c_row_f = params.c_line_per_cell_f * 2 * d.size  # a row crosses both devices of every pair
    c_col_f = params.c_line_per_cell_f * x.size
    energy = (row_pulses * c_row_f + col_pulses * c_col_f) * params.v_line_v ** 2
    return CoincidenceOutcome(counts, row_pulses, col_pulses, bl * params.pulse_width_s, energy,
                              c_x, c_delta, clipped)


# ------------------------------------------------------------------------------------------
# Refresh


@dataclass(frozen=True)
class RefreshParams:
    """- ``upper_threshold``, ``lower_threshold``: fractions of the range that trigger a
      refresh (aihwkit OneSidedUnitCell defaults 0.75 and 0.25).
    - ``t_read_s``: one read of a row, 10 ns; ``v_read_v``: read voltage (DESIGN §3.1, 0.2 V).
    - ``e_reset_j``, ``t_reset_s``: one full RESET of a device; by default the energy and width
      of a programming pulse (2 V, 10 µS, 10 ns: 0.4 pJ).
    - ``e_pulse_j``, ``pulse_width_s``: one SET pulse of the write-back.
    """

    upper_threshold: float = 0.75
    lower_threshold: float = 0.25
    t_read_s: float = 10e-9
    v_read_v: float = 0.2
    e_reset_j: float = 2.0**2 * 10e-6 * 10e-9
    t_reset_s: float = 10e-9
    e_pulse_j: float = 2.0**2 * 10e-6 * 10e-9
    pulse_width_s: float = 10e-9

    def __post_init__(self):
        _check_non_negative(self, "upper_threshold", "lower_threshold", "e_reset_j", "e_pulse_j")
        _check_positive(self, "t_read_s", "v_read_v", "t_reset_s", "pulse_width_s")
        if not self.lower_threshold <= self.upper_threshold <= 1:
            raise ValueError("RefreshParams: need 0 <= lower_threshold <= upper_threshold <= 1")


class RefreshOutcome(NamedTuple):
    g_pos_s: np.ndarray
    g_neg_s: np.ndarray
    pairs_refreshed: int
    devices_read: int
    resets: int
    pulses_set: int
    energy_j: float
    time_s: float


@numba.njit(cache=True)
def _pulses_from_min(code, p, step_s, index, target, scale_set, lo, hi):
    """Noise-free SET pulses that bring each device from G_min,d to at least ``target``."""
    n = np.zeros(index.shape[0], dtype=np.int64)
    for k in range(index.shape[0]):
        d = index[k]
        g = lo[d]
        m = 0
        while g < target[k] and g < hi[d] and m < 100000:
            step = _mean_step(code, p, g, lo[d], hi[d], True, step_s) * scale_set[d]
            if step <= 0.0:
                break
            # Stop at the pulse count whose result is closest to the target.
            if g + step > target[k] and (g + step - target[k]) > (target[k] - g):
                break
            g = min(g + step, hi[d])
            m += 1
        n[k] = m
    return n


@numba.njit(cache=True, nogil=True)
def _pairs_to_refresh(gp, gn, lo_p, hi_p, lo_n, hi_n, upper, lower):
    """Flat indices of the pairs whose larger device is above ``upper`` of its range and whose
    smaller one above ``lower`` (positions u = (G − G_min,d)/(G_max,d − G_min,d))."""
    hits = np.empty(gp.shape[0], dtype=np.int64)
    count = 0
    for i in range(gp.shape[0]):
        up = (gp[i] - lo_p[i]) / (hi_p[i] - lo_p[i])
        un = (gn[i] - lo_n[i]) / (hi_n[i] - lo_n[i])
        if max(up, un) > upper and min(up, un) > lower:
            hits[count] = i
            count += 1
    return hits[:count].copy()


def refresh(pop_pos: DevicePopulation, pop_neg: DevicePopulation, g_pos_s: np.ndarray,
            g_neg_s: np.ndarray, rng: np.random.Generator, params: RefreshParams | None = None
            ) -> RefreshOutcome:
    """Refresh the saturated pairs of one crossbar (arrays rows × columns). The outcome holds
    new arrays, or the given ones (as float64 arrays) when no pair needed a refresh."""
    params = params or RefreshParams()
    shape = np.shape(g_pos_s)
    gp = np.ascontiguousarray(g_pos_s, dtype=np.float64).reshape(-1)
    gn = np.ascontiguousarray(g_neg_s, dtype=np.float64).reshape(-1)
    # One pass over the array: most updates refresh no pair, and this test runs after each.
    where = _pairs_to_refresh(gp, gn, pop_pos.g_min_s, pop_pos.g_max_s, pop_neg.g_min_s, pop_neg.g_max_s,
                              float(params.upper_threshold), float(params.lower_threshold))
    if where.size == 0:
        return RefreshOutcome(gp.reshape(shape), gn.reshape(shape), 0, 0, 0, 0, 0.0, 0.0)
    gp, gn = gp.copy(), gn.copy()
    read_p = read_conductances(pop_pos, gp[where], rng)
    read_n = read_conductances(pop_neg, gn[where], rng)
    read_energy = float(np.sum(read_p + read_n)) * params.v_read_v ** 2 * params.t_read_s
    diff = read_p - read_n
    # RESET both devices to their G_min (stuck ones stay where they are).
    gp[where] = np.where(pop_pos.stuck[where] != 0, gp[where], pop_pos.g_min_s[where])
    gn[where] = np.where(pop_neg.stuck[where] != 0, gn[where], pop_neg.g_min_s[where])
    resets = 2 * where.size
    to_pos = diff > 0
    pulses_total = 0
    max_pulses_per_row = np.zeros(shape[0] if len(shape) > 1 else 1, dtype=np.int64)
    for pop, g, sel in ((pop_pos, gp, to_pos), (pop_neg, gn, ~to_pos)):
        idx = where[sel]
        if idx.size == 0:
            continue
        target = pop.g_min_s[idx] + np.abs(diff[sel])
        model = pop.model
        n = _pulses_from_min(model.model_code, pop.shape_params, pop.step_s, idx, target,
                             pop.scale_set, pop.g_min_s, pop.g_max_s)
        outcome = apply_pulses(pop, g[idx], idx, n, True, rng)
        g[idx] = outcome.g_s
        pulses_total += int(outcome.pulses_sent.sum())
        rows = idx // shape[1] if len(shape) > 1 else np.zeros_like(idx)
        np.maximum.at(max_pulses_per_row, rows, outcome.pulses_sent)
    rows_touched = np.unique(where // shape[1]) if len(shape) > 1 else np.array([0])
    # Row by row: read the row, RESET its refreshed devices, write back (the longest train).
    time_s = (rows_touched.size * (params.t_read_s + params.t_reset_s)
              + float(max_pulses_per_row.sum()) * params.pulse_width_s)
    energy = read_energy + resets * params.e_reset_j + pulses_total * params.e_pulse_j
    return RefreshOutcome(gp.reshape(shape), gn.reshape(shape), int(where.size), 2 * int(where.size),
                          resets, pulses_total, energy, time_s)
