"""Settles with resistive crossbar wires (analogdp.solver.wired) against the ideal circuit, an
independent direct solve of the grid, and ngspice."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_wires import direct_grid_currents

from analogdp.circuit import dyad_neuron
from analogdp.circuit.wires import GridCurrents, WireParams, sensed_signals_a
from analogdp.spice.examples import random_problem
from analogdp.solver import settle

V_R = 0.2


def wired(circuit, r_ohm, **options):
    return replace(circuit, wires=WireParams(r_row_segment_ohm=r_ohm, r_col_segment_ohm=r_ohm, **options))


def problem(sizes=(12, 8, 6, 4), seed=0):
    circuit, x, y = random_problem(sizes, neuron_kind=dyad_neuron("dpT", 0.3), seed=seed)
    return circuit, x[None, :], y[None, :]


def test_vanishing_wire_resistance_reproduces_the_ideal_circuit():
    circuit, x, y = problem()
    ideal = settle(circuit, x, y)
    nearly = settle(wired(circuit, 1e-9), x, y)
    assert np.abs(nearly.v_final_v - ideal.v_final_v).max() <= 1e-9 * V_R
    np.testing.assert_allclose(nearly.settling_time_s, ideal.settling_time_s, rtol=1e-3)
    np.testing.assert_allclose(nearly.energy.crossbar, ideal.energy.crossbar, rtol=1e-3)
    assert nearly.energy.wire[0] < 1e-9 * nearly.energy.crossbar[0]


def test_settled_state_is_the_fixed_point_of_the_directly_solved_grid():
    """At the settled state every compartment sits at its amplifier's target, with the sensed
    signals recomputed from a SciPy sparse direct solve of each crossbar's grid."""
    circuit, x, y = problem()
    wires = WireParams(r_row_segment_ohm=40.0, r_col_segment_ohm=25.0, r_row_terminal_ohm=100.0,
                       col_terminal_end="start")
    cw = replace(circuit, wires=wires)
    result = settle(cw, x, y)
    v = result.v_final_v[0]
    g_u = circuit.device.g_unit_s
    signals = []
    rows = [np.append(x[0], 1.0)]
    for layer in range(1, circuit.n_layers + 1):
        comps = result.compartments(layer)[0]
        rows.append(np.append(comps @ np.array([0.3, 0.7]), 1.0))
    for k, xbar in enumerate(circuit.crossbars):
        comps = result.compartments(k + 1)[0]
        d = (comps[:, 0] - comps[:, 1]) * V_R
        row_v = rows[k][: xbar.n_rows] * V_R
        currents = GridCurrents(*direct_grid_currents(xbar.g_pos_s, xbar.g_neg_s, row_v, d, -d, wires))
        forward, backward = sensed_signals_a(xbar.g_pos_s, xbar.g_neg_s, row_v, d, -d, currents)
        signals.append((forward / (g_u * V_R), backward[: xbar.n_inputs] / (g_u * V_R)))
    # hidden targets: f(a + κ b) with the dpT gains (α = 0.3)
    gains = circuit.neuron_kind.feedback_gains
    deviation = 0.0
    for layer in range(1, circuit.n_layers):
        a, b = signals[layer - 1][0], signals[layer][1]
        comps = result.compartments(layer)[0] * V_R
        for c, gain in enumerate(gains):
            target = V_R * np.clip(a + gain * b, 0.0, 1.0)
            deviation = max(deviation, np.abs(comps[:, c] - target).max())
    assert deviation <= 1e-9 * V_R
    assert np.abs(v).max() > 0.05 * V_R  # a state that is not trivially zero


@pytest.mark.parametrize("r_ohm", [1.0, 10.0])
def test_energy_balance_holds_with_wires(r_ohm):
    circuit, x, y = problem()
    v0 = np.random.default_rng(5).uniform(0, V_R, (1, circuit.n_compartments))
    result = settle(wired(circuit, r_ohm, r_row_terminal_ohm=50.0), x, y, v0=v0)
    for energy in (result.energy, result.energy_to_end):
        balance = energy.crossbar + energy.wire + energy.neuron + energy.capacitor
        np.testing.assert_allclose(energy.delivered, balance, rtol=1e-6)
        assert np.all(energy.wire > 0) and np.all(energy.crossbar > 0)
        assert "wire" in energy.as_dict(0)
    # the wire share grows with the resistance: roughly r × line conductance
    assert 1e-5 * r_ohm < result.energy_to_end.wire[0] / result.energy_to_end.crossbar[0] < 1e-2 * r_ohm


def test_ir_drop_error_is_reported_per_crossbar_and_grows_with_resistance():
    circuit, x, y = problem()
    small = settle(wired(circuit, 1.0), x, y).ir_drop
    large = settle(wired(circuit, 10.0), x, y).ir_drop
    assert len(small) == circuit.n_layers
    for k in range(circuit.n_layers):
        for key in ("forward_max_rel", "forward_rms_rel", "backward_max_rel", "backward_rms_rel"):
            assert small[k][key].shape == (1,)
            assert 0 < small[k][key][0] < large[k][key][0]
        # linear in r at these small drops
        np.testing.assert_allclose(large[k]["forward_max_rel"], 10 * small[k]["forward_max_rel"], rtol=0.05)
    assert settle(circuit, x, y).ir_drop is None


def test_ideal_circuit_breakdown_has_no_wire_term():
    circuit, x, y = problem()
    result = settle(circuit, x, y)
    assert result.energy.wire is None and "wire" not in result.energy.as_dict()


@pytest.mark.ngspice
@pytest.mark.parametrize("r_ohm", [1.0, 10.0])
def test_wired_single_layer_matches_ngspice(r_ohm):
    from analogdp.spice import cross_check
    circuit, x, y = random_problem((16, 8))
    check = cross_check(wired(circuit, r_ohm), x, y, time_numba=False)
    assert check.passed(), check.failures()
    assert check.max_abs_dev_v <= 1e-3 and check.final_abs_dev_v <= 1e-5
    assert check.settling_time_rel_dev <= 0.02 and check.energy_rel_dev <= 0.01


# ---- tiling ------------------------------------------------------------------------------------
def test_tiling_adds_drivers_and_partial_sense_amplifiers_to_the_inventory():
    circuit, _, _ = random_problem((12, 9, 5))
    plain = circuit.amplifier_inventory()
    tiled = replace(circuit, wires=WireParams(max_rows=4, max_cols=4)).amplifier_inventory()
    assert "tile_partial_sense" not in plain
    # crossbar 0: 13 rows in 4 row tiles, 9 column pairs in 3 column tiles; crossbar 1: 10 rows
    # in 3 tiles, 5 column pairs in 2
    assert tiled["row_drivers"] == 13 * 3 + 10 * 2
    assert tiled["column_drivers"] == 2 * (9 * 4 + 5 * 3)
    assert tiled["tile_partial_sense"] == 9 * 4 + (5 * 3 + 9 * 2)
    # a tile at least as large as the layer changes nothing
    assert replace(circuit, wires=WireParams(max_rows=100, max_cols=100)).amplifier_inventory() == plain


def test_tiles_with_ideal_wires_change_nothing_electrically():
    circuit, x, y = problem()
    plain = settle(circuit, x, y)
    tiled = settle(replace(circuit, wires=WireParams(max_rows=5, max_cols=3)), x, y)
    np.testing.assert_array_equal(tiled.v_final_v, plain.v_final_v)
    assert tiled.energy.amplifier_static[0] > plain.energy.amplifier_static[0]


def test_tiled_wired_settle_is_the_sum_of_its_tiles():
    """A tiled layer with wires settles to a different state than the untiled one (shorter
    lines, less IR drop) and its IR-drop error is smaller."""
    circuit, x, y = problem((24, 16, 4))
    whole = settle(wired(circuit, 30.0), x, y)
    tiled = settle(wired(circuit, 30.0, max_rows=8, max_cols=4), x, y)
    assert tiled.ir_drop[0]["forward_max_rel"][0] < whole.ir_drop[0]["forward_max_rel"][0]
    e = tiled.energy_to_end
    np.testing.assert_allclose(e.delivered, e.crossbar + e.wire + e.neuron + e.capacitor, rtol=1e-6)


@pytest.mark.ngspice
@pytest.mark.parametrize("r_ohm", [0.0, 10.0])
def test_tiled_netlist_matches_the_solver_and_its_inventory(r_ohm):
    from analogdp.spice import count_amplifiers, cross_check, write_netlist
    circuit, x, y = random_problem((12, 9, 5))
    tiled = wired(circuit, r_ohm, max_rows=4, max_cols=4)
    text = write_netlist(tiled, x, y, t_stop_s=200e-9, t_step_s=1e-9)
    counts = count_amplifiers(text)
    assert {k: v for k, v in counts.items() if v} == tiled.amplifier_inventory()
    assert "Rwr0_r0_t1_c4p" in text if r_ohm else "Bpa0_c0_t3" in text
    check = cross_check(tiled, x, y, time_numba=False)
    assert check.passed(), check.failures()


# ---- command line -------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [["--r-wire-ohm", "-1"], ["--r-wire-ohm", "nan"], ["--r-row-segment-ohm", "inf"],
                                 ["--tile", "0x4"], ["--max-rows", "0"]])
def test_bad_wire_options_exit_2_with_one_line(bad, capsys):
    from sims import crossbar
    with pytest.raises(SystemExit) as exit_info:
        crossbar.main(["--layers", "12x6x10", "--samples", "1", "--no-progress", *bad])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and bad[0] in err


def test_wire_options_reach_the_json_summary(tmp_path):
    import json

    from sims import crossbar
    path = tmp_path / "run.json"
    # a tile larger than the layer is one array
    assert crossbar.main(["--layers", "12x6x10", "--samples", "1", "--no-progress", "--r-wire-ohm", "10",
                          "--tile", "4x100", "--json", str(path)]) == 0
    summary = json.loads(path.read_text())
    wires = summary["params"]["circuit"]["wires"]
    assert wires["r_row_segment_ohm"] == wires["r_col_segment_ohm"] == 10.0
    assert (wires["max_rows"], wires["max_cols"]) == (4, 100)
    assert [entry["crossbar"] for entry in summary["ir_drop_error"]] == [0, 1]
    assert all(0 < entry["forward_max_rel"] < 0.1 for entry in summary["ir_drop_error"])
    assert summary["energy_breakdown_j"]["wire"] > 0 and summary["wire_grid_sweeps"] > 0


def test_equilibrium_engine_solves_the_wired_circuit():
    """The steady-state solve (analogdp.equilibrium) of a wired circuit reaches the state the ODE
    settles to, not the ideal circuit's."""
    from analogdp.equilibrium import equilibrium_state
    circuit, x, y = problem()
    cw = wired(circuit, 10.0)
    ode = settle(cw, x, y).v_final_v
    direct = equilibrium_state(cw, x, y)
    assert np.abs(direct - ode).max() <= 2e-9 * V_R
    assert np.abs(direct - settle(circuit, x, y).v_final_v).max() > 1e-4 * V_R
