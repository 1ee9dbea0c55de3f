"""python -m sims.crossbar: input checks, outputs (JSON, CSV, dump, plot), netlist safety."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analogdp import experiment
from analogdp.report import read_csv_rows
from analogdp.experiment import ExperimentConfig
from sims import crossbar

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--size", "16x8", "--dataset", "random", "--samples", "6", "--no-progress"]
REQUIRED_KEYS = ("size", "layers", "algo", "variant", "alpha", "beta", "samples", "settling_time_s",
                 "settling_time_1pct_s", "energy_per_update_j", "energy_breakdown_j",
                 "energy_per_mac_j", "macs_per_update", "fixed_point_error_v", "loss_first",
                 "loss_last", "not_settled", "wall_time_s", "params")
ENERGY_TERMS = ("crossbar", "neuron", "amplifier_static", "capacitor", "programming")




@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One small run writing every output, shared by the output tests."""
    directory = tmp_path_factory.mktemp("crossbar")
    paths = {name: directory / f"run.{name}" for name in ("json", "csv", "npz", "png")}
    argv = SMALL + ["--json", str(paths["json"]), "--csv", str(paths["csv"]),
                    "--dump", str(paths["npz"]), "--plot", str(paths["png"])]
    assert crossbar.main(argv) == 0
    return paths


# ---- bad input -----------------------------------------------------------------------------

BAD_INPUTS = [
    ["--size", "784x"], ["--size", "0x5"], ["--size", "-3x4"], ["--size", "abcxdef"],
    ["--size", "784x256x10"], ["--samples", "0"], ["--samples", "-2"], ["--beta", "-1"], ["--seed", "-1"],
    ["--beta", "nan"], ["--alpha", "nan"], ["--lr", "inf"], ["--v-read-v", "nan"],
    ["--g-min-s", "2e-5"], ["--c-m-f", "0"], ["--layers", "64x32x10", "--size", "784x256"],
    ["--layers", "64x32x7"], ["--alpha", "1.5"], ["--seed", "x"], ["--algo", "nope"],
    ["--plot", "figure.jpg"], ["--delta-g-s", "1"], ["--samples", "1e30"],
    ["--samples", "100000000000"],
]


@pytest.mark.parametrize("argv", BAD_INPUTS, ids=lambda a: " ".join(a))
def test_bad_input_exits_2_with_one_line(run_cli, argv, monkeypatch):
    monkeypatch.setattr(experiment, "load_examples", lambda *a, **k: pytest.fail("read data despite bad input"))
    status, out, err = run_cli(crossbar.main, argv)
    assert status == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m sims.crossbar: error:"), err


def test_bad_input_exit_status_of_the_real_command():
    result = subprocess.run([sys.executable, "-m", "sims.crossbar", "--size", "-3x4"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "every size must be a positive integer" in result.stderr


def test_json_into_a_missing_directory_fails_before_any_work(run_cli, tmp_path, monkeypatch):
    monkeypatch.setattr(experiment, "load_examples", lambda *a, **k: pytest.fail("read data"))
    monkeypatch.setattr(experiment, "run_experiment", lambda *a, **k: pytest.fail("simulated"))
    status, _, err = run_cli(crossbar.main, SMALL + ["--json", str(tmp_path / "missing" / "run.json")])
    assert status == 2 and "does not exist" in err


def test_existing_netlist_is_not_overwritten_without_force(run_cli, tmp_path, monkeypatch):
    netlist = tmp_path / "first.cir"
    netlist.write_text("keep me\n")
    monkeypatch.setattr(experiment, "load_examples", lambda *a, **k: pytest.fail("read data"))
    status, _, err = run_cli(crossbar.main, SMALL + ["--export-netlist", str(netlist)])
    assert status == 2 and "--force" in err
    assert netlist.read_text() == "keep me\n"


def test_force_overwrites_the_netlist(run_cli, tmp_path):
    netlist = tmp_path / "first.cir"
    netlist.write_text("old\n")
    status, out, _ = run_cli(crossbar.main, SMALL + ["--export-netlist", str(netlist), "--force"])
    assert status == 0 and "netlist:" in out
    text = netlist.read_text()
    assert text != "old\n" and ".tran" in text.lower()


def test_spice_check_refuses_long_runs_and_says_the_estimate(run_cli, monkeypatch):
    import analogdp.spice as spice

    monkeypatch.setattr(spice, "estimate_ngspice_seconds", lambda circuit, t_stop_s, **options: 4321.0)
    monkeypatch.setattr(experiment, "run_experiment", lambda *a, **k: pytest.fail("simulated"))
    status, _, err = run_cli(crossbar.main, SMALL + ["--spice-check"])
    assert status == 2 and "4321 s" in err and "--force" in err


@pytest.mark.ngspice
def test_spice_check_passes_on_64x32(run_cli, tmp_path):
    """The acceptance case: the first example in ngspice and in the numba solver agree."""
    path = tmp_path / "spice.json"
    status, out, _ = run_cli(crossbar.main, ["--size", "64x32", "--samples", "1", "--no-progress", "--spice-check",
                              "--json", str(path)])
    spice = json.loads(path.read_text())["spice"]
    assert status == 0 and spice["passed"], spice["failures"]
    assert spice["max_abs_dev_v"] <= 1e-3 and spice["final_abs_dev_v"] <= 10e-6
    assert "SPICE check (first example)" in out and spice["ngspice_version"]


def test_running_out_of_memory_ends_in_one_line(run_cli, monkeypatch):
    def exhaust(*args, **options):
        raise MemoryError

    monkeypatch.setattr(experiment, "run_experiment", exhaust)
    status, _, err = run_cli(crossbar.main, SMALL)
    assert status == 1 and err.count("\n") == 1 and "not enough memory" in err and "16x8x10" in err


def test_updates_that_do_not_settle_fail_the_run(run_cli, tmp_path):
    """The original DP variant at α = 1 with a very strong nudge (β = 10) is so non-normal that
    the explicit solver does not bring it to equilibrium within the time limit (β = 5 does
    settle: the solve_ivp reference confirms it): the run reports the unsettled updates, still
    writes its outputs, and exits 1 rather than passing them off as settled."""
    path = tmp_path / "run.json"
    argv = SMALL + ["--variant", "dp", "--alpha", "1", "--beta", "10", "--samples", "2",
                    "--json", str(path)]
    status, _, err = run_cli(crossbar.main, argv)
    not_settled = json.loads(path.read_text())["not_settled"]
    assert status == 1 and "did not settle" in err and not_settled >= 1
    assert f"dp {not_settled} of 2" in err


def test_dash_values_reach_their_checks():
    parser = crossbar.build_parser()
    assert crossbar.attach_dash_values(["--size", "-3x4", "--no-progress"], parser) == \
        ["--size=-3x4", "--no-progress"]
    assert crossbar.attach_dash_values(["--json", "--csv", "x"], parser) == ["--json", "--csv", "x"]


# ---- outputs -------------------------------------------------------------------------------


def test_json_keys_units_and_consistency(small_run):
    summary = json.loads(small_run["json"].read_text())
    for key in REQUIRED_KEYS:
        assert key in summary, key
    assert summary["size"] == "16x8" and summary["layers"] == [16, 8, 10]
    assert (summary["algo"], summary["variant"], summary["samples"]) == ("dp", "dp", 6)
    tau_s = summary["params"]["circuit"]["tau_s"]
    assert tau_s < summary["settling_time_s"] < 100 * tau_s  # seconds, not ns
    assert summary["settling_time_1pct_s"] < summary["settling_time_s"]
    assert set(summary["energy_breakdown_j"]) == set(ENERGY_TERMS)
    assert sum(summary["energy_breakdown_j"].values()) == pytest.approx(summary["energy_per_update_j"])
    assert 1e-15 < summary["energy_per_update_j"] < 1e-6  # joules
    assert summary["energy_per_mac_j"] == pytest.approx(summary["energy_per_update_j"] / summary["macs_per_update"])
    v_r = summary["params"]["circuit"]["neuron"]["v_read_v"]
    assert 0 <= summary["fixed_point_error_v"] <= 1e-6 * v_r
    assert summary["not_settled"] == 0 and summary["wall_time_s"] > 0


def test_every_json_key_is_documented_in_the_readme(small_run):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## python -m sims.crossbar"):]
    section = section[: section.find("\n## ", 1)] if "\n## " in section[1:] else section
    documented = set(re.findall(r"`([a-z_0-9]+)`", section))
    summary = json.loads(small_run["json"].read_text())
    nested = list(summary) + list(summary["energy_breakdown_j"]) + list(summary["wall_time_breakdown_s"])
    missing = [key for key in nested if key not in documented]
    assert not missing, f"README section lacks {missing}"


def test_csv_has_one_row_per_example(small_run):
    rows = read_csv_rows(small_run["csv"])
    assert len(rows) == 6
    assert [int(r["sample"]) for r in rows] == list(range(6))
    for term in ENERGY_TERMS:
        assert float(rows[0][f"energy_{term}_j"]) == float(rows[0][f"energy_{term}_j"])
    total = sum(float(rows[0][f"energy_{t}_j"]) for t in ENERGY_TERMS)
    assert float(rows[0]["energy_per_update_j"]) == pytest.approx(total)
    assert all(r["settled"] == "1" for r in rows)


def test_dump_contents(small_run):
    dump = np.load(small_run["npz"])
    assert dump["inputs"].shape == (6, 16) and dump["targets"].shape == (6, 10)
    assert np.all((dump["inputs"] >= 0) & (dump["inputs"] <= 1))
    assert np.array_equal(dump["targets"].argmax(axis=1), dump["labels"])
    for k, (n_in, n_out) in enumerate([(16, 8), (8, 10)]):
        assert dump[f"weight_{k}"].shape == (n_out, n_in) == dump[f"weight_initial_{k}"].shape
        assert dump[f"bias_{k}"].shape == (n_out,)
        assert dump[f"g_pos_s_{k}"].shape == (n_in + 1, n_out) == dump[f"g_neg_s_{k}"].shape
        assert not np.array_equal(dump[f"weight_{k}"], dump[f"weight_initial_{k}"])  # it learned
    for layer, n in ((1, 8), (2, 10)):
        assert dump[f"v_plus_v_{layer}"].shape == (n,) == dump[f"v_minus_v_{layer}"].shape
    params = json.loads(str(dump["params_json"]))
    v_r = params["circuit"]["neuron"]["v_read_v"]
    assert np.all(np.abs(dump["v_plus_v_1"]) <= v_r + 1e-12)  # hidden compartments in [0, V_r]
    assert json.loads(str(dump["summary_json"]))["samples"] == 6
    assert dump["history_loss"].shape == (6,)


def test_plot_is_written(small_run):
    assert small_run["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_table_on_stdout(run_cli):
    status, out, _ = run_cli(crossbar.main, SMALL)
    assert status == 0
    for label in ("settling time", "energy per update", "energy per MAC", "fixed-point error", "loss"):
        assert label in out


# ---- data ----------------------------------------------------------------------------------


def test_images_are_fitted_to_the_rows():
    images = np.random.default_rng(0).random((3, 64))
    fitted, how = experiment.fit_images(images, 8, 20)  # 4x4 = 16 pixels + 4 zero inputs
    assert fitted.shape == (3, 20) and np.all(fitted[:, 16:] == 0) and "padded" in how
    same, _ = experiment.fit_images(images, 8, 64)
    np.testing.assert_array_equal(same, images)


def test_auto_dataset_says_what_it_chose(capsys):
    digits = experiment.load_examples(ExperimentConfig(layers=(64, 32, 10), samples=3))
    assert digits.name == "digits" and "R != 784" in digits.description
    assert digits.inputs.shape == (3, 64) and digits.targets.shape == (3, 10)
    from analogdp.data import fashion_mnist_available

    if fashion_mnist_available():
        fashion = experiment.load_examples(ExperimentConfig(layers=(784, 32, 10), samples=3))
        assert fashion.name == "fashion-mnist" and fashion.inputs.shape == (3, 784)
        assert fashion.inputs.max() <= 1.0 and fashion.inputs.min() >= 0.0
