"""Transistor-level network (SKY130 cells) in stock ngspice against the numba ODE; the characterised
amplifiers as macromodel parameters and static power."""

import os
import shutil

import numpy as np
import pytest

from analogdp.spice import characterised, sky130, write_netlist
from analogdp.spice.examples import random_problem
from analogdp.solver.reference import solve_ivp_reference
from analogdp.spice.transistor_check import (TransistorRun, compare_with_reference, estimate_transistor_seconds,
                                             run_transistor_level, transistor_cells,
                                             transistor_cross_check)
from analogdp.spice.transistor_netlist import TransistorDesign, line_holder_multiplier, write_transistor_netlist

pytestmark = pytest.mark.ngspice

if shutil.which("ngspice") is None and os.environ.get("ANALOGDP_ALLOW_NO_NGSPICE") == "1":
    pytest.skip("ngspice missing and ANALOGDP_ALLOW_NO_NGSPICE=1", allow_module_level=True)


def test_6_4_3_transistor_level_runs_and_keeps_the_learning_signal(tmp_path):
    circuit, x, y = random_problem((6, 4, 3), seed=0)
    path = tmp_path / "net.cir"
    run = run_transistor_level(circuit, x, y, t_stop_s=400e-9, netlist_path=path)
    text = path.read_text()
    assert sky130.lib_line("tt") in text and "Xrow1_r0 " in text and "Xt1_n0_p " in text
    check = compare_with_reference(circuit, x, y, run, reference="ideal")
    assert check.reference == "ideal" and check.n_time_points > 100
    # against the ideal circuit: the compartments' bottom clip (6 mV) and finite gain move the
    # settled voltages by a few % of V_r, but the learning signal v+ - v- keeps its direction
    assert check.dyad_cosine >= 0.99
    assert check.final_abs_dev_rel_v_r < 0.08
    assert check.energy_rel_dev < 0.10
    # what the supplies deliver is far above the signal energy, and positive
    assert check.supply_energy_j > 10 * check.energy_j > 0
    # the ODE whose hidden compartments follow the cell's measured transfer curve (ideal amplifiers
    # otherwise): the clip and gain error are now in the reference, the settled voltages move closer
    curve = compare_with_reference(circuit, x, y, run, reference="transfer-curve")
    assert curve.final_abs_dev_rel_v_r < 0.5 * check.final_abs_dev_rel_v_r
    assert curve.final_abs_dev_rel_v_r < 0.02
    # the characterised macromodel per stage kind (line holder TIAs at noise gain 1.5, the
    # compartment cell on its measured curve): settled voltages within 1 % of V_r, energy within
    # 10 %, the learning signal's direction kept, and the settling time far closer than with ideal
    # amplifiers (the 10 % bound is not met: the transistor network settles about 1.3-1.6x slower)
    macro = compare_with_reference(circuit, x, y, run, reference="macromodel")
    assert macro.final_abs_dev_rel_v_r <= 0.01
    assert macro.energy_rel_dev <= 0.10 and macro.dyad_cosine >= 0.99
    ratio = macro.settling_time_s / macro.settling_time_reference_s
    assert abs(ratio - 1) < 0.25 * abs(curve.settling_time_s / curve.settling_time_reference_s - 1)
    # one amplifier model for every stage (noise gain 1 + G_Σ/G_u) is several times further off
    uniform = compare_with_reference(circuit, x, y, run, reference="macromodel-uniform")
    assert uniform.final_abs_dev_rel_v_r > 3 * macro.final_abs_dev_rel_v_r
    # a saved run compares the same once loaded
    run.save(tmp_path / "run.npz")
    again = compare_with_reference(circuit, x, y, TransistorRun.load(tmp_path / "run.npz"), reference="ideal")
    assert again.final_abs_dev_v == check.final_abs_dev_v and again.energy_j == check.energy_j


def test_macromodel_reference_is_the_characterised_per_stage_circuit():
    circuit, x, y = random_problem((2, 1), seed=0)
    run = run_transistor_level(circuit, x, y, t_stop_s=100e-9)
    check = compare_with_reference(circuit, x, y, run, reference="macromodel")
    assert check.reference == "macromodel"
    # its settle is the characterised amplifiers', which differs from the ideal circuit's
    ideal = compare_with_reference(circuit, x, y, run, reference="ideal")
    assert check.settling_time_reference_s != ideal.settling_time_reference_s


def test_unknown_reference_is_a_value_error():
    circuit, x, y = random_problem((2, 1), seed=0)
    with pytest.raises(ValueError, match="reference"):
        transistor_cross_check(circuit, x, y, reference="nonsense")


def test_netlist_refuses_what_it_cannot_realise():
    circuit, x, y = random_problem((3, 2), seed=0, scheme="dual-array")
    with pytest.raises(ValueError, match="bidirectional"):
        write_transistor_netlist(circuit, x, y, t_stop_s=1e-7, t_step_s=1e-9)
    with pytest.raises(ValueError, match="corner"):
        TransistorDesign(corner="xx")


def test_line_holder_output_stage_covers_the_line_current():
    # 4 µA per output stage: 100 µS at 0.4 V is 40 µA, with 25 % margin 50 µA -> 13 stages
    assert line_holder_multiplier(100e-6) == 13
    assert line_holder_multiplier(1e-9) == 1


def test_macromodel_netlist_per_stage_kind_agrees_with_the_ode_in_ngspice():
    """The characterised macromodel exported as a netlist (one subcircuit pair per stage kind, the
    hidden targets on the measured curve as pwl) and run in ngspice follows the numba ODE."""
    from analogdp.spice.compare import cross_check

    circuit, x, y = random_problem((6, 4, 3), seed=0)
    macro = characterised.characterised_circuit(circuit)
    text = write_netlist(macro, x, y, t_stop_s=400e-9, t_step_s=1e-9)
    assert ".subckt adp_stage_hidden " in text and ".subckt adp_stage_output " in text and "pwl(" in text
    check = cross_check(macro, x, y, t_stop_s=400e-9, t_step_s=1e-9, time_numba=False)
    assert check.passed(), check.failures()
    assert check.max_abs_dev_v < 1e-4 * circuit.neuron.v_read_v


def test_characterised_macromodel_follows_the_transistor_design():
    circuit, _, _ = random_problem((6, 4, 3), seed=0)
    cells = sky130.load_characterised("sky130-tt")["cells"]
    amp = characterised.characterised_amplifiers(circuit, design=TransistorDesign(feedback_noise_gain=2.0))
    assert amp.sense_noise_gain == 2.0 and amp.a0_db == cells["line_holder"]["a0_db"] and amp.rail_low_v is None
    assert amp.hidden_compartment.a0_db == cells["compartment"]["a0_db"]
    assert amp.hidden_compartment.rail_low_v == cells["compartment"]["output_low_v"]
    assert amp.output_compartment.gbw_hz == cells["line_holder"]["gbw_hz"]
    assert amp.offset_sigma_v == 0 and amp.hidden_compartment.offset_sigma_v == 0  # nominal transistors
    assert amp.hidden_transfer_v == tuple(characterised.transfer_curve()[1])
    assert characterised.characterised_amplifiers(circuit, measured_curve=False).hidden_transfer_u is None


def test_characterised_set_maps_onto_the_macromodel():
    data = sky130.load_characterised("sky130-tt")["cells"]
    amp = characterised.amplifier_params("compartment")
    assert amp.a0_db == data["compartment"]["a0_db"] and amp.gbw_hz == data["compartment"]["gbw_hz"]
    assert amp.rail_low_v == data["compartment"]["output_low_v"]
    assert amp.slew_v_per_s == data["compartment"]["slew_rate_v_per_s"]
    with pytest.raises(ValueError, match="cell"):
        characterised.amplifier_params("nonsense")
    u, v = characterised.transfer_curve()
    assert u.shape == v.shape and v.max() == pytest.approx(0.2, abs=2e-3)


def test_measured_static_power_replaces_the_assumption():
    circuit, _, _ = random_problem((6, 4, 3), seed=0)
    by_kind = characterised.static_power_by_kind_w(circuit)
    assert set(by_kind) == set(circuit.amplifier_inventory())
    cells = sky130.load_characterised("sky130-tt")["cells"]
    p_line = cells["line_holder"]["static_power_w"]
    # every line holder burns at least the measured single-stage figure
    lines = circuit.amplifier_inventory()["row_drivers"] + circuit.amplifier_inventory()["column_drivers"]
    assert by_kind["row_drivers"] + by_kind["column_drivers"] >= lines * p_line
    measured = characterised.with_measured_static_power(circuit)
    total = measured.neuron.p_amp_static_w * measured.n_amplifiers
    assert total == pytest.approx(sum(by_kind.values()), rel=1e-12)
    assert np.isfinite(total) and total > circuit.n_amplifiers * 1e-6


def test_transfer_activation_interpolates_the_measured_curve():
    u, v = characterised.transfer_curve()
    f = characterised.transfer_activation(v_r_v=0.2)
    assert np.allclose(f(u), v / 0.2, rtol=0, atol=1e-15)
    # between measured points: on the chord; beyond the table: held at the end values (the rails)
    mid = 0.5 * (u[40] + u[41])
    assert f(np.array([mid]))[0] == pytest.approx(0.5 * (v[40] + v[41]) / 0.2, abs=1e-12)
    assert f(np.array([-3.0, 3.0])) == pytest.approx([v[0] / 0.2, v[-1] / 0.2])
    # the curve's shape: near the ideal clip in the middle, rounded at the bottom rail
    assert f(np.array([0.5]))[0] == pytest.approx(0.5, abs=0.05)
    assert 0.0 < f(np.array([0.0]))[0] < 0.1
    with pytest.raises(ValueError, match="v_r_v"):
        characterised.transfer_activation(v_r_v=0.3)


def test_reference_ode_takes_a_hidden_activation():
    circuit, x, y = random_problem((6, 4, 3), seed=1)
    kwargs = dict(t_stop_s=100e-9, t_eval_s=np.array([100e-9]), rtol=1e-8, atol_fraction=1e-9)
    plain = solve_ivp_reference(circuit, x, y, **kwargs).y[:circuit.n_compartments, -1]
    same = solve_ivp_reference(circuit, x, y, hidden_activation=lambda u: np.clip(u, 0.0, 1.0),
                               **kwargs).y[:circuit.n_compartments, -1]
    half = solve_ivp_reference(circuit, x, y, hidden_activation=lambda u: 0.5 * np.clip(u, 0.0, 1.0),
                               **kwargs).y[:circuit.n_compartments, -1]
    assert np.allclose(plain, same, rtol=0, atol=1e-12)
    assert np.abs(half[:8] - plain[:8]).max() > 1e-3  # the hidden layer (first 8 compartments) moved


def test_transistor_cells_and_estimate():
    circuit, _, _ = random_problem((6, 4, 3), seed=0)
    # rows 7 + 5 (bias rows), columns 2 x (4 + 3), compartments 2 x (4 + 3)
    assert transistor_cells(circuit) == 40
    big, _, _ = random_problem((16, 8, 4), seed=0)
    assert transistor_cells(big) == 26 + 24 + 24
    assert estimate_transistor_seconds(big, 400e-9) > estimate_transistor_seconds(circuit, 400e-9) > 0


def test_worst_corners_and_bounds():
    def figures(corner, t, pm, settle_s, power):
        return sky130.CellFigures(cell="compartment", corner=corner, temperature_c=t, a0_db=30.0, gbw_hz=12e6,
                                  phase_margin_deg=pm, slew_rate_v_per_s=5e8, swing_low_v=0.006, swing_high_v=0.2,
                                  offset_sigma_v=8e-4, static_power_w=power, settling_time_s=settle_s)
    measured = [figures("tt", 27.0, 66.0, 58e-9, 9.6e-6), figures("ss", 125.0, 44.0, 150e-9, 9.0e-6),
                figures("ff", -40.0, 70.0, 50e-9, 11e-6)]
    worst = sky130.worst_corners(measured)["compartment"]
    assert worst["phase_margin_deg"] == {"value": 44.0, "corner": "ss", "temperature_c": 125.0}
    assert worst["static_power_w"]["corner"] == "ff" and worst["settling_time_s"]["value"] == 150e-9
    misses = sky130.acceptance(measured)
    assert len(misses) == 2 and all("ss 125" in m for m in misses)
    assert sky130.acceptance(measured[:1]) == []


def test_command_lines_refuse_what_the_transistor_check_cannot_run(capsys):
    from sims import cells, crossbar

    code = crossbar.main(["--layers", "6x4x3", "--samples", "1", "--dataset", "random", "--algo", "ep",
                          "--spice-check", "--transistor-level", "--no-progress"])
    assert code == 2 and "transistor-level check runs DP" in capsys.readouterr().err
    assert cells.main(["--cells", "nonsense"]) == 2
    assert "--cells" in capsys.readouterr().err
