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
