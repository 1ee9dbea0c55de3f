"""What the default netlist export leaves out, and what the opt-ins put back (no ngspice needed)."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from analogdp.circuit import AmplifierParams, WireParams
from analogdp.spice import SpiceOptions, write_netlist
from analogdp.spice.examples import random_problem


def test_default_export_is_lean_and_energy_is_opt_in():
    circuit, x, y = random_problem((6, 4, 3))
    lean = write_netlist(circuit, x, y, t_stop_s=1e-8, t_step_s=1e-9)
    assert "chgtol" not in lean and not re.search(r"^let ", lean, re.M) and "meas tran e_" not in lean
    saved = re.search(r"^save (.*)$", lean, re.M).group(1).split()
    assert saved == [f"v(s{l}_n{j}_{c})" for l, n in ((1, 4), (2, 3)) for j in range(n) for c in ("p", "m")]
    full = write_netlist(circuit, x, y, t_stop_s=1e-8, t_step_s=1e-9,
                         options=SpiceOptions(energy=True, write_currents=True, chgtol_c=1e-22))
    assert "chgtol=1e-22" in full and "meas tran e_crossbar_j integ p_crossbar_w" in full
    assert len(re.findall(r"^let p_crossbar_w = p_crossbar_w\+", full, re.M)) == 7 + 5 + 2 * (4 + 3)
    saved = set(re.search(r"^save (.*)$", full, re.M).group(1).split())
    # every vector a let or wrdata line names is saved
    used = set(re.findall(r"[vi]\([A-Za-z0-9_]+\)", "\n".join(
        line for line in full.splitlines() if line.startswith(("let ", "wrdata ")))))
    assert used <= saved


def test_ideal_wires_and_amplifiers_change_nothing_and_the_rest_is_refused_clearly():
    circuit, x, y = random_problem((6, 4, 3))
    explicit = replace(circuit, wires=WireParams(max_rows=64), amplifier=AmplifierParams())
    assert write_netlist(explicit, x, y, t_stop_s=1e-8, t_step_s=1e-9) == \
        write_netlist(circuit, x, y, t_stop_s=1e-8, t_step_s=1e-9)
    assert "wires" not in circuit.describe() and "amplifier" not in circuit.describe()
    assert replace(circuit, wires=WireParams.at_node(22)).describe()["wires"]["r_row_segment_ohm"] == 3.0
    # a finite amplifier is written as macromodel stages (tests/test_finite_amplifiers.py runs them)
    finite = write_netlist(replace(circuit, amplifier=AmplifierParams(a0_db=60.0)), x, y, t_stop_s=1e-8,
                           t_step_s=1e-9)
    assert ".subckt adp_amp" in finite and re.search(r"^Xt1_n0_p ti1_n0_p t1_n0_p adp_stage ", finite, re.M)
    # tiles are written (tests/test_wired_settle.py runs them in ngspice); only the
    # bidirectional scheme has them
    tiled = write_netlist(replace(circuit, wires=WireParams.at_node(22, max_rows=4)), x, y, t_stop_s=1e-8,
                          t_step_s=1e-9)
    assert "Brow0_r4_t0" in tiled and "Bpa0_c0_t1" in tiled
    with pytest.raises(ValueError, match="bidirectional"):
        write_netlist(replace(circuit, wires=WireParams(max_rows=4), scheme="dual-array"), x, y,
                      t_stop_s=1e-8, t_step_s=1e-9)
    with pytest.raises(ValueError, match="bidirectional"):
        write_netlist(replace(circuit, wires=WireParams.at_node(22), scheme="dual-array"), x, y,
                      t_stop_s=1e-8, t_step_s=1e-9)
    with pytest.raises(ValueError, match="wires must be a WireParams"):
        replace(circuit, wires=3.0)


def test_operating_point_default_counts_the_wire_mesh():
    from analogdp.spice.netlist import OP_MAX_DEVICES, includes_operating_point, matrix_size_estimate

    ideal, _, _ = random_problem((128, 64))
    wired = replace(ideal, wires=WireParams(r_row_segment_ohm=1.0, r_col_segment_ohm=1.0))
    row_only = replace(ideal, wires=WireParams(r_row_segment_ohm=1.0))
    assert ideal.n_devices <= OP_MAX_DEVICES
    assert matrix_size_estimate(ideal) == ideal.n_devices
    assert matrix_size_estimate(row_only) == 2 * ideal.n_devices
    assert matrix_size_estimate(wired) == 3 * ideal.n_devices > OP_MAX_DEVICES
    assert includes_operating_point(ideal, SpiceOptions())
    assert not includes_operating_point(wired, SpiceOptions())
    assert includes_operating_point(wired, SpiceOptions(include_op=True))
    small, x, y = random_problem((16, 8))
    small_wired = replace(small, wires=WireParams(r_row_segment_ohm=1.0, r_col_segment_ohm=1.0))
    assert "\nop\n" in write_netlist(small_wired, x, y, t_stop_s=1e-8, t_step_s=1e-9)
