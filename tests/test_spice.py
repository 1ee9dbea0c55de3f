"""SPICE export and the ngspice cross-check, against the real ngspice.

A missing ngspice fails these tests (see conftest.py; ANALOGDP_ALLOW_NO_NGSPICE=1 skips them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from analogdp.circuit import NeuronKind, dyad_neuron, ep_neuron
from analogdp.spice import (
    TOLERANCES,
    NgspiceError,
    NgspiceNotFound,
    compartment_nodes,
    count_amplifiers,
    cross_check,
    estimate_ngspice_seconds,
    run_ngspice,
    settling_time_from_samples,
    write_netlist,
)
from analogdp.spice.estimate import CALIBRATION
from analogdp.spice.examples import ACCEPTANCE_CASES, NETLIST_EXAMPLES, export_netlists, random_problem
from sims import spice_check
from sims.cli import EXIT_NGSPICE

REPO = Path(__file__).resolve().parents[1]
NETLISTS = REPO / "netlists"
ACCEPTANCE = {case.layer_sizes: case for case in ACCEPTANCE_CASES}


def _assert_agrees(check):
    """The agreement targets (V_r = 0.2 V), with the figures in the failure message."""
    assert check.max_abs_dev_v <= 1e-3, check.as_dict()
    assert check.final_abs_dev_v <= 10e-6, check.as_dict()
    assert check.settling_time_rel_dev <= 0.02, check.as_dict()
    assert check.energy_rel_dev <= 0.01, check.as_dict()
    assert check.passed(), check.failures()


# ---- cross-check: the acceptance cases -----------------------------------------------------------
@pytest.mark.ngspice
@pytest.mark.parametrize("sizes,runner", [((6, 4, 3), "subprocess"), ((64, 32, 10), "shared"),
                                          ((32, 16, 16, 10), "subprocess"), ((128, 64), "shared")],
                         ids=["6x4x3-dp-subprocess", "64x32x10-shared", "32x16x16x10-dpT-subprocess",
                              "128x64-layer-shared"])
def test_acceptance_cases_agree_with_ngspice(sizes, runner):
    circuit, x, y = ACCEPTANCE[sizes].build()
    check = cross_check(circuit, x, y, runner=runner, time_numba=False)
    _assert_agrees(check)
    assert check.ngspice_version.startswith("ngspice-")
    # the window is long enough for the settling time to mean something
    assert check.settling_time_s < 0.9 * check.t_stop_s
    # conservation inside ngspice: what the sources deliver is dissipated or stored
    assert abs(check.energy_conservation_residual_j) < 1e-4 * check.energy_j
    # the DC operating point is the equilibrium the transient reached
    assert check.operating_point_abs_dev_v < 10e-6


@pytest.mark.ngspice
@pytest.mark.parametrize("kind,loss,scheme,activation,nudge", [
    (dyad_neuron("dpT", 0.0), "ce", "dual-array", "hardsigmoid", True),
    (dyad_neuron("dp", 0.5), "mse", "bidirectional", "relu", False),
    (ep_neuron(), "ce", "bidirectional", "hardsigmoid", True),
    (ep_neuron(), "mse", "dual-array", "relu", True),
    (NeuronKind("three", (0.2, 0.3, 0.5), (1.0, -0.5, -0.5), (0.4, -0.1, -0.3), nudge_at="state",
                compartment_names=("A", "b", "c")), "mse", "bidirectional", "hardsigmoid", True),
], ids=["dpT-ce-dual", "dp-relu-no-nudge", "ep-ce", "ep-relu-dual", "three-compartments-state-nudge"])
def test_any_neuron_kind_scheme_and_loss_agree(kind, loss, scheme, activation, nudge):
    circuit, x, y = random_problem((6, 5, 3), neuron_kind=kind, loss=loss, scheme=scheme, seed=3, nudge=nudge)
    circuit = replace(circuit, activation=activation)
    check = cross_check(circuit, x, y, t_stop_s=300e-9, time_numba=False)
    _assert_agrees(check)


@pytest.mark.ngspice
def test_both_runners_give_the_same_waveforms_and_report_wall_times():
    circuit, x, y = ACCEPTANCE[(6, 4, 3)].build()
    v0 = np.linspace(0.0, 0.1, circuit.n_compartments)  # from a non-reset state as well
    text = write_netlist(circuit, x, y, t_stop_s=100e-9, t_step_s=1e-9, v0=v0)
    by_subprocess = run_ngspice(text, "subprocess")
    in_process = run_ngspice(text, "shared")
    np.testing.assert_allclose(in_process.time_s, by_subprocess.time_s, rtol=1e-12)
    for name, values in by_subprocess.vectors.items():
        np.testing.assert_allclose(in_process.vector(name), values, rtol=1e-9, atol=1e-18)
    assert by_subprocess.runner == "subprocess" and in_process.runner == "shared"
    assert by_subprocess.wall_time_s > 0 and in_process.wall_time_s > 0
    assert not by_subprocess.warnings and not in_process.warnings
    check = cross_check(circuit, x, y, t_stop_s=100e-9, v0=v0, runner="shared")
    assert check.passed(), check.failures()
    assert check.wall_time_numba_s > 0
    assert check.as_dict()["wall_time_ratio"] == check.wall_time_s / check.wall_time_numba_s


@pytest.mark.ngspice
@pytest.mark.parametrize("runner", ["subprocess", "shared"])
def test_a_run_writes_nothing_where_it_was_started(runner, tmp_path, monkeypatch):
    """The netlists' ``write NAME.raw`` used to land in the working directory of the in-process
    run (overwriting a file of that name); both runners keep everything in their own directory."""
    circuit, x, y = ACCEPTANCE[(6, 4, 3)].build()
    text = write_netlist(circuit, x, y, t_stop_s=20e-9, t_step_s=1e-9)
    assert re.search(r"(?m)^write \S+\.raw$", text)
    monkeypatch.chdir(tmp_path)
    run_ngspice(text, runner)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.ngspice
@pytest.mark.parametrize("runner", ["subprocess", "shared"])
def test_a_run_past_its_timeout_is_stopped_and_says_so(runner):
    import time

    circuit, x, y = ACCEPTANCE[(6, 4, 3)].build()
    # 200 ns at a 0.2 ps print step: 10^6 points, several seconds of ngspice
    text = write_netlist(circuit, x, y, t_stop_s=200e-9, t_step_s=2e-13)
    started = time.perf_counter()
    with pytest.raises(NgspiceError, match="did not finish within its timeout of 0.5 s"):
        run_ngspice(text, runner, timeout_s=0.5)
    assert time.perf_counter() - started < 3.0  # stopped, not waited for
    # and the library still works afterwards
    assert run_ngspice(write_netlist(circuit, x, y, t_stop_s=20e-9, t_step_s=1e-9), runner).time_s[-1] == \
        pytest.approx(20e-9)


# ---- errors ----------------------------------------------------------------------------------------
@pytest.mark.ngspice
@pytest.mark.parametrize("runner", ["subprocess", "shared"])
def test_rejected_netlist_raises_with_ngspice_own_words(runner):
    circuit, x, y = ACCEPTANCE[(6, 4, 3)].build()
    text = write_netlist(circuit, x, y, t_stop_s=20e-9, t_step_s=1e-9)
    broken = text.replace("max(0,min(1,", "clamp(0,min(1,", 1)
    with pytest.raises(NgspiceError, match=r"(?is)no such function 'clamp'.*error on line \d+.*bt1_n0_p t1_n0_p 0 v="):
        run_ngspice(broken, runner)
    # and the library still works afterwards
    assert run_ngspice(text, runner).time_s[-1] == pytest.approx(20e-9)


@pytest.mark.ngspice
def test_missing_vector_is_an_error_even_though_ngspice_exits_0():
    circuit, x, y = ACCEPTANCE[(6, 4, 3)].build()
    text = write_netlist(circuit, x, y, t_stop_s=20e-9, t_step_s=1e-9)
    with pytest.raises(NgspiceError, match="no such vector"):
        run_ngspice(text.replace("v(s1_n0_p) v(s1_n0_m)", "v(s1_n0_p) v(nowhere)", 1))


def test_missing_ngspice_executable_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("NGSPICE", "/nonexistent/ngspice")
    with pytest.raises(NgspiceNotFound, match="ngspice not found at /nonexistent/ngspice.*apt-get install ngspice"):
        run_ngspice("* nothing\n.end\n")
    assert spice_check.main(["--layers", "4x3"]) == EXIT_NGSPICE


def test_missing_libngspice_is_a_clear_error():
    # libngspice is loaded once per process, so ask a fresh interpreter
    code = ("from analogdp.spice import run_ngspice, NgspiceNotFound\n"
            "try:\n    run_ngspice('* x\\n.end\\n', 'shared')\n"
            "except NgspiceNotFound as exc:\n    print('NOTFOUND', exc)\n")
    env = dict(os.environ, NGSPICE_LIBRARY_PATH="/nonexistent/libngspice.so")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "NOTFOUND libngspice could not be loaded" in done.stdout, done.stdout + done.stderr


def test_bad_runner_and_bad_inputs_are_rejected():
    circuit, x, y = ACCEPTANCE[(6, 4, 3)].build()
    with pytest.raises(ValueError, match="runner"):
        run_ngspice("* x\n.end\n", runner="spectre")
    with pytest.raises(ValueError, match="x must be one example"):
        write_netlist(circuit, x[:3], y, t_stop_s=1e-8, t_step_s=1e-9)
    with pytest.raises(ValueError, match="y must have shape"):
        write_netlist(circuit, x, y[:2], t_stop_s=1e-8, t_step_s=1e-9)
    with pytest.raises(ValueError, match="t_step_s"):
        write_netlist(circuit, x, y, t_stop_s=1e-9, t_step_s=1e-8)


# ---- what the netlist says -------------------------------------------------------------------------
def test_element_names_values_and_header():
    circuit, x, y = ACCEPTANCE[(6, 4, 3)].build()
    text = write_netlist(circuit, x, y, t_stop_s=200e-9, t_step_s=1e-9)
    # every device is named by crossbar, row and column, and its value reads back as exactly
    # 1/G (all the digits of a double, so certainly >= 12 significant ones)
    devices = dict(re.findall(r"^(R[pn]\d+_r\d+_c\d+ x\d+_r\d+ x\d+_c\d+[pn]) (\S+)$", text, re.M))
    assert len(devices) == circuit.n_devices
    for k, xbar in enumerate(circuit.crossbars):
        for (i, j), g in np.ndenumerate(xbar.g_pos_s):
            assert float(devices[f"Rp{k}_r{i}_c{j} x{k}_r{i} x{k}_c{j}p"]) == 1.0 / g
            assert float(devices[f"Rn{k}_r{i}_c{j} x{k}_r{i} x{k}_c{j}n"]) == 1.0 / xbar.g_neg_s[i, j]
    assert re.search(r"^Cm1_n3_m s1_n3_m 0 1e-13 IC=0.0$", text, re.M)
    assert re.search(r"^Rm2_n2_p t2_n2_p s2_n2_p 100000.0$", text, re.M)
    assert "Brow0_r6 x0_r6_drv 0 V=0.2   ; bias row" in text
    assert re.search(r"^Bt1_n0_p t1_n0_p 0 V=0.2\*max\(0,min\(1,v\(a1_n0\)\+0.5\*v\(b1_n0\)\)\)", text, re.M)
    for fragment in ("layer sizes        6-4-3", "dyad-dp", "beta               0.5", "mse, hardsigmoid",
                     "bidirectional", "V_r                0.2 V", "G_u = ",
                     "R_m, C_m, tau      100000.0 ohm, 1e-13 F, 1e-08 s",
                     "* Run:  ngspice -b", ".options reltol=1e-06", ".tran 1e-09 2e-07 0 1e-09 uic",
                     "wrdata analogdp.tran.data", ".control", ".endc"):
        assert fragment in text, fragment


@pytest.mark.parametrize("kind", [dyad_neuron("dp", 0.5), dyad_neuron("dpT", 0.3), ep_neuron()], ids=lambda k: k.name)
@pytest.mark.parametrize("scheme", ["bidirectional", "dual-array"])
@pytest.mark.parametrize("sizes", [(4, 3), (6, 4, 3), (5, 4, 4, 2)], ids=lambda s: "x".join(map(str, s)))
def test_b_sources_are_the_amplifier_inventory(kind, scheme, sizes):
    circuit, x, y = random_problem(sizes, neuron_kind=kind, scheme=scheme)
    text = write_netlist(circuit, x, y, t_stop_s=1e-8, t_step_s=1e-9)
    counted = count_amplifiers(text)
    inventory = circuit.amplifier_inventory()
    assert {key: counted[key] for key in inventory} == inventory
    assert sum(counted.values()) == circuit.n_amplifiers
    assert len(re.findall(r"^B", text, re.M)) == circuit.n_amplifiers
    assert len(re.findall(r"^R(?:f)?[pn]\d", text, re.M)) == circuit.n_devices
    assert len(re.findall(r"^Cm", text, re.M)) == circuit.n_compartments
    for node in compartment_nodes(circuit):
        assert f" {node} 0 " in text


# ---- netlists/ ------------------------------------------------------------------------------------
def test_committed_netlists_are_up_to_date(tmp_path):
    written = export_netlists(tmp_path)
    committed = sorted(p.name for p in NETLISTS.glob("*.cir"))
    assert sorted(p.name for p in written) == committed, "netlists/ has extra or missing files"
    for path in written:
        assert path.read_text() == (NETLISTS / path.name).read_text(), (
            f"netlists/{path.name} is stale: regenerate with python -m analogdp.spice.examples")
    readme = (NETLISTS / "README.md").read_text()
    for example in NETLIST_EXAMPLES:
        assert f"ngspice -b netlists/{example.name}.cir" in readme, example.name


@pytest.mark.ngspice
def test_every_exported_netlist_runs_unmodified_in_ngspice(tmp_path, ngspice):
    for source in sorted(NETLISTS.glob("*.cir")):
        shutil.copy(source, tmp_path / source.name)
        done = subprocess.run([ngspice, "-b", source.name], cwd=tmp_path, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "rror" not in done.stderr + done.stdout, done.stderr
        assert "e_crossbar_j" in done.stdout
        assert (tmp_path / f"{source.stem}.tran.data").stat().st_size > 0
        assert (tmp_path / f"{source.stem}.op.data").stat().st_size > 0
        assert (tmp_path / f"{source.stem}.currents.data").stat().st_size > 0


# ---- helpers and the command line -------------------------------------------------------------------
def test_settling_time_from_samples_interpolates_the_last_crossing():
    t = np.linspace(0.0, 10.0, 11)
    v = np.column_stack([np.exp(-t), 1.0 - np.exp(-t / 2)])  # finals 4.5e-5 and 0.9933
    band = 0.01
    # compartment 1 is the slow one: |v - v_end| = exp(-t/2) - exp(-5) crosses 0.01 near t = 9.1
    expected_sample = 8 + (np.exp(-4) - np.exp(-5) - band) / ((np.exp(-4) - np.exp(-5)) - (np.exp(-4.5) - np.exp(-5)))
    assert settling_time_from_samples(t, v, band) == pytest.approx(expected_sample)
    assert settling_time_from_samples(t, np.ones((11, 2)), band) == 0.0


def test_estimate_reproduces_its_calibration_runs():
    """Within a factor of two of every measured run; linear in the window, growing with size."""
    for devices, window_s, _, wall_s in CALIBRATION:
        sizes = {4820: (64, 32, 10), 16512: (128, 64), 68372: (256, 128, 10), 407060: (784, 256, 10)}[devices]
        circuit, _, _ = random_problem(sizes)
        assert circuit.n_devices == devices
        assert 0.5 * wall_s < estimate_ngspice_seconds(circuit, window_s) < 2.0 * wall_s
    small, _, _ = random_problem((64, 32, 10))
    large, _, _ = random_problem((256, 128, 10))
    assert estimate_ngspice_seconds(small, 400e-9) > estimate_ngspice_seconds(small, 200e-9)
    assert estimate_ngspice_seconds(large, 200e-9) > 10 * estimate_ngspice_seconds(small, 200e-9)
    with pytest.raises(ValueError, match="t_stop_s"):
        estimate_ngspice_seconds(small, 0.0)


@pytest.mark.ngspice
def test_estimate_of_a_tiny_network_at_a_fine_step_is_not_far_below_the_run():
    """The per-point floor: 3x2 over 200 ns at a 1 ps print step is 200 000 points; the power law
    alone would promise a fraction of a second. ngspice's own wall time must not exceed twice
    the estimate (the estimate may err high: other jobs slowed the floor's calibration)."""
    circuit, x, y = random_problem((3, 2))
    check = cross_check(circuit, x, y, t_stop_s=200e-9, t_step_s=1e-12)
    assert check.n_time_points > 100_000
    assert check.wall_time_s < 2.0 * estimate_ngspice_seconds(circuit, 200e-9, t_step_s=1e-12)


def test_estimate_of_wired_layers_reproduces_its_calibration_runs():
    """Wired single layers: the mesh sets the time (within a factor of two of every measured run,
    and far above the same layer with ideal wires)."""
    from dataclasses import replace

    from analogdp.circuit.wires import WireParams
    from analogdp.spice import SpiceOptions
    from analogdp.spice.estimate import WIRED_CALIBRATION
    from analogdp.spice.netlist import matrix_size_estimate

    wires = WireParams(r_row_segment_ohm=1.0, r_col_segment_ohm=1.0)
    for (size, window_s, t_max_s, wall_s), sizes in zip(WIRED_CALIBRATION, ((16, 8), (32, 16), (64, 32), (128, 64))):
        ideal, _, _ = random_problem(sizes)
        wired = replace(ideal, wires=wires)
        assert matrix_size_estimate(wired) == size
        options = SpiceOptions(max_step_tau=t_max_s / wired.neuron.tau_s)
        estimate = estimate_ngspice_seconds(wired, window_s, t_step_s=t_max_s, options=options)
        assert 0.5 * wall_s < estimate < 2.0 * wall_s
    assert estimate > 100 * estimate_ngspice_seconds(ideal, window_s, t_step_s=t_max_s, options=options)


def test_tolerances_are_the_agreement_targets():
    assert (TOLERANCES.max_abs_dev_v, TOLERANCES.final_abs_dev_v, TOLERANCES.settling_time_rel,
            TOLERANCES.energy_rel) == (1e-3, 10e-6, 0.02, 0.01)


@pytest.mark.parametrize("argv,message", [
    (["--layers", "32x0x10"], "--layers"), (["--layers", "32"], "--layers"), (["--alpha", "1.5"], "--alpha"),
    (["--t-stop", "-5ns"], "--t-stop"), (["--t-stop", "10ns", "--t-step", "20ns"], "exceeds"),
    (["--runner", "hspice"], "--runner"), (["--export-netlist", "/nonexistent/dir/x.cir"], "does not exist"),
    (["--json", "/nonexistent/dir/x.json"], "does not exist"), (["--json", "/"], "is a directory"),
    (["--export-netlist", "/"], "is a directory"),
    (["--layers", "3000x3000x10"], "pass --force"),
])
def test_spice_check_rejects_bad_input_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        code = spice_check.main(argv)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.ngspice
def test_spice_check_keeps_an_existing_netlist_without_force(tmp_path, capsys):
    from sims import spice_check
    path = tmp_path / "kept.cir"
    path.write_text("mine\n")
    assert spice_check.main(["--layers", "6x4x3", "--export-netlist", str(path)]) == 2
    assert path.read_text() == "mine\n"
    assert "pass --force" in capsys.readouterr().err


def test_spice_check_command_line(tmp_path):
    report, netlist = tmp_path / "check.json", tmp_path / "net.cir"
    done = subprocess.run([sys.executable, "-m", "sims.spice_check", "--layers", "5x4x3", "--variant", "dpT",
                           "--alpha", "0.3", "--loss", "ce", "--t-stop", "150ns", "--json", str(report),
                           "--export-netlist", str(netlist)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "AGREE" in done.stdout
    import json
    figures = json.loads(report.read_text())
    assert figures["passed"] and figures["layer_sizes"] == [5, 4, 3] and figures["t_stop_s"] == pytest.approx(150e-9)
    assert netlist.read_text().startswith("analogdp 5-4-3 dyad-dpT bidirectional")


@pytest.mark.ngspice
def test_operating_point_is_optional_and_left_out_for_large_networks():
    from analogdp.spice import SpiceOptions
    from analogdp.spice.netlist import OP_MAX_DEVICES, includes_operating_point

    large, _, _ = random_problem((400, 130))
    small, x, y = random_problem((6, 4, 3))
    assert large.n_devices > OP_MAX_DEVICES >= small.n_devices
    assert not includes_operating_point(large, SpiceOptions())
    assert includes_operating_point(small, SpiceOptions())
    assert includes_operating_point(large, SpiceOptions(include_op=True))
    without_op = SpiceOptions(include_op=False)
    assert "\nop\n" not in write_netlist(small, x, y, t_stop_s=1e-8, t_step_s=1e-9, options=without_op)
    check = cross_check(small, x, y, options=without_op, time_numba=False)
    assert check.operating_point_abs_dev_v is None and check.passed()


@pytest.mark.ngspice
def test_a_solver_step_limit_is_not_reported_as_a_disagreement():
    """When the numba side stops short of the window, the check says so instead of comparing
    points it never reached as a physics disagreement."""
    from analogdp.solver import SettleCriteria
    circuit, x, y = random_problem((6, 4, 3), seed=0)
    check = cross_check(circuit, x, y, t_stop_s=100e-9, time_numba=False, criteria=SettleCriteria(max_steps=4))
    assert not check.passed()
    assert check.numba_incomplete.startswith("hit the step limit (4 steps)")
    assert check.failures() == [f"numba {check.numba_incomplete}; the waveforms were not compared "
                                "(a solver limit, not a disagreement of the physics)"]
    full = cross_check(circuit, x, y, t_stop_s=100e-9, time_numba=False)
    assert full.numba_incomplete == "" and full.passed(), full.failures()
