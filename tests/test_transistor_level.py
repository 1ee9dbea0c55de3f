"""Transistor-level network (SKY130 cells) in stock ngspice against the numba ODE; the characterised
amplifiers as macromodel parameters and static power."""

import os
import shutil

import numpy as np
import pytest

from analogdp.spice import characterised, sky130
from analogdp.spice.examples import random_problem
from analogdp.spice.transistor_check import solver_models_amplifiers, transistor_cross_check
from analogdp.spice.transistor_netlist import TransistorDesign, line_holder_multiplier, write_transistor_netlist

pytestmark = pytest.mark.ngspice

if shutil.which("ngspice") is None and os.environ.get("ANALOGDP_ALLOW_NO_NGSPICE") == "1":
    pytest.skip("ngspice missing and ANALOGDP_ALLOW_NO_NGSPICE=1", allow_module_level=True)


def test_6_4_3_transistor_level_runs_and_keeps_the_learning_signal(tmp_path):
    circuit, x, y = random_problem((6, 4, 3), seed=0)
    path = tmp_path / "net.cir"
    check = transistor_cross_check(circuit, x, y, t_stop_s=300e-9, netlist_path=path)
    text = path.read_text()
    assert sky130.lib_line("tt") in text and "Xrow1_r0 " in text and "Xt1_n0_p " in text
    assert check.reference == "ideal" and check.n_time_points > 100
    # against the ideal circuit: the compartments' bottom clip (6 mV) and finite gain move the
    # settled voltages by a few % of V_r, but the learning signal v+ - v- keeps its direction
    assert check.dyad_cosine >= 0.99
    assert check.final_abs_dev_rel_v_r < 0.08
    assert check.energy_rel_dev < 0.10
    # what the supplies deliver is far above the signal energy, and positive
    assert check.supply_energy_j > 10 * check.energy_j > 0


def test_macromodel_reference_needs_a_solver_with_finite_amplifiers():
    circuit, x, y = random_problem((2, 1), seed=0)
    if solver_models_amplifiers():
        check = transistor_cross_check(circuit, x, y, reference="macromodel", t_stop_s=100e-9)
        assert check.reference == "macromodel"
    else:
        with pytest.raises(ValueError, match="finite amplifiers"):
            transistor_cross_check(circuit, x, y, reference="macromodel", t_stop_s=100e-9)


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
