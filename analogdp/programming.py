"""Conductance programming: a desired weight change written as pulses on device pairs
(DESIGN §3.4).

A desired weight change ΔW is written as a whole number of identical pulses, each moving one
device of a differential pair by ΔG = ``delta_g_per_pulse_s`` at a cost of ``e_pulse_j``. Per
weight:

- pulses = |ΔW|·G_u / ΔG rounded to an integer. ``stochastic`` rounding (the default) rounds
  up with probability equal to the fractional part, drawn from a seeded generator, so the
  expected programmed change equals the desired one even when it is far below one pulse
  (most single-example updates are); ``nearest`` rounds deterministically and drops every
  change below half a pulse.
- which device gets the pulses (``policy``):
  ``reset-then-set`` (default) increases W by first depressing G⁻ (RESET pulses) while it is
  above G_min, then potentiating G⁺ (SET pulses), and mirrors this to decrease W. A pair then
  stays in the form the weight mapping writes (one device at G_min), conductances stay low and
  the crossbar's read energy does not creep up. ``set-only`` potentiates G⁺ for ΔW > 0 and G⁻
  for ΔW < 0, as arrays whose devices can only be SET incrementally do; both devices drift
  towards G_max over time.
- every conductance is clipped to [G_min, G_max]. The programming controller knows the state
  it wrote, so it sends no pulse that cannot move a device: a pulse that reaches a bound
  counts (it moved the device part of a step), requested pulses beyond it are not sent and are
  reported as ``pulses_dropped``.
- energy = pulses sent × ``e_pulse_j``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .circuit import NetworkCircuit, ProgrammingParams
from .digital.functional import check_choice

ROUNDINGS = ("stochastic", "nearest")
POLICIES = ("reset-then-set", "set-only")
# Pulse counts are ratios of conductances; a ratio within this of an integer is that integer.
PULSE_RATIO_SLACK = 1e-9

@dataclass(frozen=True)
class ProgrammingReport:
    """Pulses sent to the devices for one update, and their energy (J)."""

    pulses_set: int
    pulses_reset: int
    pulses_dropped: int
    energy_j: float

    @property
    def pulses(self) -> int:
        return self.pulses_set + self.pulses_reset


class ConductanceProgrammer:
    """Turns desired weight changes into pulses on the device pairs (see the module docstring)."""

    def __init__(self, params: ProgrammingParams | None = None, *, rounding: str = "stochastic",
                 policy: str = "reset-then-set", seed: int = 0):
        self.params = params or ProgrammingParams()
        self.rounding = check_choice("rounding", rounding, ROUNDINGS)
        self.policy = check_choice("policy", policy, POLICIES)
        self.seed = seed
        self.reset_rng()

    def reset_rng(self) -> None:
        """Restart the stochastic-rounding stream, so that a rerun draws the same pulses."""
        self.rng = np.random.default_rng(self.seed)

    def describe(self) -> dict:
        return {"delta_g_per_pulse_s": self.params.delta_g_per_pulse_s,
                "e_pulse_j": self.params.e_pulse_j, "rounding": self.rounding,
                "policy": self.policy, "seed": self.seed}

    def program(self, circuit: NetworkCircuit, delta_weights, delta_biases
                ) -> tuple[NetworkCircuit, ProgrammingReport]:
        """Apply ΔW_k (n_{k+1} × n_k) and Δb_k to every crossbar; returns the reprogrammed
        circuit and what it cost. A crossbar without a bias row ignores its Δb."""
        g_pos_new, g_neg_new = [], []
        totals = np.zeros(3, dtype=np.int64)
        for xbar, dw, db in zip(circuit.crossbars, delta_weights, delta_biases):
            physical = physical_update(xbar.has_bias_row, dw, db)
            g_pos, g_neg, counts = self.program_array(xbar.g_pos_s, xbar.g_neg_s, physical,
                                                      circuit.device)
            g_pos_new.append(g_pos)
            g_neg_new.append(g_neg)
            totals += counts
        pulses_set, pulses_reset, dropped = (int(t) for t in totals)
        energy = (pulses_set + pulses_reset) * self.params.e_pulse_j
        return (circuit.with_conductances(g_pos_new, g_neg_new),
                ProgrammingReport(pulses_set, pulses_reset, dropped, energy))

    def program_array(self, g_pos_s: np.ndarray, g_neg_s: np.ndarray, delta_w: np.ndarray, device
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """New (G⁺, G⁻) of one crossbar for a physical-orientation ΔW (rows × columns), and
        the counts [SET pulses, RESET pulses, dropped pulses]. Only weights that get at least
        one pulse are touched (single-example updates are sparse)."""
        step = self.params.delta_g_per_pulse_s
        flat_delta = np.ascontiguousarray(delta_w).reshape(-1)
        nonzero = np.flatnonzero(flat_delta)
        requested = self.pulse_counts(np.abs(flat_delta[nonzero]) * (device.g_unit_s / step))
        where = nonzero[requested > 0]
        wanted = requested[requested > 0]
        g_pos = g_pos_s.copy()
        g_neg = g_neg_s.copy()
        if where.size == 0:
            return g_pos, g_neg, np.zeros(3, dtype=np.int64)
        up = flat_delta[where] > 0
        # The device that raises W when potentiated, and its partner.
        flat_pos, flat_neg = g_pos.reshape(-1), g_neg.reshape(-1)  # views of the fresh copies
        raiser = np.where(up, flat_pos[where], flat_neg[where])
        partner = np.where(up, flat_neg[where], flat_pos[where])
        if self.policy == "reset-then-set":
            n_reset = np.minimum(wanted, pulses_to_reach(partner - device.g_min_s, step))
            partner = np.maximum(partner - n_reset * step, device.g_min_s)
        else:
            n_reset = np.zeros_like(wanted)
        n_set = np.minimum(wanted - n_reset, pulses_to_reach(device.g_max_s - raiser, step))
        raiser = np.minimum(raiser + n_set * step, device.g_max_s)
        flat_pos[where] = np.where(up, raiser, partner)
        flat_neg[where] = np.where(up, partner, raiser)
        dropped = wanted - n_reset - n_set
        return g_pos, g_neg, np.array([n_set.sum(), n_reset.sum(), dropped.sum()], dtype=np.int64)

    def pulse_counts(self, pulses_real: np.ndarray) -> np.ndarray:
        """Whole pulse counts from real-valued ones, by the configured rounding."""
        if self.rounding == "nearest":
            return np.rint(pulses_real).astype(np.int64)
        whole = np.floor(pulses_real)
        whole += self.rng.random(pulses_real.shape) < (pulses_real - whole)
        return whole.astype(np.int64)


def physical_update(has_bias_row: bool, delta_w: np.ndarray, delta_b: np.ndarray | None) -> np.ndarray:
    """ΔW (n_out × n_in) and Δb in the crossbar's orientation: rows = inputs (+ bias row)."""
    physical = np.asarray(delta_w, dtype=np.float64).T
    if has_bias_row:
        bias = np.zeros(physical.shape[1]) if delta_b is None else np.asarray(delta_b, dtype=np.float64)
        physical = np.vstack([physical, bias[None, :]])
    return physical


def pulses_to_reach(headroom_s: np.ndarray, step_s: float) -> np.ndarray:
    """Pulses that still move a device with ``headroom_s`` left before its bound (the last one
    may move it only part of a step)."""
    return np.maximum(np.ceil(headroom_s / step_s - PULSE_RATIO_SLACK), 0).astype(np.int64)


# ------------------------------------------------------------------------------------------
# One example's update (a rank-1 ΔW), programmed in place


def program_outer_in_place(programmer: ConductanceProgrammer, g_pos_s: np.ndarray, g_neg_s: np.ndarray,
                           post_delta: np.ndarray, pre_mean: np.ndarray, lr: float, device,
                           weights_out: np.ndarray | None = None) -> np.ndarray:
    """Program lr·(d_j s̄_i) (and lr·d_j on the bias row, if the array has one) into one
    crossbar's (G⁺, G⁻) in place, where ``post_delta`` d (n_columns,) is the already scaled
    post-synaptic difference and ``pre_mean`` s̄ (n_inputs,) the pre-synaptic mean.

    The arithmetic, the order of the random draws and every clip are those of
    :meth:`ConductanceProgrammer.program_array` on ΔW = lr·d s̄ᵀ, so the conductances come out
    identical, without forming the dense ΔW (single-example updates touch only the rows with
    s̄_i ≠ 0 and the columns with d_j ≠ 0). ``weights_out`` (rows × columns), when given, is kept
    equal to (G⁺ − G⁻)/G_u at every touched device. Returns [SET, RESET, dropped] pulses and the
    pulse slots of row-serial programming (rows one after another, the devices of a row in
    parallel: Σ over rows of the longest pulse train in the row)."""
    params = programmer.params
    step = params.delta_g_per_pulse_s
    n_rows, n_columns = g_pos_s.shape
    has_bias = n_rows == pre_mean.shape[0] + 1
    rows = np.concatenate([pre_mean, [1.0]]) if has_bias else np.asarray(pre_mean, dtype=np.float64)
    post = np.ascontiguousarray(post_delta, dtype=np.float64)
    count = _count_nonzero_products(rows, post, lr)
    stochastic = programmer.rounding == "stochastic"
    draws = programmer.rng.random(count) if stochastic and count else np.zeros(0)
    update_weights = weights_out is not None
    return _program_outer(g_pos_s, g_neg_s, rows, post, float(lr), has_bias,
                          device.g_unit_s / step, step, device.g_min_s, device.g_max_s,
                          stochastic, programmer.policy == "reset-then-set", draws,
                          weights_out if update_weights else np.zeros((1, 1)), update_weights,
                          device.g_unit_s)


@numba.njit(cache=True, nogil=True)
def _count_nonzero_products(rows, post, lr):
    count = 0
    columns = np.flatnonzero(post)
    for i in range(rows.shape[0]):
        if rows[i] == 0.0:
            continue
        for j in columns:
            if lr * (post[j] * rows[i]) != 0.0:
                count += 1
    return count


@numba.njit(cache=True, nogil=True)
def _pulses_to_reach(headroom, step):
    n = np.ceil(headroom / step - PULSE_RATIO_SLACK)
    return n if n > 0.0 else 0.0


@numba.njit(cache=True, nogil=True)
def _program_outer(g_pos, g_neg, rows, post, lr, has_bias, pulses_per_weight, step, g_min, g_max,
                   stochastic, reset_first, draws, weights, update_weights, g_unit):
    n_rows = rows.shape[0]
    n_inputs = n_rows - 1 if has_bias else n_rows
    counts = np.zeros(4, dtype=np.int64)
    columns = np.flatnonzero(post)  # zero products are skipped by the dense path too (no draw)
    draw = 0
    for i in range(n_rows):
        if rows[i] == 0.0:
            continue
        longest = 0.0
        for j in columns:
            # the bias row's ΔW is lr·d_j, the others lr·(d_j·s̄_i), as the dense path forms them
            desired = lr * post[j] if i >= n_inputs else lr * (post[j] * rows[i])
            if desired == 0.0:
                continue
            real = abs(desired) * pulses_per_weight
            if stochastic:
                wanted = np.floor(real)
                if draws[draw] < real - wanted:
                    wanted += 1.0
                draw += 1
            else:
                wanted = np.rint(real)
            if wanted <= 0.0:
                continue
            up = desired > 0.0
            raiser = g_pos[i, j] if up else g_neg[i, j]
            partner = g_neg[i, j] if up else g_pos[i, j]
            n_reset = 0.0
            if reset_first:
                n_reset = min(wanted, _pulses_to_reach(partner - g_min, step))
                partner = max(partner - n_reset * step, g_min)
            n_set = min(wanted - n_reset, _pulses_to_reach(g_max - raiser, step))
            raiser = min(raiser + n_set * step, g_max)
            if up:
                g_pos[i, j] = raiser
                g_neg[i, j] = partner
            else:
                g_pos[i, j] = partner
                g_neg[i, j] = raiser
            if update_weights:
                weights[i, j] = (g_pos[i, j] - g_neg[i, j]) / g_unit
            counts[0] += np.int64(n_set)
            counts[1] += np.int64(n_reset)
            counts[2] += np.int64(wanted - n_reset - n_set)
            longest = max(longest, n_set + n_reset)
        counts[3] += np.int64(longest)
    return counts


def row_serial_pulse_slots(g_pos_before, g_neg_before, g_pos_after, g_neg_after, step_s: float) -> int:
    """Pulse slots of row-serial programming from the conductances before and after an update
    (rows one after another, a row's devices in parallel). A device gets only SET or only RESET
    pulses in one update, each a full step except one that stops at a bound, so its pulse count
    is ⌈|ΔG|/ΔG_pulse⌉."""
    per_device = (pulses_to_reach(np.abs(g_pos_after - g_pos_before), step_s)
                  + pulses_to_reach(np.abs(g_neg_after - g_neg_before), step_s))
    return int(per_device.max(axis=1).sum()) if per_device.size else 0
