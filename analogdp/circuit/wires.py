"""Wire resistance of crossbar lines and the resistive-grid solve (DESIGN §8).

Geometry of one physical array (a tile): R row lines cross 2C column lines, the column lines of a
weight column j being the pair j⁺, j⁻ side by side (physical column 2j for G⁺, 2j+1 for G⁻).
Every line has one terminal, where a driver holds it at its voltage and senses the current it
supplies (DESIGN §3.2: rows and columns are all driven and sensed in the bidirectional scheme).
A line of N cells has N segments of resistance r: the first joins the terminal to the first cell,
so a whole line is N·r, as in NeuroSim's wire model. The terminal resistance (driver output,
contact, sense resistor) sits in series with the first segment.

Which end carries the terminal: a row's terminal is before physical column 0 (``"start"``) or
after the last column (``"end"``); a column's is before row 0 (``"start"``) or after the last row
(``"end"``). The default, rows driven from the start and columns sensed at the end, puts the
cell farthest from both of its terminals at row 0, last column.

The grid is quasi-static: a line's capacitance (about 0.1 fF per cell) times its resistance gives
an RC far below the neuron time constant τ (see :func:`line_rc_s`), so the grid is solved, not
integrated.

Solver: block Gauss–Seidel over whole lines with successive over-relaxation. Given the column-
line voltages, each row line is a tridiagonal system (segment conductances along the line, the
device conductances to the fixed column voltages, the terminal link to the driver); given the row
lines, each column line likewise. The tridiagonal matrices depend on the conductances only, so
their Thomas factorisation is computed once per conductance set and a sweep is two substitutions
per line, O(R·2C). The rows couple only to columns and vice versa (a 2-cyclic system), so Young's
SOR theory applies: with ρ the Gauss–Seidel contraction, the best relaxation factor is
ω = 2/(1 + √(1 − ρ)) and the contraction becomes ω − 1. The solver measures ρ from the first
plain sweeps of a cold solve and keeps that ω for later (warm) solves of the same grid. It stops
when the estimated remaining error, (last change)·q/(1 − q) with q the observed contraction,
falls below ``tol_v``; a solve that has not converged within ``max_sweeps`` raises
:class:`GridNotConverged`.

Warm start by superposition: the grid is linear in its driver voltages. A grid keeps its last
few converged solutions with their driver vectors; a new solve starts from the combination of
stored solutions whose drivers best match the new ones (least squares), plus the remaining
driver difference applied as a shift of each line. During a settle the conductances are fixed
and the drivers follow smooth trajectories, so the last few driver vectors nearly span the next
one and a few sweeps finish the solve. (The constant input rows of the first crossbar are part
of every stored solution, so their share needs no separate treatment.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from .params import _option

LINE_ENDS = ("start", "end")
# Wire resistance per 1T1R cell segment (Ω) from NeuroSim's wire model ρ·L/(w²·AR) with L = 4F
# (DESIGN §8); a cross-point cell (L = 2F) has half of it.
NEUROSIM_OHM_PER_CELL_1T1R = {65: 0.47, 45: 1.3, 32: 2.1, 22: 3.0, 14: 4.9, 7: 10.0}
LINE_CAPACITANCE_F_PER_CELL = 0.1e-15  # DESIGN §8: about 0.1 fF per cell

# the tightest tolerance a basis element (drivers of unit norm) is solved to: a few hundred ulps of
# its node voltages
UNIT_SOLVE_TOL_FLOOR_V = 2e-15
# line modes of the kernel
MODE_FIXED, MODE_LUMPED, MODE_DISTRIBUTED = 0, 1, 2


class GridNotConverged(RuntimeError):
    """The line relaxation did not reach its tolerance within its sweep budget."""


def _check_resistance(owner: str, name: str, value) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}.{name} must be a non-negative finite resistance in ohm, got {value!r}")


@dataclass(frozen=True)
class WireParams:
    """Resistance of the crossbar lines and the size of one physical array.

    - ``r_row_segment_ohm``, ``r_col_segment_ohm``: wire resistance per cell segment of a row /
      column line. 0 (default) is an ideal wire. NeuroSim's wire model gives, per 1T1R cell,
      0.47 Ω at 65 nm, 1.3 Ω at 45 nm, 2.1 Ω at 32 nm, 3.0 Ω at 22 nm, 4.9 Ω at 14 nm and 10 Ω
      at 7 nm (half for a cross-point cell); :meth:`at_node` picks them.
    - ``r_row_terminal_ohm``, ``r_col_terminal_ohm``: series resistance of a line's driver and
      sense terminal (0 by default: an ideal driver and a 0-Ω sense).
    - ``row_terminal_end``, ``col_terminal_end``: which end of each line carries its terminal
      (``"start"`` or ``"end"``, see the module docstring).
    - ``max_rows``, ``max_cols``: size of one physical array; rows count physical row lines
      (a bias row included), columns count weight columns (each a G⁺/G⁻ pair of lines). None: one
      array holds the whole layer. A larger layer is split into tiles whose partial currents are
      summed. Anchors: NeuroSim 128 rows, ISAAC 128, PRIME 256, aihwkit 512, CrossSim 1024.
    """

    r_row_segment_ohm: float = field(default=0.0, metadata=_option(
        "wire resistance per cell segment of a row line, ohm (NeuroSim 1T1R: 0.47 at 65 nm, 3.0 at 22 nm, "
        "10 at 7 nm; 0 = ideal wire)", check="non_negative", range=(0.0, 1e6)))
    r_col_segment_ohm: float = field(default=0.0, metadata=_option(
        "wire resistance per cell segment of a column line, ohm", check="non_negative", range=(0.0, 1e6)))
    r_row_terminal_ohm: float = field(default=0.0, metadata=_option(
        "series resistance of a row line's driver and sense terminal, ohm", check="non_negative",
        range=(0.0, 1e9)))
    r_col_terminal_ohm: float = field(default=0.0, metadata=_option(
        "series resistance of a column line's driver and sense terminal, ohm", check="non_negative",
        range=(0.0, 1e9)))
    row_terminal_end: str = field(default="start", metadata=_option(
        "end of every row line that carries its driver", choices=LINE_ENDS))
    col_terminal_end: str = field(default="end", metadata=_option(
        "end of every column line that carries its driver and sense", choices=LINE_ENDS))
    max_rows: int | None = field(default=None, metadata=_option(
        "row lines per physical array (a bias row included); larger layers are tiled (default: no "
        "limit)", check="positive_int"))
    max_cols: int | None = field(default=None, metadata=_option(
        "weight columns (G+/G- line pairs) per physical array (default: no limit)", check="positive_int"))

    def __post_init__(self):
        for name in ("r_row_segment_ohm", "r_col_segment_ohm", "r_row_terminal_ohm", "r_col_terminal_ohm"):
            _check_resistance("WireParams", name, getattr(self, name))
        for name in ("row_terminal_end", "col_terminal_end"):
            if getattr(self, name) not in LINE_ENDS:
                raise ValueError(f"WireParams.{name} must be one of {LINE_ENDS}, got {getattr(self, name)!r}")
        for name in ("max_rows", "max_cols"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or value < 1):
                raise ValueError(f"WireParams.{name} must be a positive integer or None, got {value!r}")

    @classmethod
    def at_node(cls, node_nm: int, *, cell: str = "1T1R", **overrides) -> WireParams:
        """Rows and columns at NeuroSim's per-cell wire resistance of a technology node."""
        if node_nm not in NEUROSIM_OHM_PER_CELL_1T1R:
            raise ValueError(f"node_nm must be one of {sorted(NEUROSIM_OHM_PER_CELL_1T1R)}, got {node_nm!r}")
        if cell not in ("1T1R", "crosspoint"):
            raise ValueError(f"cell must be '1T1R' or 'crosspoint', got {cell!r}")
        r = NEUROSIM_OHM_PER_CELL_1T1R[node_nm] * (1.0 if cell == "1T1R" else 0.5)
        return cls(r_row_segment_ohm=r, r_col_segment_ohm=r, **overrides)

    @property
    def ideal(self) -> bool:
        """No wire resistance anywhere (tiling alone changes nothing electrically)."""
        return (self.r_row_segment_ohm == 0.0 and self.r_col_segment_ohm == 0.0
                and self.r_row_terminal_ohm == 0.0 and self.r_col_terminal_ohm == 0.0)

    @property
    def row_mode(self) -> int:
        return _mode(self.r_row_segment_ohm, self.r_row_terminal_ohm)

    @property
    def col_mode(self) -> int:
        return _mode(self.r_col_segment_ohm, self.r_col_terminal_ohm)


def _mode(segment_ohm: float, terminal_ohm: float) -> int:
    if segment_ohm > 0.0:
        return MODE_DISTRIBUTED
    return MODE_LUMPED if terminal_ohm > 0.0 else MODE_FIXED


def line_rc_s(n_cells: int, r_segment_ohm: float,
              c_per_cell_f: float = LINE_CAPACITANCE_F_PER_CELL) -> float:
    """Elmore delay of a line of ``n_cells`` distributed RC cells driven at one end:
    Σ_k (k·r)·c over the cells = r·c·N(N+1)/2, the slowest any cell of the line responds."""
    return r_segment_ohm * c_per_cell_f * n_cells * (n_cells + 1) / 2.0


# ---- numba kernels --------------------------------------------------------------------------------
# A line's cells are numbered p = 0..n-1 from its terminal. Cell p's equation:
#   (link_p + far_p + G_p) v_p − g_seg (v_{p−1} + v_{p+1}) = G_p·(other family) + [p = 0]·g_term·V
# with link_0 = g_term (terminal plus first segment in series), link_p = g_seg, far_p = g_seg except
# at the open far end. Thomas algorithm: pivot_p = link_p + far_p + G_p − g_seg·e_{p−1},
# e_p = far_p / pivot_p, d'_p = (rhs_p + g_seg·d'_{p−1}) / pivot_p, v_p = d'_p + e_p·v_{p+1}.
# Arrays are indexed by physical position [row, physical column]; the column family is processed
# row by row over all columns at once so that every pass reads memory in order.

@njit(cache=True)
def _factor_rows(g, g_seg, g_term, start, inv_pivot, upper):
    n_rows, n_cells = g.shape
    for i in range(n_rows):
        previous = 0.0
        for p in range(n_cells):
            cell = p if start else n_cells - 1 - p
            link = g_term if p == 0 else g_seg
            far = g_seg if p < n_cells - 1 else 0.0
            pivot = link + far + g[i, cell] - g_seg * previous
            inv_pivot[i, cell] = 1.0 / pivot
            upper[i, cell] = far / pivot
            previous = upper[i, cell]


@njit(cache=True)
def _factor_columns(g, g_seg, g_term, start, inv_pivot, upper):
    n_cells, n_lines = g.shape
    previous = np.zeros(n_lines)
    for p in range(n_cells):
        cell = p if start else n_cells - 1 - p
        link = g_term if p == 0 else g_seg
        far = g_seg if p < n_cells - 1 else 0.0
        for q in range(n_lines):
            pivot = link + far + g[cell, q] - g_seg * previous[q]
            inv_pivot[cell, q] = 1.0 / pivot
            upper[cell, q] = far / pivot
            previous[q] = upper[cell, q]


@njit(cache=True)
def _solve_rows(g, v_line, w, u, mode, g_seg, g_term, start, inv_pivot, upper, omega, scratch):
    """Re-solve every row line given the column-line voltages w; relax by ω into u. (The
    convergence test looks at the column family only: the rows are a function of the columns,
    so once the columns stop moving the rows have too.)"""
    n_rows, n_cells = g.shape
    first = 0 if start else n_cells - 1
    step = 1 if start else -1
    for i in range(n_rows):
        if mode == MODE_FIXED:
            for m in range(n_cells):
                u[i, m] = v_line[i]
        elif mode == MODE_LUMPED:
            num = g_term * v_line[i]
            den = g_term
            for m in range(n_cells):
                num += g[i, m] * w[i, m]
                den += g[i, m]
            new = u[i, 0] + omega * (num / den - u[i, 0])
            for m in range(n_cells):
                u[i, m] = new
        else:
            previous = (g[i, first] * w[i, first] + g_term * v_line[i]) * inv_pivot[i, first]
            scratch[first] = previous
            cell = first
            for p in range(1, n_cells):
                cell += step
                previous = (g[i, cell] * w[i, cell] + g_seg * previous) * inv_pivot[i, cell]
                scratch[cell] = previous
            value = 0.0
            for p in range(n_cells):
                value = scratch[cell] + upper[i, cell] * value
                u[i, cell] += omega * (value - u[i, cell])
                cell -= step


@njit(cache=True)
def _solve_columns(g, v_line, u, w, mode, g_seg, g_term, start, inv_pivot, upper, omega, scratch, acc1, acc2):
    """Re-solve every column line given the row-line voltages u; relax by ω into w."""
    n_cells, n_lines = g.shape
    change = 0.0
    if mode == MODE_FIXED:
        for i in range(n_cells):
            for q in range(n_lines):
                change = max(change, abs(v_line[q] - w[i, q]))
                w[i, q] = v_line[q]
    elif mode == MODE_LUMPED:
        for q in range(n_lines):
            acc1[q] = g_term * v_line[q]
            acc2[q] = g_term
        for i in range(n_cells):
            for q in range(n_lines):
                acc1[q] += g[i, q] * u[i, q]
                acc2[q] += g[i, q]
        for q in range(n_lines):
            old = w[0, q]
            acc1[q] = old + omega * (acc1[q] / acc2[q] - old)
            change = max(change, abs(acc1[q] - old))
        for i in range(n_cells):
            for q in range(n_lines):
                w[i, q] = acc1[q]
    else:
        for p in range(n_cells):
            cell = p if start else n_cells - 1 - p
            for q in range(n_lines):
                rhs = g[cell, q] * u[cell, q] + (g_term * v_line[q] if p == 0 else g_seg * acc1[q])
                acc1[q] = rhs * inv_pivot[cell, q]
                scratch[cell, q] = acc1[q]
        for q in range(n_lines):
            acc2[q] = 0.0
        for p in range(n_cells - 1, -1, -1):
            cell = p if start else n_cells - 1 - p
            for q in range(n_lines):
                value = scratch[cell, q] + upper[cell, q] * acc2[q]
                acc2[q] = value
                old = w[cell, q]
                new = old + omega * (value - old)
                w[cell, q] = new
                change = max(change, abs(new - old))
    return change


@njit(cache=True)
def _relax(g, row_v, col_v, u, w, row_mode, col_mode, row_gseg, row_gterm, col_gseg, col_gterm,
           row_start, col_start, row_inv, row_upper, col_inv, col_upper, omega, tol_v, max_sweeps,
           plain_sweeps, q_prior, row_scratch, col_scratch, acc1, acc2, out):
    """Block (SOR) Gauss–Seidel sweeps: all row lines, then all column lines.

    The first ``plain_sweeps`` sweeps use ω = 1 (they measure the contraction). Stops when the
    estimated remaining error change·q/(1 − q) < tol_v (q: ratio of successive changes, at
    least 0.05 so that a lucky small step does not end the solve early; for the first sweep of
    a warm solve, ``q_prior``, the last ratio of the previous solve, if > 0). out = [sweeps,
    last change, contraction q of the plain sweeps (or −1), estimated error, last ratio]."""
    previous_change = -1.0
    plain_q = -1.0
    last_q = -1.0
    sweeps = 0
    error = np.inf
    while sweeps < max_sweeps:
        w_now = 1.0 if sweeps < plain_sweeps else omega
        _solve_rows(g, row_v, w, u, row_mode, row_gseg, row_gterm, row_start, row_inv, row_upper,
                    w_now, row_scratch)
        change = _solve_columns(g, col_v, u, w, col_mode, col_gseg, col_gterm, col_start, col_inv, col_upper,
                                w_now, col_scratch, acc1, acc2)
        sweeps += 1
        if row_mode == MODE_FIXED and col_mode == MODE_FIXED:
            change = 0.0  # ideal wires: one sweep is the exact answer
        if change == 0.0:
            error = 0.0
        elif previous_change > 0.0:
            q = change / previous_change
            if sweeps <= plain_sweeps:
                plain_q = q
            q = min(max(q, 0.05), 0.999)
            last_q = q
            error = change * q / (1.0 - q)
        elif q_prior > 0.0 and plain_sweeps == 0:
            q = min(max(q_prior, 0.05), 0.999)
            error = change * q / (1.0 - q)
        previous_change = change
        if error < tol_v:
            break
    out[0] = sweeps
    out[1] = previous_change
    out[2] = plain_q
    out[3] = error
    out[4] = last_q


@njit(cache=True)
def _combine(coefficients, slots, rows_store, cols_store, residual_rows, residual_cols, out_rows, out_cols):
    """out = Σ_k c_k · store[slots[k]] + the residual driver change of each line."""
    n_rows, n_cols = out_rows.shape
    for i in range(n_rows):
        for m in range(n_cols):
            u = residual_rows[i]
            w = residual_cols[m]
            for k in range(slots.size):
                u += coefficients[k] * rows_store[slots[k], i, m]
                w += coefficients[k] * cols_store[slots[k], i, m]
            out_rows[i, m] = u
            out_cols[i, m] = w


@njit(cache=True)
def _terminal_currents(g, u, w, row_out, col_out):
    """Current each driver supplies into its line, by Kirchhoff's current law: a line is open
    except at its terminal, so its driver supplies exactly what its devices carry away. (This
    avoids the cancellation in g_term·(V − v_first) when the wire resistance is tiny.)"""
    n_rows, n_cols = g.shape
    for m in range(n_cols):
        col_out[m] = 0.0
    for i in range(n_rows):
        total = 0.0
        for m in range(n_cols):
            current = g[i, m] * (u[i, m] - w[i, m])
            total += current
            col_out[m] -= current
        row_out[i] = total


@njit(cache=True)
def _dissipation(g, u, w, row_v, col_v, row_gseg, row_gterm, col_gseg, col_gterm, row_start, col_start, out):
    """out = [power in the devices, power in the wires (segments and terminal links)] (W) of a
    solved grid: Σ G (u − w)² over the cells, Σ g (Δv)² over the line links."""
    n_rows, n_cols = g.shape
    device = 0.0
    wire = 0.0
    for i in range(n_rows):
        for m in range(n_cols):
            drop = u[i, m] - w[i, m]
            device += g[i, m] * drop * drop
    row_first = 0 if row_start else n_cols - 1
    for i in range(n_rows):
        drop = row_v[i] - u[i, row_first]
        wire += row_gterm * drop * drop
        if row_gseg > 0.0:
            for m in range(1, n_cols):
                drop = u[i, m] - u[i, m - 1]
                wire += row_gseg * drop * drop
    col_first = 0 if col_start else n_rows - 1
    for m in range(n_cols):
        drop = col_v[m] - w[col_first, m]
        wire += col_gterm * drop * drop
    if col_gseg > 0.0:
        for i in range(1, n_rows):
            for m in range(n_cols):
                drop = w[i, m] - w[i - 1, m]
                wire += col_gseg * drop * drop
    out[0] = device
    out[1] = wire


# ---- Python interface ------------------------------------------------------------------------------
def interleave_columns(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Physical column order: G⁺ of column j at 2j, G⁻ at 2j+1 (along the last axis)."""
    pos = np.asarray(pos, dtype=np.float64)
    out = np.empty(pos.shape[:-1] + (2 * pos.shape[-1],))
    out[..., 0::2] = pos
    out[..., 1::2] = neg
    return out


@dataclass
class GridCurrents:
    """Currents the drivers supply into their lines (A), and how the solve went."""

    row_a: np.ndarray
    col_pos_a: np.ndarray
    col_neg_a: np.ndarray
    sweeps: int = 0
    error_estimate_v: float = 0.0


def ideal_currents(g_pos_s: np.ndarray, g_neg_s: np.ndarray, row_v: np.ndarray, col_pos_v: np.ndarray,
                   col_neg_v: np.ndarray) -> GridCurrents:
    """Ideal wires (DESIGN §3.2): I_row,i = Σ_j G⁺_ij (x_i − y⁺_j) + G⁻_ij (x_i − y⁻_j);
    I_col±,j = Σ_i G±_ij (y±_j − x_i)."""
    row_v, col_pos_v, col_neg_v = (np.asarray(a, dtype=np.float64) for a in (row_v, col_pos_v, col_neg_v))
    total_pos, total_neg = g_pos_s.sum(axis=1), g_neg_s.sum(axis=1)
    row = row_v * (total_pos + total_neg) - g_pos_s @ col_pos_v - g_neg_s @ col_neg_v
    col_pos = col_pos_v * g_pos_s.sum(axis=0) - g_pos_s.T @ row_v
    col_neg = col_neg_v * g_neg_s.sum(axis=0) - g_neg_s.T @ row_v
    return GridCurrents(row, col_pos, col_neg)


class CrossbarGrid:
    """The resistive grid of one physical array with fixed conductances; :meth:`solve` gives the
    terminal currents for given driver voltages, warm-started from the previous solve.

    ``tol_v``: bound on the estimated node-voltage error (V). 1e-13 V is about 1e-12 of V_r, so
    the currents are exact to far below what any comparison resolves. ``max_sweeps``: budget of a
    solve; exceeding it raises :class:`GridNotConverged`. ``omega``: SOR factor; None measures
    the Gauss–Seidel contraction in the first (cold) solve and uses Young's optimum.
    """

    PLAIN_SWEEPS = 6  # plain Gauss–Seidel sweeps of a cold solve, to measure the contraction

    def __init__(self, g_pos_s: np.ndarray, g_neg_s: np.ndarray, wires: WireParams, *, tol_v: float = 1e-13,
                 max_sweeps: int = 1000, omega: float | None = None, history: int = 4):
        g_pos_s = np.asarray(g_pos_s, dtype=np.float64)
        g_neg_s = np.asarray(g_neg_s, dtype=np.float64)
        if g_pos_s.ndim != 2 or g_pos_s.shape != g_neg_s.shape or g_pos_s.size == 0:
            raise ValueError(f"g_pos_s and g_neg_s must be non-empty 2-D arrays of one shape, got "
                             f"{g_pos_s.shape} and {g_neg_s.shape}")
        if not (np.all(np.isfinite(g_pos_s)) and np.all(np.isfinite(g_neg_s))
                and g_pos_s.min() >= 0 and g_neg_s.min() >= 0):
            raise ValueError("conductances must be finite and non-negative")
        if not (isinstance(tol_v, float) and tol_v > 0 and math.isfinite(tol_v)):
            raise ValueError(f"tol_v must be a positive finite voltage, got {tol_v!r}")
        if not (isinstance(max_sweeps, int) and max_sweeps >= 1):
            raise ValueError(f"max_sweeps must be a positive integer, got {max_sweeps!r}")
        if omega is not None and not (0.0 < omega < 2.0):
            raise ValueError(f"omega must lie in (0, 2), got {omega!r}")
        if not (isinstance(history, int) and history >= 1):
            raise ValueError(f"history must be a positive integer, got {history!r}")
        self.wires = wires
        self.n_rows, self.n_columns = g_pos_s.shape
        self.g = np.ascontiguousarray(interleave_columns(g_pos_s, g_neg_s))
        self.g_pos_s, self.g_neg_s = g_pos_s, g_neg_s
        self.tol_v, self.max_sweeps, self.omega = tol_v, max_sweeps, omega
        self.row_mode, self.col_mode = wires.row_mode, wires.col_mode
        self.row_gseg = 1.0 / wires.r_row_segment_ohm if wires.r_row_segment_ohm > 0 else 0.0
        self.col_gseg = 1.0 / wires.r_col_segment_ohm if wires.r_col_segment_ohm > 0 else 0.0
        row_link = wires.r_row_segment_ohm + wires.r_row_terminal_ohm
        col_link = wires.r_col_segment_ohm + wires.r_col_terminal_ohm
        self.row_gterm = 1.0 / row_link if row_link > 0 else 0.0
        self.col_gterm = 1.0 / col_link if col_link > 0 else 0.0
        self.row_start = wires.row_terminal_end == "start"
        self.col_start = wires.col_terminal_end == "start"
        r, m = self.g.shape
        self.row_inv, self.row_upper = np.zeros((r, m)), np.zeros((r, m))
        self.col_inv, self.col_upper = np.zeros((r, m)), np.zeros((r, m))
        if self.row_mode == MODE_DISTRIBUTED:
            _factor_rows(self.g, self.row_gseg, self.row_gterm, self.row_start, self.row_inv, self.row_upper)
        if self.col_mode == MODE_DISTRIBUTED:
            _factor_columns(self.g, self.col_gseg, self.col_gterm, self.col_start, self.col_inv, self.col_upper)
        self.last_sweeps = 0
        self.gauss_seidel_contraction: float | None = None
        # storage of the last `history` converged solutions (u: row-line nodes [i, m], w:
        # column-line nodes [i, m]) with their driver vectors, plus one working slot; solving in
        # place in the working slot and rotating avoids copying 2·R·2C doubles per solve
        self.history = history
        self._rows_store = np.zeros((history + 1, r, m))
        self._cols_store = np.zeros((history + 1, r, m))
        self._drivers_store = np.zeros((history + 1, r + m))
        self._stored: list[int] = []  # slots of the stored solutions, oldest first
        self._work = 0
        self._last_ratio = -1.0  # ratio of successive changes at the end of the last solve
        self._row_scratch = np.empty(m)
        self._col_scratch = np.empty((r, m))
        self._acc1, self._acc2 = np.empty(m), np.empty(m)

    @property
    def row_nodes_v(self) -> np.ndarray | None:
        """u[i, m]: the row line i at physical column m, of the last solve (V)."""
        return self._rows_store[self._stored[-1]] if self._stored else None

    @property
    def col_nodes_v(self) -> np.ndarray | None:
        """w[i, m]: the column line m at row i, of the last solve (V)."""
        return self._cols_store[self._stored[-1]] if self._stored else None

    def reset(self) -> None:
        """Forget the previous solutions (the next solve is cold)."""
        self._stored = []
        self._work = 0

    def _warm_start(self, drivers: np.ndarray) -> None:
        """Starting point from the stored solutions by superposition: the grid is linear in its
        driver voltages, so if drivers ≈ Σ c_k D_k (least squares over the stored D_k), the
        solution is ≈ Σ c_k S_k, up to the part of the residual drivers − Σ c_k D_k, which is
        added as a shift of every line by its residual (its ideal-wire response). Along a smooth
        trajectory (a settle) the last few driver vectors span the next one closely (they hold
        its polynomial extrapolation in time), so the start is far better than the previous
        solution alone (Fischer, Comput. Methods Appl. Mech. Eng. 163, 1998, projects on previous
        solutions the same way)."""
        slots = np.array(self._stored, dtype=np.int64)
        basis = self._drivers_store[slots]
        coefficients = np.linalg.lstsq(basis.T, drivers, rcond=1e-10)[0]
        residual = drivers - coefficients @ basis
        r = self.n_rows
        _combine(coefficients, slots, self._rows_store, self._cols_store, residual[:r], residual[r:],
                 self._rows_store[self._work], self._cols_store[self._work])

    def _remember(self, drivers: np.ndarray) -> None:
        self._drivers_store[self._work] = drivers
        self._stored.append(self._work)
        if len(self._stored) > self.history:
            self._work = self._stored.pop(0)
        else:
            self._work = next(k for k in range(self.history + 1) if k not in self._stored)

    def solve(self, row_v, col_pos_v, col_neg_v, *, warm: bool = True) -> GridCurrents:
        """Terminal currents for row driver voltages ``row_v`` (R,) and column driver voltages
        ``col_pos_v``, ``col_neg_v`` (C,), all in volts."""
        row_v = np.ascontiguousarray(row_v, dtype=np.float64)
        col_pos_v = np.asarray(col_pos_v, dtype=np.float64)
        col_neg_v = np.asarray(col_neg_v, dtype=np.float64)
        if (row_v.shape != (self.n_rows,) or col_pos_v.shape != (self.n_columns,)
                or col_neg_v.shape != (self.n_columns,)):
            raise ValueError(f"driver voltages must have shapes ({self.n_rows},), ({self.n_columns},), "
                             f"({self.n_columns},); got {row_v.shape}, {col_pos_v.shape}, {col_neg_v.shape}")
        if not (np.all(np.isfinite(row_v)) and np.all(np.isfinite(col_pos_v)) and np.all(np.isfinite(col_neg_v))):
            raise ValueError("driver voltages must be finite")
        col_v = np.ascontiguousarray(interleave_columns(col_pos_v, col_neg_v))
        r, m = self.g.shape
        drivers = np.concatenate([row_v, col_v])
        warm = warm and bool(self._stored)
        if not warm:
            # the ideal-wire state: every line at its driver's voltage
            self.reset()
            self._rows_store[self._work][:] = row_v[:, None]
            self._cols_store[self._work][:] = col_v[None, :]
        else:
            self._warm_start(drivers)
        u, w = self._rows_store[self._work], self._cols_store[self._work]
        measure = self.omega is None
        omega = 1.0 if measure else self.omega
        plain = self.PLAIN_SWEEPS if measure else 0
        out = np.zeros(5)
        _relax(self.g, row_v, col_v, u, w, self.row_mode, self.col_mode,
               self.row_gseg, self.row_gterm, self.col_gseg, self.col_gterm, self.row_start, self.col_start,
               self.row_inv, self.row_upper, self.col_inv, self.col_upper, omega, self.tol_v,
               self.max_sweeps, plain, self._last_ratio if warm else -1.0, self._row_scratch,
               self._col_scratch, self._acc1, self._acc2, out)
        if out[4] > 0.0:
            self._last_ratio = float(out[4])
        sweeps = int(out[0])
        if measure and out[2] > 0.0:
            rho = min(float(out[2]), 0.99)
            self.gauss_seidel_contraction = rho
            self.omega = 2.0 / (1.0 + math.sqrt(1.0 - rho))
        if not out[3] < self.tol_v and out[1] != 0.0:
            self.reset()
            raise GridNotConverged(
                f"wire grid {self.n_rows}x{2 * self.n_columns} did not converge in {self.max_sweeps} sweeps "
                f"(estimated error {out[3]:.3g} V > tol_v {self.tol_v:.3g} V); raise max_sweeps or tol_v")
        self.last_sweeps = sweeps
        self._remember(drivers)
        row_a, col_a = np.empty(r), np.empty(m)
        _terminal_currents(self.g, u, w, row_a, col_a)
        return GridCurrents(row_a, col_a[0::2].copy(), col_a[1::2].copy(), sweeps, float(out[3]))


    def dissipation_w(self) -> tuple[float, float]:
        """(devices, wires): the power (W) dissipated in the devices and in the line links
        (segments and terminals) at the last solve's node voltages."""
        if not self._stored:
            raise RuntimeError("dissipation_w needs a solved grid: call solve() first")
        slot = self._stored[-1]
        drivers = self._drivers_store[slot]
        out = np.zeros(2)
        _dissipation(self.g, self._rows_store[slot], self._cols_store[slot], drivers[:self.n_rows],
                     drivers[self.n_rows:], self.row_gseg, self.row_gterm, self.col_gseg, self.col_gterm,
                     self.row_start, self.col_start, out)
        return float(out[0]), float(out[1])


@njit(cache=True)
def _gram_row(g, rows_store, cols_store, drivers, count, row_gseg, row_gterm, col_gseg, col_gterm, row_start,
              col_start, device_out, wire_out):
    """Inner products of element ``count − 1`` with elements 0..count−1 of a basis of grid
    solutions, in the device and wire dissipation forms: Σ G Δ_a Δ_b over the cells (Δ = u − w)
    and Σ g δ_a δ_b over the line links (δ: voltage across a segment or terminal link)."""
    n_rows, n_cols = g.shape
    last = count - 1
    ua, wa, da = rows_store[last], cols_store[last], drivers[last]
    row_first = 0 if row_start else n_cols - 1
    col_first = 0 if col_start else n_rows - 1
    for b in range(count):
        ub, wb, db = rows_store[b], cols_store[b], drivers[b]
        device = 0.0
        wire = 0.0
        for i in range(n_rows):
            for m in range(n_cols):
                device += g[i, m] * (ua[i, m] - wa[i, m]) * (ub[i, m] - wb[i, m])
            wire += row_gterm * (da[i] - ua[i, row_first]) * (db[i] - ub[i, row_first])
            if row_gseg > 0.0:
                for m in range(1, n_cols):
                    wire += row_gseg * (ua[i, m] - ua[i, m - 1]) * (ub[i, m] - ub[i, m - 1])
        for m in range(n_cols):
            wire += col_gterm * (da[n_rows + m] - wa[col_first, m]) * (db[n_rows + m] - wb[col_first, m])
        if col_gseg > 0.0:
            for i in range(1, n_rows):
                for m in range(n_cols):
                    wire += col_gseg * (wa[i, m] - wa[i - 1, m]) * (wb[i, m] - wb[i - 1, m])
        device_out[b] = device
        wire_out[b] = wire


class SpanSolver:
    """Terminal currents and dissipation of one grid along a trajectory of driver voltages, from
    the span of the solutions it has already solved.

    The grid is linear in its drivers. The solver keeps an orthonormal basis of driver vectors
    q_k with the grid's solution for each (node voltages, terminal currents) and the Gram
    matrices of the solutions in the device and wire dissipation forms. For new drivers D it
    takes the projection c = Q D: if the residual D − Qᵀc is at most ``skip_tol_v`` (by default
    ``tol_v``) everywhere, the
    currents are Σ c_k I_k and the powers cᵀ G c (a resistive network's node voltages move by
    at most the largest driver change, so dropping the residual errs by at most that much at any
    node); otherwise the normalised residual is solved as a new basis element (from the
    ideal-wire state, to ``tol_v`` divided by the largest driver norm seen, so that any later
    coefficient keeps the error within ``tol_v``). During a settle the drivers of a crossbar
    move in a low-dimensional space (in DP the hidden column signals follow the feedback of the
    few output neurons: on 784-256-10 the column drivers of a whole settle have numerical rank
    ~20), so after a few dozen solves the evaluations need no sweep at all. When the basis is
    full it is started afresh.
    """

    def __init__(self, grid: CrossbarGrid, *, max_basis: int = 48, driver_bound_v: float = 0.0):
        if not (isinstance(max_basis, int) and max_basis >= 1):
            raise ValueError(f"max_basis must be a positive integer, got {max_basis!r}")
        self.grid = grid
        self.tol_v = grid.tol_v
        # largest residual left out of a solve (V); tol_v unless loosened for a coarser phase
        self.skip_tol_v = grid.tol_v
        r, m = grid.g.shape
        self.n_rows, self.n_lines = r, m
        self.max_basis = max_basis
        self.directions = np.zeros((max_basis, r + m))
        self.currents = np.zeros((max_basis, r + m))
        self.rows_store = np.zeros((max_basis, r, m))
        self.cols_store = np.zeros((max_basis, r, m))
        self.gram_device = np.zeros((max_basis, max_basis))
        self.gram_wire = np.zeros((max_basis, max_basis))
        self.count = 0
        # a bound on the driver voltages (V) known in advance (the read voltage), so that the first
        # elements are solved tightly enough for the larger driver vectors that follow
        self.driver_floor = driver_bound_v * math.sqrt(r + m)
        self.driver_norm = self.driver_floor
        self.element_sweeps = 0  # sweeps spent on basis elements
        self.last_sweeps = 0

    def reset(self) -> None:
        self.count = 0
        self.driver_norm = self.driver_floor

    def _project(self, drivers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = self.directions[:self.count]
        coefficients = q @ drivers
        residual = drivers - coefficients @ q
        correction = q @ residual  # a second pass keeps the basis orthogonal to round-off
        return coefficients + correction, residual - correction @ q

    def _add(self, residual: np.ndarray) -> None:
        if self.count == self.max_basis:
            self.reset()
            return
        direction = residual / np.linalg.norm(residual)
        r = self.n_rows
        grid = self.grid
        grid.tol_v = max(self.tol_v / max(self.driver_norm, 1e-300), UNIT_SOLVE_TOL_FLOOR_V)
        try:
            part = grid.solve(direction[:r], direction[r::2], direction[r + 1::2], warm=False)
        finally:
            grid.tol_v = self.tol_v
        k = self.count
        self.directions[k] = direction
        self.currents[k, :r] = part.row_a
        self.currents[k, r::2] = part.col_pos_a
        self.currents[k, r + 1::2] = part.col_neg_a
        self.rows_store[k] = grid.row_nodes_v
        self.cols_store[k] = grid.col_nodes_v
        self.count = k + 1
        self.element_sweeps += part.sweeps
        self.last_sweeps += part.sweeps
        device, wire = np.zeros(self.count), np.zeros(self.count)
        _gram_row(grid.g, self.rows_store, self.cols_store, self.directions, self.count, grid.row_gseg,
                  grid.row_gterm, grid.col_gseg, grid.col_gterm, grid.row_start, grid.col_start, device, wire)
        self.gram_device[k, :self.count] = device
        self.gram_device[:self.count, k] = device
        self.gram_wire[k, :self.count] = wire
        self.gram_wire[:self.count, k] = wire

    def solve(self, row_v, col_pos_v, col_neg_v) -> tuple[GridCurrents, float, float]:
        """(terminal currents, device power W, wire power W) for these driver voltages."""
        drivers = np.concatenate([np.asarray(row_v, dtype=np.float64),
                                  interleave_columns(col_pos_v, col_neg_v)])
        self.driver_norm = max(self.driver_norm, float(np.linalg.norm(drivers)))
        self.last_sweeps = 0
        coefficients, residual = self._project(drivers)
        for _ in range(4):
            if np.abs(residual).max() <= self.skip_tol_v:
                break
            self._add(residual)
            coefficients, residual = self._project(drivers)
        else:
            raise GridNotConverged(f"span of the wire grid {self.n_rows}x{self.n_lines} did not take up the "
                                   "driver vector (residual above tol_v after 4 new elements)")
        k = self.count
        currents = coefficients @ self.currents[:k]
        r = self.n_rows
        device = float(coefficients @ self.gram_device[:k, :k] @ coefficients)
        wire = float(coefficients @ self.gram_wire[:k, :k] @ coefficients)
        return GridCurrents(currents[:r], currents[r::2].copy(), currents[r + 1::2].copy(), self.last_sweeps), \
            device, wire


def _tile_edges(n: int, size: int | None) -> list[tuple[int, int]]:
    if size is None or size >= n:
        return [(0, n)]
    return [(start, min(start + size, n)) for start in range(0, n, size)]


class TiledCrossbar:
    """A layer's conductance pair arrays split into physical arrays of at most
    ``wires.max_rows`` rows × ``wires.max_cols`` column pairs, each with its own drivers and
    its own :class:`CrossbarGrid`. A row's driver voltage is applied to every tile the row
    crosses; the partial currents of the tiles are summed (by the summing amplifiers that follow
    the tiles), so the sensed currents have the shape of the whole layer."""

    def __init__(self, g_pos_s: np.ndarray, g_neg_s: np.ndarray, wires: WireParams, *, span_basis: int = 0,
                 driver_bound_v: float = 0.0, **solver_options):
        g_pos_s = np.asarray(g_pos_s, dtype=np.float64)
        g_neg_s = np.asarray(g_neg_s, dtype=np.float64)
        if g_pos_s.ndim != 2 or g_pos_s.shape != g_neg_s.shape:
            raise ValueError(f"g_pos_s and g_neg_s must be 2-D arrays of one shape, got {g_pos_s.shape} "
                             f"and {g_neg_s.shape}")
        self.shape = g_pos_s.shape
        self.wires = wires
        self.tiles = [((r0, r1), (c0, c1), CrossbarGrid(g_pos_s[r0:r1, c0:c1], g_neg_s[r0:r1, c0:c1], wires,
                                                         **solver_options))
                      for r0, r1 in _tile_edges(self.shape[0], wires.max_rows)
                      for c0, c1 in _tile_edges(self.shape[1], wires.max_cols)]
        self.total_sweeps = 0  # sweeps of every tile over every solve so far (a cost measure)
        self.total_solves = 0
        # along a trajectory (a settle), solve from the span of past solutions (SpanSolver)
        self.spans = None
        if span_basis:
            self.spans = [SpanSolver(grid, max_basis=span_basis, driver_bound_v=driver_bound_v)
                          for _, _, grid in self.tiles]
        self._dissipation = (0.0, 0.0)

    @property
    def n_tiles(self) -> int:
        return len(self.tiles)

    def reset(self) -> None:
        for _, _, grid in self.tiles:
            grid.reset()
        for span in self.spans or []:
            span.reset()

    def solve(self, row_v, col_pos_v, col_neg_v, *, warm: bool = True) -> GridCurrents:
        row_v, col_pos_v, col_neg_v = (np.asarray(a, dtype=np.float64) for a in (row_v, col_pos_v, col_neg_v))
        if (row_v.shape != (self.shape[0],) or col_pos_v.shape != (self.shape[1],)
                or col_neg_v.shape != (self.shape[1],)):
            raise ValueError(f"driver voltages must have shapes ({self.shape[0]},), ({self.shape[1]},), "
                             f"({self.shape[1]},); got {row_v.shape}, {col_pos_v.shape}, {col_neg_v.shape}")
        total = GridCurrents(np.zeros(self.shape[0]), np.zeros(self.shape[1]), np.zeros(self.shape[1]))
        self.total_solves += 1
        device_w = wire_w = 0.0
        for t, ((r0, r1), (c0, c1), grid) in enumerate(self.tiles):
            if self.spans is not None:
                part, device, wire = self.spans[t].solve(row_v[r0:r1], col_pos_v[c0:c1], col_neg_v[c0:c1])
                device_w += device
                wire_w += wire
            else:
                part = grid.solve(row_v[r0:r1], col_pos_v[c0:c1], col_neg_v[c0:c1], warm=warm)
            total.row_a[r0:r1] += part.row_a
            total.col_pos_a[c0:c1] += part.col_pos_a
            total.col_neg_a[c0:c1] += part.col_neg_a
            total.sweeps = max(total.sweeps, part.sweeps)
            self.total_sweeps += part.sweeps
            total.error_estimate_v = max(total.error_estimate_v, part.error_estimate_v)
        self._dissipation = (device_w, wire_w)
        return total


    def dissipation_w(self) -> tuple[float, float]:
        """(devices, wires) power (W) of the last solve, summed over the tiles."""
        if self.spans is not None:
            return self._dissipation
        parts = [grid.dissipation_w() for _, _, grid in self.tiles]
        return float(sum(p[0] for p in parts)), float(sum(p[1] for p in parts))

    @property
    def tile_grid(self) -> tuple[int, int]:
        """(row tiles, column tiles) of the layer."""
        return tile_counts(self.shape[0], self.shape[1], self.wires)


def tile_counts(n_rows: int, n_columns: int, wires: WireParams) -> tuple[int, int]:
    """(row tiles, column tiles) a layer of ``n_rows`` × ``n_columns`` weight columns splits into."""
    return len(_tile_edges(n_rows, wires.max_rows)), len(_tile_edges(n_columns, wires.max_cols))


def tile_shapes(n_rows: int, n_columns: int, wires: WireParams) -> list[tuple[int, int]]:
    """(rows, column pairs) of every physical array a layer of ``n_rows`` × ``n_columns`` splits into."""
    return [(r1 - r0, c1 - c0) for r0, r1 in _tile_edges(n_rows, wires.max_rows)
            for c0, c1 in _tile_edges(n_columns, wires.max_cols)]


def sensed_signals_a(g_pos_s: np.ndarray, g_neg_s: np.ndarray, row_v, col_pos_v, col_neg_v,
                     currents: GridCurrents) -> tuple[np.ndarray, np.ndarray]:
    """(forward, backward) signals in amperes that the sense amplifiers recover from the terminal
    currents by adding back the self terms (DESIGN §3.2): forward_j = (y⁺_j ΣG⁺_j − I⁺_j) −
    (y⁻_j ΣG⁻_j − I⁻_j) (= Σ_i (G⁺ − G⁻)_ij x_i with ideal wires), backward_i = x_i ΣG_i − I_row,i
    (= Σ_j G⁺_ij y⁺_j + G⁻_ij y⁻_j)."""
    row_v, col_pos_v, col_neg_v = (np.asarray(a, dtype=np.float64) for a in (row_v, col_pos_v, col_neg_v))
    forward = ((col_pos_v * g_pos_s.sum(axis=0) - currents.col_pos_a)
               - (col_neg_v * g_neg_s.sum(axis=0) - currents.col_neg_a))
    backward = row_v * (g_pos_s.sum(axis=1) + g_neg_s.sum(axis=1)) - currents.row_a
    return forward, backward


def ir_drop_error(g_pos_s: np.ndarray, g_neg_s: np.ndarray, wires: WireParams, row_v, col_pos_v, col_neg_v,
                  **solver_options) -> dict[str, float]:
    """How far wire resistance moves the sensed signals of one layer from the ideal-wire ones.

    Relative deviations of the forward (column) and backward (row) signals of
    :func:`sensed_signals_a`: ``*_max_rel`` = max |Δ| / max |ideal|, ``*_rms_rel`` = ‖Δ‖₂ /
    ‖ideal‖₂ (normalised by the whole vector, because single entries of a signed signal can be
    near zero)."""
    grid = TiledCrossbar(g_pos_s, g_neg_s, wires, **solver_options)
    wired = grid.solve(row_v, col_pos_v, col_neg_v, warm=False)
    return {**signal_deviation(g_pos_s, g_neg_s, row_v, col_pos_v, col_neg_v, wired),
            "n_tiles": grid.n_tiles, "sweeps": wired.sweeps}


def signal_deviation(g_pos_s: np.ndarray, g_neg_s: np.ndarray, row_v, col_pos_v, col_neg_v,
                     wired: GridCurrents) -> dict[str, float]:
    """The relative deviations of :func:`ir_drop_error` for terminal currents ``wired`` already
    solved at these driver voltages."""
    ideal = ideal_currents(g_pos_s, g_neg_s, row_v, col_pos_v, col_neg_v)
    fw_w, bw_w = sensed_signals_a(g_pos_s, g_neg_s, row_v, col_pos_v, col_neg_v, wired)
    fw_i, bw_i = sensed_signals_a(g_pos_s, g_neg_s, row_v, col_pos_v, col_neg_v, ideal)

    def rel(dev, ref, kind):
        scale = np.abs(ref).max() if kind == "max" else np.linalg.norm(ref)
        if scale == 0.0:
            return 0.0 if not np.any(dev) else math.inf
        return float(np.abs(dev).max() / scale) if kind == "max" else float(np.linalg.norm(dev) / scale)
    return {"forward_max_rel": rel(fw_w - fw_i, fw_i, "max"), "forward_rms_rel": rel(fw_w - fw_i, fw_i, "rms"),
            "backward_max_rel": rel(bw_w - bw_i, bw_i, "max"), "backward_rms_rel": rel(bw_w - bw_i, bw_i, "rms")}
