"""DP against EP on the same crossbars: `sims.crossbar --algo ep` and `--compare`, and the
`sims.compare` sweep (CSV, plot, input checks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analogdp.report import read_csv_rows
from sims import compare as sweep
from sims import crossbar

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--size", "16x8", "--dataset", "random", "--samples", "5", "--no-progress"]
SETTLE_TERMS = ("crossbar", "neuron", "amplifier_static", "capacitor")




@pytest.fixture(scope="module")
def scheduler() -> str:
    """Address of a 2-worker LocalCluster shared by this module's sweeps (start-up costs seconds)."""
    from analogdp.distributed import dask_client

    with dask_client(n_workers=2) as client:
        yield client.scheduler.address


@pytest.fixture(scope="module")
def compare_json(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("compare") / "run.json"
    assert crossbar.main(SMALL + ["--compare", "--json", str(path)]) == 0
    return json.loads(path.read_text())


# ---- sims.crossbar --algo ep -----------------------------------------------------------------


@pytest.mark.parametrize("algo,phases", [("ep", ["free", "nudged_plus_beta"]),
                                         ("ep-centered", ["free", "nudged_plus_beta", "nudged_minus_beta"])])
def test_algo_ep_reports_every_phase_and_the_sample_hold(algo, phases, tmp_path):
    path = tmp_path / "ep.json"
    assert crossbar.main(SMALL + ["--algo", algo, "--json", str(path)]) == 0
    summary = json.loads(path.read_text())
    assert summary["algo"] == algo
    assert list(summary["settling_time_per_phase_s"]) == phases
    assert list(summary["energy_breakdown_j"]) == list(SETTLE_TERMS) + ["sample_hold", "programming"]
    assert sum(summary["energy_breakdown_j"].values()) == pytest.approx(summary["energy_per_update_j"])
    assert summary["energy_breakdown_j"]["sample_hold"] > 0
    v_r = summary["params"]["circuit"]["neuron"]["v_read_v"]
    assert 0 <= summary["fixed_point_error_v"] <= 1e-6 * v_r
    assert summary["not_settled"] == 0
    assert summary["params"]["circuit"]["neuron_kind"] == "ep"


@pytest.mark.parametrize("argv", [["--algo", "ep", "--beta", "1"], ["--compare", "--beta", "1.5"],
                                  ["--algo", "ep", "--c-hold-f", "0"]], ids=" ".join)
def test_ep_needs_beta_below_one_and_a_hold_capacitor(run_cli, argv):
    status, out, err = run_cli(crossbar.main, SMALL + argv)
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and "error" in err
    assert out == ""


def test_ep_netlist_is_its_free_phase(run_cli, tmp_path):
    path = tmp_path / "ep.cir"
    status, out, _ = run_cli(crossbar.main, SMALL + ["--algo", "ep", "--export-netlist", str(path)])
    assert status == 0 and "free phase" in out
    text = path.read_text()
    assert "free phase" in text.splitlines()[0]


def test_ep_spice_check_covers_every_phase(ngspice, tmp_path):
    path = tmp_path / "spice.json"
    assert crossbar.main(SMALL + ["--algo", "ep-centered", "--spice-check", "--json", str(path)]) == 0
    spice = json.loads(path.read_text())["spice"]
    assert spice["passed"] and spice["failures"] == []
    assert list(spice["phases"]) == ["free", "nudged_plus_beta", "nudged_minus_beta"]
    assert spice["max_abs_dev_v"] == max(p["max_abs_dev_v"] for p in spice["phases"].values())
    assert spice["max_abs_dev_v"] <= 1e-3 and spice["final_abs_dev_v"] <= 10e-6


# ---- sims.crossbar --compare -----------------------------------------------------------------


def test_compare_runs_the_three_algorithms_on_the_same_start(compare_json):
    comparison = compare_json["compare"]
    assert comparison["algorithms"] == ["dp", "ep", "ep-centered"] and comparison["reference"] == "dp"
    for algo in comparison["algorithms"]:
        figures = comparison[algo]
        assert sum(figures["energy_breakdown_j"].values()) == pytest.approx(figures["energy_per_update_j"])
        assert figures["not_settled"] == 0
    # same initial weights and first example: the same loss before the first update
    # (5 samples: the loss window is the first example alone)
    assert compare_json["loss_window"] == 1
    assert comparison["dp"]["loss_first"] == comparison["ep"]["loss_first"] == comparison["ep-centered"]["loss_first"]
    # the top-level figures are those of --algo (dp)
    assert compare_json["energy_per_update_j"] == comparison["dp"]["energy_per_update_j"]
    # centered EP settles three times, one-sided EP twice, DP once
    assert len(comparison["ep-centered"]["settling_time_per_phase_s"]) == 3
    assert len(comparison["ep"]["settling_time_per_phase_s"]) == 2
    assert list(comparison["dp"]["settling_time_per_phase_s"]) == ["single"]


def test_compare_ratios_are_the_figures_divided_by_dp(compare_json):
    comparison = compare_json["compare"]
    for algo in ("ep", "ep-centered"):
        ratios = comparison["ratios"][f"{algo}_over_dp"]
        for key in ("settling_time_s", "energy_per_update_j", "energy_per_inference_j", "energy_per_mac_j"):
            assert ratios[key[:-2]] == pytest.approx(comparison[algo][key] / comparison["dp"][key])
        assert ratios["energy_breakdown"]["crossbar"] == pytest.approx(
            comparison[algo]["energy_breakdown_j"]["crossbar"] / comparison["dp"]["energy_breakdown_j"]["crossbar"])
        assert ratios["energy_breakdown"]["sample_hold"] is None  # DP holds nothing: n/a (null)


def test_compare_is_reproducible(compare_json, tmp_path):
    path = tmp_path / "again.json"
    assert crossbar.main(SMALL + ["--compare", "--json", str(path)]) == 0
    assert json.loads(path.read_text())["compare"] == compare_json["compare"]


def test_compare_prints_a_side_by_side_table(run_cli):
    status, out, _ = run_cli(crossbar.main, SMALL + ["--samples", "2", "--compare"])
    assert status == 0
    table = out[out.index("comparison on the same weights"):]
    header = table.splitlines()[1].split()
    assert header == ["dp", "ep", "ep-centered", "ep/dp", "ep-centered/dp"]
    for label in ("settling time per update", "free phase", "nudged minus beta phase",
                  "energy per update", "sample hold", "programming", "energy per MAC"):
        assert label in table


# ---- python -m sims.compare ------------------------------------------------------------------


def test_sweep_writes_one_row_per_configuration_and_algorithm(run_cli, tmp_path):
    paths = {"csv": tmp_path / "sweep.csv", "plot": tmp_path / "sweep.png"}
    status, out, err = run_cli(sweep.main, ["--quick", "--sizes", "16x8", "--depths", "1,2",
                                            "--csv", str(paths["csv"]), "--plot", str(paths["plot"])])
    assert status == 0, err
    rows = read_csv_rows(paths["csv"])
    assert [(r["size"], r["hidden_layers"], r["algo"]) for r in rows] == [
        ("16x8", depth, algo) for depth in ("1", "2") for algo in ("dp", "ep", "ep-centered")]
    assert rows[3]["layers"] == "16x8x8x10"
    for name in rows[0]:  # every physical quantity names its unit
        if name.startswith(("energy_", "settling_time_")) and "ratio" not in name:
            assert name.endswith(("_s", "_j")), name
    for row in rows:
        terms = sum(float(row[f"energy_{t}_j"]) for t in sweep.ENERGY_TERMS)
        assert terms == pytest.approx(float(row["energy_per_update_j"]))
    assert float(rows[0]["energy_per_update_ratio_to_dp"]) == 1.0
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "6 rows" in out


def test_sweep_plot_can_be_redrawn_from_its_csv(run_cli, tmp_path, scheduler):
    table = tmp_path / "sweep.csv"
    assert sweep.main(["--quick", "--sizes", "16x8", "--depths", "1", "--no-progress", "--scheduler", scheduler,
                       "--csv", str(table), "--plot", str(tmp_path / "a.png")]) == 0
    rows = sweep.read_csv(table)
    assert [r["algo"] for r in rows] == ["dp", "ep", "ep-centered"]
    assert isinstance(rows[0]["energy_per_update_j"], float) and rows[0]["rows"] == 16
    status, out, _ = run_cli(sweep.main, ["--from-csv", str(table), "--plot", str(tmp_path / "b.png")])
    assert status == 0 and (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_is_reproducible_on_dask_and_serially(tmp_path, scheduler):
    tables = []
    for run, where in (("a", ["--scheduler", scheduler]), ("b", ["--serial"])):
        path = tmp_path / f"{run}.csv"
        assert sweep.main(["--quick", "--sizes", "16x8,32x16", "--depths", "1", "--no-progress", *where,
                           "--csv", str(path), "--plot", str(tmp_path / f"{run}.png")]) == 0
        tables.append([{k: v for k, v in r.items() if "wall_time" not in k} for r in read_csv_rows(path)])
    assert tables[0] == tables[1]


BAD_SWEEP_INPUTS = [["--sizes", "64x"], ["--sizes", "0x4"], ["--sizes", ""], ["--depths", "0"],
                    ["--depths", "a"], ["--samples", "0"], ["--beta", "1"], ["--beta", "-0.1"],
                    ["--plot", "out.jpg"], ["--csv", "/no/such/dir/x.csv"], ["--dataset", "cifar"],
                    ["--from-csv", "/no/such/file.csv"], ["--workers", "0"]]


@pytest.mark.parametrize("argv", BAD_SWEEP_INPUTS, ids=" ".join)
def test_sweep_bad_input_exits_2_with_one_line(run_cli, argv):
    status, out, err = run_cli(sweep.main, ["--quick"] + argv)
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith(sweep.PROG)


@pytest.mark.parametrize("argv,message", [(["--scheduler", "tcp://127.0.0.1:9", "--serial"], "drop --workers"),
                                          (["--scheduler", "tcp://127.0.0.1:9"], "not reachable within")],
                         ids=["scheduler and serial", "unreachable scheduler"])
def test_sweep_scheduler_problems_exit_2_with_one_line(run_cli, tmp_path, argv, message):
    table = tmp_path / "never.csv"
    status, _, err = run_cli(sweep.main, ["--quick", "--csv", str(table)] + argv)
    assert status == 2 and len(err.strip().splitlines()) == 1 and message in err
    assert not table.exists()


def test_sweep_help_and_the_real_command():
    done = subprocess.run([sys.executable, "-m", "sims.compare", "--help"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and "--quick" in done.stdout and "--sizes" in done.stdout
    done = subprocess.run([sys.executable, "-m", "sims.compare", "--depths", "x"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
