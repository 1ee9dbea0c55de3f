"""SKY130 cells: the PDK is found and runs in stock ngspice; the cells meet their sanity bounds."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from analogdp.spice import sky130
from analogdp.spice.runner import run_ngspice

pytestmark = pytest.mark.ngspice

if shutil.which("ngspice") is None and os.environ.get("ANALOGDP_ALLOW_NO_NGSPICE") == "1":
    pytest.skip("ngspice missing and ANALOGDP_ALLOW_NO_NGSPICE=1", allow_module_level=True)


def test_pdk_models_are_found_without_a_path():
    library = sky130.model_library()
    assert library.is_file()
    assert ".lib tt" in library.read_text()


def test_inverter_switches_near_mid_supply():
    netlist = "\n".join([
        "inverter", sky130.lib_line("tt"), "Vdd vdd 0 1.8", "Vin in 0 0.9",
        f"Mp out in vdd vdd {sky130.PFET} W=1u L=0.15u",
        f"Mn out in 0 0 {sky130.NFET} W=0.5u L=0.15u",
        ".control", "set wr_singlescale", "set wr_vecnames", "dc Vin 0 1.8 0.005",
        "wrdata inv.data v(out)", "quit", ".endc", ".end"])
    data = run_ngspice(netlist, timeout_s=120).files["inv.data"]
    v_in, v_out = data.scale, data.vectors["v(out)"]
    switching_v = v_in[abs(v_out - v_in).argmin()]
    assert 0.8 < switching_v < 0.95
    assert v_out[0] > 1.75 and v_out[-1] < 0.05


def test_unknown_corner_is_a_value_error():
    with pytest.raises(ValueError, match="corner"):
        sky130.lib_line("xx")


@pytest.fixture(scope="module")
def nominal():
    # fewer DC and AC points than the committed characterisation (81 and 40/decade): the figures
    # tested here (clip levels at the sweep's ends, GBW, PM, power, settling) do not depend on them
    return {f.cell: f for cell in sky130.CELLS
            for f in sky130.characterise(cell, "tt", (27.0,), transfer_points=21, ac_points_per_decade=20)}


def test_phase_margin_at_least_45_degrees(nominal):
    for figures in nominal.values():
        assert figures.phase_margin_deg >= 45.0, figures


def test_compartment_settles_within_twice_the_ideal_rc(nominal):
    tau_s = 100e3 * 100e-15
    settling = nominal["compartment"].settling_time_s
    assert 0 < settling <= 2 * 6.9 * tau_s


def test_compartment_clips_at_the_clamp_rails(nominal):
    f = nominal["compartment"]
    # the top clip is the clamp rail V_r itself; the bottom one sits within 15 % of V_r of 0
    assert abs(f.swing_high_v - 0.2) < 2e-3
    assert 0.0 <= f.swing_low_v < 0.03


def test_committed_amplifier_set_matches_a_fresh_run(nominal):
    committed = sky130.load_characterised("sky130-tt")
    for cell, figures in nominal.items():
        assert committed["cells"][cell]["gbw_hz"] == pytest.approx(figures.gbw_hz, rel=0.02)
        assert committed["cells"][cell]["static_power_w"] == pytest.approx(figures.static_power_w, rel=0.02)


def test_unknown_amplifier_set_is_a_value_error():
    with pytest.raises(ValueError, match="unknown amplifier set"):
        sky130.load_characterised("nonexistent")


def test_cli_quick_writes_json(tmp_path, nominal, monkeypatch):
    """The command line's plumbing (the characterisation itself is the fixture's, already run)."""
    from sims import cells

    monkeypatch.setattr(sky130, "characterise", lambda cell, corner, temperatures: [nominal[cell]])
    out = tmp_path / "amps.json"
    assert cells.main(["--quick", "--amplifiers-json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["cells"]) == set(sky130.CELLS)
    assert data["cells"]["compartment"]["gbw_hz"] == pytest.approx(nominal["compartment"].gbw_hz)
    assert cells.main(["--quick", "--amplifiers-json", str(out)]) == 2  # kept without --force


def test_cli_bad_corner_exits_2():
    done = subprocess.run([sys.executable, "-m", "sims.cells", "--corners", "xx"],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
