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

import functools
import math
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numba
import numpy as np

from .circuit import NetworkCircuit, ProgrammingParams
from .circuit.devices import (
    DeviceModel,
    DevicePopulation,
    IdealDevice,
    apply_pulses,
    draw_crossbar_pair,
    drift,
    pin_stuck,
    read_conductances,
    write_noise_offsets_s,
)
from .circuit.updates import UPDATE_SCHEMES, PulseCoincidenceParams, RefreshParams, pulse_coincidence, refresh
from .digital.functional import check_choice
from .names import LINE_DRIVER_TERM, PROGRAMMING_TERM, REFRESH_TERM

ROUNDINGS = ("stochastic", "nearest")
POLICIES = ("reset-then-set", "set-only")
# Pulse counts are ratios of conductances; a ratio within this of an integer is that integer.
PULSE_RATIO_SLACK = 1e-9
# A device within this fraction of its range of a bound counts as sitting at it.
AT_BOUND_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ProgrammingReport:
    """Pulses sent to the devices for one update, their energy (J) and the time it took (s).

    ``energy_j`` is the devices' pulse energy; ``line_energy_j`` the line drivers' of a
    pulse-coincidence update, ``refresh_energy_j`` the refresh of one-directional pairs.
    ``update_time_s`` is the wall-clock time of the update on the hardware (refresh included):
    BL pulse slots per rank-one term for pulse coincidence, the longest RESET and SET trains of
    every row, row after row, for per-device programming. ``pulses_device_max`` is the most
    pulses one device pair received, ``devices_touched`` how many pairs received any, of
    ``n_devices`` pairs.
    """

    pulses_set: int
    pulses_reset: int
    pulses_dropped: int
    energy_j: float
    line_energy_j: float = 0.0
    refresh_energy_j: float = 0.0
    update_time_s: float = 0.0
    refresh_time_s: float = 0.0
    pulses_device_max: int = 0
    devices_touched: int = 0
    n_devices: int = 0
    pairs_refreshed: int = 0
    energy_terms: tuple[str, ...] = (PROGRAMMING_TERM,)

    @property
    def pulses(self) -> int:
        return self.pulses_set + self.pulses_reset

    def energy_j_by_term(self) -> dict[str, float]:
        """The update's programming energy by term (the terms the scheme uses, zeros included)."""
        values = {PROGRAMMING_TERM: self.energy_j, LINE_DRIVER_TERM: self.line_energy_j,
                  REFRESH_TERM: self.refresh_energy_j}
        return {term: values[term] for term in self.energy_terms}


class RankOneTerm(NamedTuple):
    """One rank-one part sign·(rows ⊗ columns) of an update on one crossbar, in the crossbar's
    orientation: ``rows`` one value per row (bias row included), ``columns`` one per column."""

    rows: np.ndarray
    columns: np.ndarray
    sign: float = 1.0


@dataclass
class _ArrayRun:
    """What one crossbar's devices remember during a run (flat arrays, C order)."""

    offsets_pos_s: np.ndarray  # write noise the reads see until the next write
    offsets_neg_s: np.ndarray
    g0_pos_s: np.ndarray  # conductance right after the last write (drift starts from it)
    g0_neg_s: np.ndarray
    t_write_pos_s: np.ndarray
    t_write_neg_s: np.ndarray


@dataclass
class _Tally:
    """Pulses and times of one update, summed over crossbars (times: the slowest crossbar)."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.int64))  # set, reset, dropped
    coincidences: int = 0
    line_energy_j: float = 0.0
    refresh_energy_j: float = 0.0
    update_time_s: float = 0.0
    refresh_time_s: float = 0.0
    pulses_device_max: int = 0
    devices_touched: int = 0
    n_devices: int = 0
    pairs_refreshed: int = 0


class ConductanceProgrammer:
    """Turns desired weight changes into pulses on the device pairs (see the module docstring).

    ``device_model`` (default the ideal device) decides what a pulse does; its populations are
    drawn once per crossbar from ``seed``. ``update`` is the scheme (``per-device``,
    ``pulse-coincidence``, ``refresh``), ``coincidence`` its parameters (BL, pulse width, line
    drivers; the pulse width is also that of per-device pulses), ``time_per_update_s`` the
    time between updates over which devices drift (None: no drift).
    """

    def __init__(self, params: ProgrammingParams | None = None, *, rounding: str = "stochastic",
                 policy: str = "reset-then-set", seed=0, device_model: DeviceModel | None = None,
                 update: str = "per-device", coincidence: PulseCoincidenceParams | None = None,
                 time_per_update_s: float | None = None):
        self.params = params or ProgrammingParams()
        self.rounding = check_choice("rounding", rounding, ROUNDINGS)
        self.policy = check_choice("policy", policy, POLICIES)
        self.update = check_choice("update", update, UPDATE_SCHEMES)
        if device_model is not None and not isinstance(device_model, DeviceModel):
            raise ValueError(f"device_model must be a DeviceModel, got {type(device_model).__name__}")  # noqa: TRY004
        self.device_model = device_model or IdealDevice()
        self.coincidence = coincidence or PulseCoincidenceParams()
        if time_per_update_s is not None and not (
                isinstance(time_per_update_s, (int, float)) and math.isfinite(time_per_update_s)
                and time_per_update_s > 0):
            raise ValueError(f"time_per_update_s must be a positive finite number, got {time_per_update_s!r}")
        self.time_per_update_s = time_per_update_s
        width = self.coincidence.pulse_width_s
        self.refresh_params = RefreshParams(e_reset_j=self.params.e_pulse_j, e_pulse_j=self.params.e_pulse_j,
                                            t_reset_s=width, pulse_width_s=width)
        self.seed = seed
        self._populations: dict[int, tuple] = {}
        self.reset_rng()

    # ---- configuration --------------------------------------------------------------------
    @property
    def effective_policy(self) -> str:
        """One-directional devices, and the refresh scheme, potentiate only."""
        if self.device_model.set_only or self.update == "refresh":
            return "set-only"
        return self.policy

    @property
    def refreshing(self) -> bool:
        return self.device_model.set_only or self.update == "refresh"

    @property
    def noisy_reads(self) -> bool:
        return self.device_model.read_noise > 0 or self.device_model.write_noise > 0

    def energy_terms(self) -> tuple[str, ...]:
        terms = []
        if self.update == "pulse-coincidence":
            terms.append(LINE_DRIVER_TERM)
        if self.refreshing:
            terms.append(REFRESH_TERM)
        return (*terms, PROGRAMMING_TERM)

    def reset_rng(self) -> None:
        """Restart the run: the stochastic-rounding stream and the device-noise stream are
        reseeded, the devices' write offsets and drift clocks forgotten (the device
        populations, drawn once, stay)."""
        self.rng = np.random.default_rng(self.seed)
        self.noise_rng = np.random.default_rng(self._seed_entropy(1))
        self._runs: dict[int, _ArrayRun] = {}
        self.updates_done = 0

    def _seed_entropy(self, *extra: int) -> list[int]:
        """The programmer's seed extended by ``extra``: one independent stream per purpose."""
        return [int(v) for v in np.atleast_1d(self.seed)] + list(extra)

    def describe(self) -> dict:
        out = {"delta_g_per_pulse_s": self.params.delta_g_per_pulse_s,
               "e_pulse_j": self.params.e_pulse_j, "rounding": self.rounding,
               "policy": self.policy, "seed": self.seed,
               "update": self.update, "effective_policy": self.effective_policy,
               "refresh": self.refreshing, "time_per_update_s": self.time_per_update_s,
               "pulse_width_s": self.coincidence.pulse_width_s,
               "device_model": self.device_model.describe()}
        if self.update == "pulse-coincidence":
            out["coincidence"] = {"bl": self.coincidence.bl, "v_line_v": self.coincidence.v_line_v,
                                  "c_line_per_cell_f": self.coincidence.c_line_per_cell_f}
        if self.refreshing:
            out["refresh_thresholds"] = [self.refresh_params.lower_threshold, self.refresh_params.upper_threshold]
        return out

    # ---- devices --------------------------------------------------------------------------
    def populations(self, k: int, shape: tuple[int, int], device) -> tuple[DevicePopulation, DevicePopulation]:
        """The (G⁺, G⁻) device populations of crossbar ``k``, drawn once (seeded)."""
        key = (tuple(shape), device)
        drawn = self._populations.get(k)
        if drawn is None or drawn[0] != key:
            pair = _drawn_pair(self.device_model, tuple(int(s) for s in shape), device, self.params,
                               tuple(self._seed_entropy(3, k)))
            drawn = (key, pair)
            self._populations[k] = drawn
        return drawn[1]

    def prepare(self, circuit: NetworkCircuit) -> NetworkCircuit:
        """The circuit as its devices hold it: each conductance within its device's own bounds,
        stuck devices at their stuck value (the ideal device changes nothing)."""
        g_pos, g_neg = [], []
        for k, xbar in enumerate(circuit.crossbars):
            pos, neg = self.populations(k, xbar.g_pos_s.shape, circuit.device)
            for pop, g, out in ((pos, xbar.g_pos_s, g_pos), (neg, xbar.g_neg_s, g_neg)):
                flat = g.reshape(-1)
                if not np.any(pop.stuck) and np.all((flat >= pop.g_min_s) & (flat <= pop.g_max_s)):
                    # Nothing to change: keep the array itself (and its memory layout, which
                    # decides the solver's summation order and so its last bits).
                    out.append(g)
                    continue
                clipped = np.clip(flat, pop.g_min_s, pop.g_max_s).reshape(g.shape)
                out.append(pin_stuck(pop, clipped))
        return circuit.with_conductances(g_pos, g_neg)

    def _run_state(self, k: int, xbar, pos, neg) -> _ArrayRun:
        run = self._runs.get(k)
        if run is None:
            # The initial conductances were written too: their write offsets are drawn now.
            n = xbar.g_pos_s.size
            run = _ArrayRun(write_noise_offsets_s(pos, np.arange(n), self.noise_rng),
                            write_noise_offsets_s(neg, np.arange(n), self.noise_rng),
                            xbar.g_pos_s.reshape(-1).copy(), xbar.g_neg_s.reshape(-1).copy(),
                            np.zeros(n), np.zeros(n))
            self._runs[k] = run
        return run

    def seen_circuit(self, circuit: NetworkCircuit) -> NetworkCircuit:
        """The circuit one settle sees: every conductance with its write offset and a read-noise
        perturbation drawn now and frozen for the settle. Without read or write noise it is
        ``circuit`` itself. Call once per settle."""
        if not self.noisy_reads:
            return circuit
        g_pos, g_neg = [], []
        for k, xbar in enumerate(circuit.crossbars):
            pos, neg = self.populations(k, xbar.g_pos_s.shape, circuit.device)
            run = self._run_state(k, xbar, pos, neg)
            g_pos.append(read_conductances(pos, xbar.g_pos_s.reshape(-1), self.noise_rng,
                                           run.offsets_pos_s).reshape(xbar.g_pos_s.shape))
            g_neg.append(read_conductances(neg, xbar.g_neg_s.reshape(-1), self.noise_rng,
                                           run.offsets_neg_s).reshape(xbar.g_neg_s.shape))
        return circuit.with_conductances(g_pos, g_neg)

    def bound_fractions(self, circuit: NetworkCircuit) -> dict[str, float]:
        """Fractions of all devices (both of every pair, every crossbar) at their own G_min or
        G_max (within 1e-9 of their range)."""
        at_min = at_max = total = 0
        for k, xbar in enumerate(circuit.crossbars):
            for pop, g in zip(self.populations(k, xbar.g_pos_s.shape, circuit.device),
                              (xbar.g_pos_s, xbar.g_neg_s)):
                slack = AT_BOUND_TOLERANCE * (pop.g_max_s - pop.g_min_s)
                flat = g.reshape(-1)
                at_min += int(np.count_nonzero(flat <= pop.g_min_s + slack))
                at_max += int(np.count_nonzero(flat >= pop.g_max_s - slack))
                total += flat.size
        return {"g_min": at_min / total, "g_max": at_max / total}

    # ---- updates --------------------------------------------------------------------------
    def program(self, circuit: NetworkCircuit, delta_weights, delta_biases,
                rank_one_terms: Callable[[], list[list[RankOneTerm]]] | None = None,
                lr_over_beta: float | None = None) -> tuple[NetworkCircuit, ProgrammingReport]:
        """Apply ΔW_k (n_{k+1} × n_k) and Δb_k to every crossbar; returns the reprogrammed
        circuit and what it cost. A crossbar without a bias row ignores its Δb.

        The pulse-coincidence scheme needs the update as rank-one terms instead:
        ``rank_one_terms()`` (one list per crossbar) whose sum times ``lr_over_beta`` is the
        desired change."""
        tally = _Tally()
        g_pos_new, g_neg_new = [], []
        if self.update == "pulse-coincidence":
            if rank_one_terms is None or lr_over_beta is None:
                raise ValueError("update pulse-coincidence needs the update as rank-one terms (rank_one_terms, "
                                 "lr_over_beta)")
            terms = rank_one_terms()
        for k, (xbar, dw, db) in enumerate(zip(circuit.crossbars, delta_weights, delta_biases)):
            pos, neg = self.populations(k, xbar.g_pos_s.shape, circuit.device)
            if self.update == "pulse-coincidence":
                g_pos, g_neg = self._coincidence_array(k, xbar, pos, neg, terms[k], lr_over_beta,
                                                       circuit.device, tally)
            else:
                physical = physical_update(xbar.has_bias_row, dw, db)
                g_pos, g_neg = self._per_device_array(k, xbar, pos, neg, physical, circuit.device, tally)
            if self.refreshing:
                g_pos, g_neg = self._refresh_array(k, xbar, pos, neg, g_pos, g_neg, tally)
            g_pos_new.append(g_pos)
            g_neg_new.append(g_neg)
        self.updates_done += 1
        if self.time_per_update_s is not None:
            g_pos_new, g_neg_new = self._drift(circuit, g_pos_new, g_neg_new)
        pulses_set, pulses_reset, dropped = (int(t) for t in tally.counts)
        charged = tally.coincidences if self.update == "pulse-coincidence" else pulses_set + pulses_reset
        report = ProgrammingReport(
            pulses_set, pulses_reset, dropped, charged * self.params.e_pulse_j,
            line_energy_j=tally.line_energy_j, refresh_energy_j=tally.refresh_energy_j,
            update_time_s=tally.update_time_s + tally.refresh_time_s, refresh_time_s=tally.refresh_time_s,
            pulses_device_max=tally.pulses_device_max, devices_touched=tally.devices_touched,
            n_devices=tally.n_devices, pairs_refreshed=tally.pairs_refreshed, energy_terms=self.energy_terms())
        return circuit.with_conductances(g_pos_new, g_neg_new), report

    def program_array(self, g_pos_s: np.ndarray, g_neg_s: np.ndarray, delta_w: np.ndarray, device
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """New (G⁺, G⁻) of one crossbar (index 0) for a physical-orientation ΔW (rows ×
        columns), and the counts [SET pulses, RESET pulses, dropped pulses], by per-device
        pulses. Only weights that get at least one pulse are touched."""
        from .circuit import Crossbar

        xbar = Crossbar(0, g_pos_s, g_neg_s, False)
        pos, neg = self.populations(0, g_pos_s.shape, device)
        tally = _Tally()
        g_pos, g_neg = self._per_device_array(0, xbar, pos, neg, delta_w, device, tally)
        return g_pos, g_neg, tally.counts

    def pulse_counts(self, pulses_real: np.ndarray) -> np.ndarray:
        """Whole pulse counts from real-valued ones, by the configured rounding."""
        if self.rounding == "nearest":
            return np.rint(pulses_real).astype(np.int64)
        whole = np.floor(pulses_real)
        whole += self.rng.random(pulses_real.shape) < (pulses_real - whole)
        return whole.astype(np.int64)

    def _per_device_array(self, k, xbar, pos, neg, delta_w, device, tally: _Tally):
        """Each device's own pulse count from ΔW (rounded), written with the policy."""
        step = pos.step_s
        flat_delta = np.ascontiguousarray(delta_w).reshape(-1)
        nonzero = np.flatnonzero(flat_delta)
        requested = self.pulse_counts(np.abs(flat_delta[nonzero]) * (device.g_unit_s / step))
        where = nonzero[requested > 0]
        wanted = requested[requested > 0]
        up = flat_delta[where] > 0
        g_pos, g_neg, rows_time = self._write(k, xbar, pos, neg, xbar.g_pos_s.copy(), xbar.g_neg_s.copy(),
                                              where, wanted, up, tally)
        tally.update_time_s = max(tally.update_time_s, rows_time * self.coincidence.pulse_width_s)
        tally.n_devices += xbar.g_pos_s.size
        return g_pos, g_neg

    def _coincidence_array(self, k, xbar, pos, neg, terms, lr_over_beta, device, tally: _Tally):
        """Stochastic pulse trains on the rows and columns, one BL train per rank-one term."""
        pulse_weight = pos.step_s / device.g_unit_s
        g_pos, g_neg = xbar.g_pos_s.copy(), xbar.g_neg_s.copy()
        total_per_device = np.zeros(xbar.g_pos_s.size, dtype=np.int64)
        for term in terms:
            rows = np.asarray(term.rows, dtype=np.float64).reshape(-1)
            columns = np.asarray(term.columns, dtype=np.float64).reshape(-1) * term.sign
            if rows.size != xbar.n_rows or columns.size != xbar.n_columns:
                raise ValueError(f"rank-one term of crossbar {k}: {rows.size} rows x {columns.size} columns, "
                                 f"expected {xbar.n_rows} x {xbar.n_columns}")
            outcome = pulse_coincidence(rows, columns, lr_over_beta, pulse_weight, self.noise_rng, self.coincidence)
            flat = outcome.counts.reshape(-1)
            where = np.flatnonzero(flat)
            wanted = np.abs(flat[where]).astype(np.int64)
            total_per_device[where] += wanted
            g_pos, g_neg, _ = self._write(k, xbar, pos, neg, g_pos, g_neg, where, wanted, flat[where] > 0, tally,
                                          count_device_stats=False)
            tally.coincidences += int(wanted.sum())
            tally.line_energy_j += outcome.line_energy_j
        # Every crossbar has its own drivers: they update at once, so the slowest sets the time.
        train_s = len(terms) * self.coincidence.bl * self.coincidence.pulse_width_s
        tally.update_time_s = max(tally.update_time_s, train_s)
        tally.n_devices += xbar.g_pos_s.size
        tally.devices_touched += int(np.count_nonzero(total_per_device))
        tally.pulses_device_max = max(tally.pulses_device_max, int(total_per_device.max(initial=0)))
        return g_pos, g_neg

    def _write(self, k, xbar, pos, neg, g_pos, g_neg, where, wanted, up, tally: _Tally,
               count_device_stats: bool = True):
        """Send ``wanted[i]`` pulses that raise (``up``) or lower W to pair ``where[i]``: by
        ``reset-then-set`` (RESET the partner while it is above G_min, then SET the other
        device) or ``set-only``. Returns (G⁺, G⁻, Σ over rows of the longest RESET and SET
        trains in the row, in pulses)."""
        run = self._run_state(k, xbar, pos, neg) if self._tracks_writes() else None
        flat_pos, flat_neg = g_pos.reshape(-1), g_neg.reshape(-1)  # views of the fresh copies
        n_rows, n_columns = xbar.g_pos_s.shape
        # Pulses per device, dense, so that each row's longest train is one max over the row.
        reset_trains = np.zeros(n_rows * n_columns, dtype=np.int64)
        set_trains = np.zeros(n_rows * n_columns, dtype=np.int64)
        per_device = np.zeros(where.size, dtype=np.int64)
        now_s = self.updates_done * (self.time_per_update_s or 0.0)
        for raises in (True, False):
            sel = up if raises else ~up
            idx = where[sel]
            if idx.size == 0:
                continue
            n = wanted[sel]
            raiser = (pos, flat_pos, "pos") if raises else (neg, flat_neg, "neg")
            partner = (neg, flat_neg, "neg") if raises else (pos, flat_pos, "pos")
            n_reset = np.zeros_like(n)
            if self.effective_policy == "reset-then-set":
                out = apply_pulses(partner[0], partner[1][idx], idx, n, False, self.rng_for_pulses)
                partner[1][idx] = out.g_s
                n_reset = out.pulses_sent
                reset_trains[idx] = n_reset
                self._written(run, partner, idx[n_reset > 0], now_s)
            out = apply_pulses(raiser[0], raiser[1][idx], idx, n - n_reset, True, self.rng_for_pulses)
            raiser[1][idx] = out.g_s
            set_trains[idx] = out.pulses_sent
            self._written(run, raiser, idx[out.pulses_sent > 0], now_s)
            tally.counts += [int(out.pulses_sent.sum()), int(n_reset.sum()), int(out.pulses_dropped.sum())]
            per_device[sel] = n_reset + out.pulses_sent
        if count_device_stats:
            tally.devices_touched += int(np.count_nonzero(per_device))
            tally.pulses_device_max = max(tally.pulses_device_max, int(per_device.max(initial=0)))
        shape = (n_rows, n_columns)
        longest = reset_trains.reshape(shape).max(axis=1) + set_trains.reshape(shape).max(axis=1)
        return g_pos, g_neg, int(longest.sum())

    @property
    def rng_for_pulses(self) -> np.random.Generator:
        """Cycle-to-cycle noise is drawn from the device-noise stream (the ideal device draws
        nothing, so the rounding stream is the same as without devices)."""
        return self.noise_rng

    def _tracks_writes(self) -> bool:
        return self.noisy_reads or self.time_per_update_s is not None

    def _written(self, run: _ArrayRun | None, device, idx: np.ndarray, now_s: float) -> None:
        """Bookkeeping of freshly written devices: new write offsets and drift start."""
        if run is None or idx.size == 0:
            return
        pop, flat, which = device
        if self.time_per_update_s is not None:  # drift clocks matter only when devices drift
            getattr(run, f"g0_{which}_s")[idx] = flat[idx]
            getattr(run, f"t_write_{which}_s")[idx] = now_s
        if pop.model.write_noise > 0:
            getattr(run, f"offsets_{which}_s")[idx] = write_noise_offsets_s(pop, idx, self.noise_rng)

    def _refresh_array(self, k, xbar, pos, neg, g_pos, g_neg, tally: _Tally):
        outcome = refresh(pos, neg, g_pos, g_neg, self.noise_rng, self.refresh_params)
        if outcome.pairs_refreshed and self._tracks_writes():
            run = self._run_state(k, xbar, pos, neg)
            now_s = self.updates_done * (self.time_per_update_s or 0.0)
            for device, old, new in (((pos, outcome.g_pos_s.reshape(-1), "pos"), g_pos, outcome.g_pos_s),
                                     ((neg, outcome.g_neg_s.reshape(-1), "neg"), g_neg, outcome.g_neg_s)):
                self._written(run, device, np.flatnonzero(old.reshape(-1) != new.reshape(-1)), now_s)
        tally.refresh_energy_j += outcome.energy_j
        tally.refresh_time_s = max(tally.refresh_time_s, outcome.time_s)
        tally.pairs_refreshed += outcome.pairs_refreshed
        return outcome.g_pos_s, outcome.g_neg_s

    def _drift(self, circuit, g_pos_list, g_neg_list):
        """Conductances at the next settle, one update period after this one: each device has
        drifted since its last write, G₀ (t/t₀)^{−ν}."""
        next_s = self.updates_done * self.time_per_update_s
        out_pos, out_neg = [], []
        for k, (xbar, g_pos, g_neg) in enumerate(zip(circuit.crossbars, g_pos_list, g_neg_list)):
            pos, neg = self.populations(k, xbar.g_pos_s.shape, circuit.device)
            if not (np.any(pos.drift_nu) or np.any(neg.drift_nu)):
                out_pos.append(g_pos)
                out_neg.append(g_neg)
                continue
            run = self._run_state(k, xbar, pos, neg)
            out_pos.append(drift(pos, run.g0_pos_s, next_s - run.t_write_pos_s).reshape(g_pos.shape))
            out_neg.append(drift(neg, run.g0_neg_s, next_s - run.t_write_neg_s).reshape(g_neg.shape))
        return out_pos, out_neg


@functools.lru_cache(maxsize=8)
def _drawn_pair(model: DeviceModel, shape: tuple[int, int], device, params: ProgrammingParams,
                seed: tuple[int, ...]) -> tuple[DevicePopulation, DevicePopulation]:
    """The device pair of one crossbar, a pure function of its arguments, kept for the runs
    that follow (a sweep, DP and EP on the same devices): drawing a 784×256 pair costs about as
    much as two settles. The arrays are made read-only, since the cache shares them."""
    pair = draw_crossbar_pair(model, shape, device, params, seed=list(seed))
    for population in pair:
        for name in ("g_min_s", "g_max_s", "scale_set", "scale_reset", "stuck", "drift_nu", "shape_params"):
            getattr(population, name).flags.writeable = False
    return pair


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
    equal to (G⁺ − G⁻)/G_u at every touched device. For noise-free ideal devices with per-device
    updates (the programmer's closed form). Returns [SET, RESET, dropped] pulses and the pulse
    slots of the row-by-row write (Σ over rows of the row's longest RESET and SET trains)."""
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
        longest_set = 0.0
        longest_reset = 0.0
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
            longest_set = max(longest_set, n_set)
            longest_reset = max(longest_reset, n_reset)
        counts[3] += np.int64(longest_set + longest_reset)
    return counts


def row_serial_pulse_slots(g_pos_before, g_neg_before, g_pos_after, g_neg_after, step_s: float) -> int:
    """Pulse slots of the row-by-row write (Σ over rows of the row's longest RESET train plus its
    longest SET train) from ideal devices' conductances before and after an update. A device gets
    only SET or only RESET pulses in one update, each a full step except one that stops at a
    bound, so its pulse count is ⌈|ΔG|/ΔG_pulse⌉."""
    if g_pos_before.size == 0:
        return 0
    set_trains = np.zeros(g_pos_before.shape, dtype=np.int64)
    reset_trains = np.zeros(g_pos_before.shape, dtype=np.int64)
    for before, after in ((g_pos_before, g_pos_after), (g_neg_before, g_neg_after)):
        change = after - before
        pulses = pulses_to_reach(np.abs(change), step_s)
        set_trains = np.maximum(set_trains, np.where(change > 0, pulses, 0))
        reset_trains = np.maximum(reset_trains, np.where(change < 0, pulses, 0))
    return int((set_trains.max(axis=1) + reset_trains.max(axis=1)).sum())
