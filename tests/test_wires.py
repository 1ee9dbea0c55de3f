"""The resistive-grid solver of crossbar lines (analogdp.circuit.wires) against exact solutions."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import scipy.sparse.linalg as sparse_linalg
from scipy import sparse

from analogdp.circuit.wires import (
    NEUROSIM_OHM_PER_CELL_1T1R,
    CrossbarGrid,
    GridNotConverged,
    TiledCrossbar,
    WireParams,
    ideal_currents,
    interleave_columns,
    ir_drop_error,
    line_rc_s,
    sensed_signals_a,
)


def _random_layer(rng, rows, cols):
    g_pos = rng.uniform(10e-6 / 17, 10e-6, (rows, cols))
    g_neg = rng.uniform(10e-6 / 17, 10e-6, (rows, cols))
    row_v = rng.uniform(0.0, 0.2, rows)
    d = rng.uniform(-0.2, 0.2, cols)
    return g_pos, g_neg, row_v, d, -d


def direct_grid_currents(g_pos, g_neg, row_v, col_pos_v, col_neg_v, wires: WireParams):
    """Nodal analysis of the whole grid with one sparse direct solve (every row and column node,
    the terminal and first segment of each line in series as one link to its driver)."""
    g = interleave_columns(g_pos, g_neg)
    col_v = interleave_columns(col_pos_v, col_neg_v)
    n_rows, n_cols = g.shape
    n = 2 * n_rows * n_cols
    row_node = np.arange(n_rows * n_cols).reshape(n_rows, n_cols)
    col_node = row_node + n_rows * n_cols
    entries, rhs = [], np.zeros(n)

    def link(a, b, conductance):
        entries.extend([(a, a, conductance), (b, b, conductance), (a, b, -conductance), (b, a, -conductance)])

    def to_driver(a, conductance, volts):
        entries.append((a, a, conductance))
        rhs[a] += conductance * volts

    for i in range(n_rows):
        for m in range(n_cols):
            link(row_node[i, m], col_node[i, m], g[i, m])
            if m + 1 < n_cols:
                link(row_node[i, m], row_node[i, m + 1], 1.0 / wires.r_row_segment_ohm)
            if i + 1 < n_rows:
                link(col_node[i, m], col_node[i + 1, m], 1.0 / wires.r_col_segment_ohm)
    row_end = 0 if wires.row_terminal_end == "start" else n_cols - 1
    col_end = 0 if wires.col_terminal_end == "start" else n_rows - 1
    row_link = 1.0 / (wires.r_row_segment_ohm + wires.r_row_terminal_ohm)
    col_link = 1.0 / (wires.r_col_segment_ohm + wires.r_col_terminal_ohm)
    for i in range(n_rows):
        to_driver(row_node[i, row_end], row_link, row_v[i])
    for m in range(n_cols):
        to_driver(col_node[col_end, m], col_link, col_v[m])
    r, c, v = zip(*entries)
    matrix = sparse.csc_matrix((v, (r, c)), shape=(n, n))
    x = sparse_linalg.spsolve(matrix, rhs)
    u, w = x[row_node], x[col_node]
    row_a = row_link * (row_v - u[:, row_end])
    col_a = col_link * (col_v - w[col_end, :])
    return row_a, col_a[0::2], col_a[1::2]


# ---- limits ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("wires", [WireParams(), WireParams(r_row_segment_ohm=1e-9, r_col_segment_ohm=1e-9),
                                   WireParams(r_row_segment_ohm=1e-9, r_col_segment_ohm=1e-9,
                                              r_row_terminal_ohm=1e-9, r_col_terminal_ohm=1e-9,
                                              row_terminal_end="end", col_terminal_end="start")],
                         ids=["ideal", "1e-9-ohm", "1e-9-ohm-terminals-other-ends"])
def test_vanishing_wire_resistance_gives_the_ideal_currents(wires):
    rng = np.random.default_rng(0)
    g_pos, g_neg, row_v, col_pos, col_neg = _random_layer(rng, 40, 12)
    ideal = ideal_currents(g_pos, g_neg, row_v, col_pos, col_neg)
    got = CrossbarGrid(g_pos, g_neg, wires).solve(row_v, col_pos, col_neg)
    for name in ("row_a", "col_pos_a", "col_neg_a"):
        reference = getattr(ideal, name)
        assert np.abs(getattr(got, name) - reference).max() <= 1e-9 * np.abs(reference).max(), name
    # and the ideal currents are Kirchhoff's sums of DESIGN §3.2, written out once more
    row_expected = sum(g_pos[:, j] * (row_v - col_pos[j]) + g_neg[:, j] * (row_v - col_neg[j]) for j in range(12))
    np.testing.assert_allclose(ideal.row_a, row_expected, rtol=1e-12)


def test_single_line_matches_the_analytic_ladder():
    """One row line of N = 2C cells, every device G to a column held at 0 V (ideal columns), the
    row driven at its start through segments r. Interior node p: v_{p+1} − (2 + rG) v_p +
    v_{p−1} = 0, so v_p = A λ^p + B λ^{−p} with cosh θ = 1 + rG/2; the open end (node N carries
    only its device) acts as a mirror v_{N+1} = v_N, so v_p = K cosh(θ (N + ½ − p)) and v_0 = V
    fixes K. The driver supplies (V − v_1)/r = (V/r)(1 − cosh(θ(N − ½))/cosh(θ(N + ½)))."""
    columns, r_ohm, g_s, v_drive = 150, 3.0, 7e-6, 0.17
    n = 2 * columns
    theta = math.acosh(1.0 + r_ohm * g_s / 2.0)
    expected_row_a = v_drive / r_ohm * (1.0 - math.cosh(theta * (n - 0.5)) / math.cosh(theta * (n + 0.5)))
    p = np.arange(1, n + 1)
    expected_node_v = v_drive * np.cosh(theta * (n + 0.5 - p)) / math.cosh(theta * (n + 0.5))
    assert expected_node_v[-1] < 0.8 * v_drive  # a real IR drop, not a near-ideal line
    g = np.full((1, columns), g_s)
    grid = CrossbarGrid(g, g, WireParams(r_row_segment_ohm=r_ohm))
    got = grid.solve(np.array([v_drive]), np.zeros(columns), np.zeros(columns))
    assert abs(got.row_a[0] - expected_row_a) <= 1e-9 * expected_row_a
    column_a = interleave_columns(got.col_pos_a, got.col_neg_a)
    np.testing.assert_allclose(-column_a, g_s * expected_node_v, rtol=1e-9)
    # driven from the other end the line is the mirror image
    mirrored = CrossbarGrid(g, g, WireParams(r_row_segment_ohm=r_ohm, row_terminal_end="end"))
    got = mirrored.solve(np.array([v_drive]), np.zeros(columns), np.zeros(columns))
    np.testing.assert_allclose(-interleave_columns(got.col_pos_a, got.col_neg_a), g_s * expected_node_v[::-1],
                               rtol=1e-9)


# ---- against a direct sparse solve ----------------------------------------------------------------
@pytest.mark.parametrize("seed,shape,wires", [
    (1, (7, 5), WireParams(r_row_segment_ohm=3.0, r_col_segment_ohm=3.0)),
    (2, (12, 4), WireParams(r_row_segment_ohm=1000.0, r_col_segment_ohm=3000.0, r_row_terminal_ohm=500.0,
                            r_col_terminal_ohm=20.0, row_terminal_end="end", col_terminal_end="start")),
    (3, (5, 9), WireParams(r_row_segment_ohm=10.0, r_col_segment_ohm=0.5, r_row_terminal_ohm=100.0,
                           col_terminal_end="start")),
    (4, (30, 20), WireParams.at_node(7, r_row_terminal_ohm=50.0, r_col_terminal_ohm=50.0)),
], ids=["3ohm", "strong-coupling-terminals", "mixed", "7nm-30x20"])
def test_relaxation_agrees_with_a_sparse_direct_solve(seed, shape, wires):
    rng = np.random.default_rng(seed)
    g_pos, g_neg, row_v, col_pos, col_neg = _random_layer(rng, *shape)
    row_a, col_pos_a, col_neg_a = direct_grid_currents(g_pos, g_neg, row_v, col_pos, col_neg, wires)
    got = CrossbarGrid(g_pos, g_neg, wires).solve(row_v, col_pos, col_neg)
    scale = max(np.abs(row_a).max(), np.abs(col_pos_a).max(), np.abs(col_neg_a).max())
    for mine, reference in ((got.row_a, row_a), (got.col_pos_a, col_pos_a), (got.col_neg_a, col_neg_a)):
        assert np.abs(mine - reference).max() <= 1e-9 * scale
    # the wires matter here: the currents are far from the ideal ones
    ideal = ideal_currents(g_pos, g_neg, row_v, col_pos, col_neg)
    assert np.abs(ideal.row_a - row_a).max() > 1e-6 * scale


def test_lumped_lines_with_only_terminal_resistance_agree_with_a_dense_solve():
    """Zero segment resistance: each line is one node u_i (row) or w_m (column) behind its terminal
    resistor; Kirchhoff at those R + 2C nodes is a small dense system."""
    rng = np.random.default_rng(5)
    g_pos, g_neg, row_v, col_pos, col_neg = _random_layer(rng, 9, 6)
    g_row_t, g_col_t = 1.0 / 2000.0, 1.0 / 700.0
    got = CrossbarGrid(g_pos, g_neg, WireParams(r_row_terminal_ohm=2000.0, r_col_terminal_ohm=700.0)).solve(
        row_v, col_pos, col_neg)
    g = interleave_columns(g_pos, g_neg)
    col_v = interleave_columns(col_pos, col_neg)
    n_rows, n_cols = g.shape
    matrix = np.zeros((n_rows + n_cols, n_rows + n_cols))
    matrix[:n_rows, :n_rows] = np.diag(g_row_t + g.sum(axis=1))
    matrix[n_rows:, n_rows:] = np.diag(g_col_t + g.sum(axis=0))
    matrix[:n_rows, n_rows:] = -g
    matrix[n_rows:, :n_rows] = -g.T
    nodes = np.linalg.solve(matrix, np.concatenate([g_row_t * row_v, g_col_t * col_v]))
    row_a = g_row_t * (row_v - nodes[:n_rows])
    col_a = g_col_t * (col_v - nodes[n_rows:])
    np.testing.assert_allclose(got.row_a, row_a, rtol=1e-9, atol=1e-9 * np.abs(row_a).max())
    np.testing.assert_allclose(interleave_columns(got.col_pos_a, got.col_neg_a), col_a, rtol=1e-9,
                               atol=1e-9 * np.abs(col_a).max())


def test_warm_start_needs_fewer_sweeps_and_gives_the_same_answer():
    rng = np.random.default_rng(6)
    g_pos, g_neg, row_v, col_pos, col_neg = _random_layer(rng, 64, 32)
    wires = WireParams.at_node(22)
    grid = CrossbarGrid(g_pos, g_neg, wires)
    cold = grid.solve(row_v, col_pos, col_neg)
    nudged = col_pos + 1e-4 * rng.standard_normal(32)
    warm = grid.solve(row_v, nudged, -nudged)
    fresh = CrossbarGrid(g_pos, g_neg, wires).solve(row_v, nudged, -nudged)
    assert warm.sweeps < cold.sweeps
    np.testing.assert_allclose(warm.col_pos_a, fresh.col_pos_a, rtol=1e-9, atol=1e-9 * np.abs(fresh.col_pos_a).max())
    assert 1.0 < grid.omega < 2.0 and 0.0 < grid.gauss_seidel_contraction < 1.0


def test_superposition_warm_start_follows_a_smooth_trajectory_in_fewer_sweeps():
    """Drivers on a smooth trajectory: starting from the best combination of the last four
    solutions needs fewer sweeps than starting from the last one, for the same answers."""
    rng = np.random.default_rng(10)
    g_pos, g_neg, row_v, col_final, _ = _random_layer(rng, 96, 40)
    tau = rng.uniform(5e-9, 20e-9, 40)
    wires = WireParams.at_node(14)
    last_only = CrossbarGrid(g_pos, g_neg, wires, history=1)
    superposed = CrossbarGrid(g_pos, g_neg, wires, history=4)
    sweeps = {1: [], 4: []}
    for t in np.arange(1, 25) * 1.25e-9:
        d = col_final * (1.0 - np.exp(-t / tau))
        for history, grid in ((1, last_only), (4, superposed)):
            result = grid.solve(row_v, d, -d)
            sweeps[history].append(result.sweeps)
        fresh = CrossbarGrid(g_pos, g_neg, wires).solve(row_v, d, -d)
        scale = np.abs(fresh.row_a).max()
        assert np.abs(result.row_a - fresh.row_a).max() <= 1e-9 * scale
        assert np.abs(result.col_neg_a - fresh.col_neg_a).max() <= 1e-9 * scale
    assert np.mean(sweeps[4][4:]) < 0.8 * np.mean(sweeps[1][4:]), sweeps


def test_unconverged_solve_raises_a_clear_error():
    rng = np.random.default_rng(7)
    g_pos, g_neg, row_v, col_pos, col_neg = _random_layer(rng, 64, 32)
    grid = CrossbarGrid(g_pos, g_neg, WireParams.at_node(7), max_sweeps=3)
    with pytest.raises(GridNotConverged, match=r"did not converge in 3 sweeps.*max_sweeps"):
        grid.solve(row_v, col_pos, col_neg)


# ---- tiling and the IR-drop report ---------------------------------------------------------------
def test_tiles_sum_their_partial_currents():
    rng = np.random.default_rng(8)
    g_pos, g_neg, row_v, col_pos, col_neg = _random_layer(rng, 10, 7)
    wires = WireParams(r_row_segment_ohm=5.0, r_col_segment_ohm=5.0, max_rows=4, max_cols=3)
    tiled = TiledCrossbar(g_pos, g_neg, wires)
    assert tiled.n_tiles == 3 * 3
    got = tiled.solve(row_v, col_pos, col_neg)
    expected_row = np.zeros(10)
    expected_pos = np.zeros(7)
    for r0, r1 in ((0, 4), (4, 8), (8, 10)):
        for c0, c1 in ((0, 3), (3, 6), (6, 7)):
            row_a, pos_a, _ = direct_grid_currents(g_pos[r0:r1, c0:c1], g_neg[r0:r1, c0:c1], row_v[r0:r1],
                                                   col_pos[c0:c1], col_neg[c0:c1], wires)
            expected_row[r0:r1] += row_a
            expected_pos[c0:c1] += pos_a
    np.testing.assert_allclose(got.row_a, expected_row, rtol=1e-9, atol=1e-9 * np.abs(expected_row).max())
    np.testing.assert_allclose(got.col_pos_a, expected_pos, rtol=1e-9, atol=1e-9 * np.abs(expected_pos).max())
    # with ideal wires tiling changes nothing
    ideal_tiled = TiledCrossbar(g_pos, g_neg, WireParams(max_rows=4, max_cols=3)).solve(row_v, col_pos, col_neg)
    np.testing.assert_allclose(ideal_tiled.row_a, ideal_currents(g_pos, g_neg, row_v, col_pos, col_neg).row_a,
                               rtol=1e-12)


def test_ir_drop_error_reports_relative_deviations_of_the_sensed_signals():
    rng = np.random.default_rng(9)
    g_pos, g_neg, row_v, col_pos, col_neg = _random_layer(rng, 128, 32)
    ideal = ideal_currents(g_pos, g_neg, row_v, col_pos, col_neg)
    forward, backward = sensed_signals_a(g_pos, g_neg, row_v, col_pos, col_neg, ideal)
    np.testing.assert_allclose(forward, (g_pos - g_neg).T @ row_v, rtol=1e-9, atol=1e-20)
    np.testing.assert_allclose(backward, g_pos @ col_pos + g_neg @ col_neg, rtol=1e-9, atol=1e-20)
    assert ir_drop_error(g_pos, g_neg, WireParams(), row_v, col_pos, col_neg)["forward_max_rel"] < 1e-12
    small = ir_drop_error(g_pos, g_neg, WireParams.at_node(65), row_v, col_pos, col_neg)
    large = ir_drop_error(g_pos, g_neg, WireParams.at_node(7), row_v, col_pos, col_neg)
    tiled = ir_drop_error(g_pos, g_neg, WireParams.at_node(7, max_rows=32), row_v, col_pos, col_neg)
    for key in ("forward_max_rel", "forward_rms_rel", "backward_max_rel", "backward_rms_rel"):
        assert 0.0 < small[key] < large[key], key
    assert small["forward_rms_rel"] <= small["forward_max_rel"] * math.sqrt(32)
    assert tiled["forward_max_rel"] < large["forward_max_rel"] and tiled["n_tiles"] == 4


# ---- parameters ----------------------------------------------------------------------------------
def test_wire_parameters_are_validated_and_documented():
    assert WireParams().ideal and not WireParams.at_node(22).ideal
    assert WireParams.at_node(22).r_row_segment_ohm == NEUROSIM_OHM_PER_CELL_1T1R[22] == 3.0
    assert WireParams.at_node(22, cell="crosspoint").r_col_segment_ohm == 1.5
    for bad in (dict(r_row_segment_ohm=-1.0), dict(r_col_segment_ohm=float("nan")),
                dict(r_row_terminal_ohm=float("inf")), dict(max_rows=0), dict(max_cols=2.5),
                dict(row_terminal_end="middle")):
        name = next(iter(bad))
        with pytest.raises(ValueError, match=f"WireParams.{name}"):
            WireParams(**bad)
    with pytest.raises(ValueError, match="node_nm"):
        WireParams.at_node(28)
    with pytest.raises(ValueError, match="driver voltages"):
        CrossbarGrid(np.ones((3, 2)) * 1e-6, np.ones((3, 2)) * 1e-6, WireParams()).solve(np.zeros(2), np.zeros(2),
                                                                                          np.zeros(2))


def test_line_rc_is_far_below_the_neuron_time_constant():
    # 784 cells at 3 Ω and 0.1 fF: r·c·N(N+1)/2 ≈ 92 ps, about 1 % of τ = 10 ns
    rc = line_rc_s(784, 3.0)
    assert rc == pytest.approx(3.0 * 0.1e-15 * 784 * 785 / 2)
    assert rc < 0.01 * 10e-9


# ---- the netlist side: segment resistors in ngspice ---------------------------------------------
@pytest.mark.ngspice
@pytest.mark.parametrize("wires", [
    WireParams(r_row_segment_ohm=300.0, r_col_segment_ohm=500.0, r_row_terminal_ohm=50.0, r_col_terminal_ohm=20.0),
    WireParams(r_row_segment_ohm=1000.0, r_col_segment_ohm=1.0, row_terminal_end="end", col_terminal_end="start"),
    WireParams(r_row_terminal_ohm=4000.0, r_col_segment_ohm=200.0),
], ids=["distributed-with-terminals", "other-ends", "lumped-rows"])
def test_grid_solve_matches_the_ngspice_operating_point_of_a_16x8_crossbar(wires):
    """The netlist of a single 16x8 layer (plus bias row) with explicit segment resistors, solved
    by ngspice's DC operating point; the grid solver, given the same driver voltages, must give
    the same sensed currents."""
    from dataclasses import replace

    from analogdp.spice import SpiceOptions, run_ngspice, write_netlist
    from analogdp.spice.examples import random_problem

    circuit, x, y = random_problem((16, 8), seed=2)
    circuit = replace(circuit, wires=wires)
    xbar = circuit.crossbars[0]
    text = write_netlist(circuit, x, y, t_stop_s=10e-9, t_step_s=1e-9, options=SpiceOptions(reltol=1e-9))
    # 17 rows of 16 cells, 16 column lines of 17 cells, one terminal resistor per line when > 0
    assert len(re.findall(r"^Rwr0_r\d+_c\d+[pn] ", text, re.MULTILINE)) == (17 * 16 if wires.r_row_segment_ohm else 0)
    assert len(re.findall(r"^Rwc0_c\d+[pn]_r\d+ ", text, re.MULTILINE)) == (16 * 17 if wires.r_col_segment_ohm else 0)
    assert len(re.findall(r"^Rwr0_r\d+_t ", text, re.MULTILINE)) == (17 if wires.r_row_terminal_ohm else 0)
    assert len(re.findall(r"^Rwc0_c\d+[pn]_t ", text, re.MULTILINE)) == (16 if wires.r_col_terminal_ohm else 0)
    if wires.r_row_segment_ohm:
        assert re.search(r"^Rwr0_r3_c5n x0_r3_c5p x0_r3_c5n 300.0$|^Rwr0_r3_c5n x0_r3_c6p x0_r3_c5n 1000.0$",
                         text, re.MULTILINE)
    states = [f"v(s1_n{j}_{c})" for j in range(8) for c in ("p", "m")]
    senses = [f"i(Vrow0_r{i})" for i in range(17)] + [f"i(Vcol0_c{j}{p})" for j in range(8) for p in ("p", "n")]
    control = ["* operating point only", ".control", "set wr_singlescale", "set wr_vecnames", "set numdgt=15", "op",
               "wrdata grid.op.data " + " ".join(states + senses), "quit", ".endc", ".end", ""]
    run = run_ngspice(text.split("\n.control")[0] + "\n" + "\n".join(control))
    op = {name: vec[0] for name, vec in run.files["grid.op.data"].vectors.items()}
    difference = np.array([op[f"v(s1_n{j}_p)"] - op[f"v(s1_n{j}_m)"] for j in range(8)])
    row_v = circuit.neuron.v_read_v * np.append(x, 1.0)  # inputs and the bias row
    got = CrossbarGrid(xbar.g_pos_s, xbar.g_neg_s, wires).solve(row_v, difference, -difference)
    spice_row = np.array([op[f"i(vrow0_r{i})"] for i in range(17)])
    spice_pos = np.array([op[f"i(vcol0_c{j}p)"] for j in range(8)])
    spice_neg = np.array([op[f"i(vcol0_c{j}n)"] for j in range(8)])
    scale = max(np.abs(spice_row).max(), np.abs(spice_pos).max())
    for mine, theirs in ((got.row_a, spice_row), (got.col_pos_a, spice_pos), (got.col_neg_a, spice_neg)):
        assert np.abs(mine - theirs).max() <= 1e-9 * scale
    ideal = ideal_currents(xbar.g_pos_s, xbar.g_neg_s, row_v, difference, -difference)
    assert np.abs(ideal.row_a - spice_row).max() > 1e-4 * scale  # the wires are really in the netlist
