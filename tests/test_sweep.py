"""Sweeps on Dask: python -m sims.sweep and analogdp.distributed (spec, streaming CSV, resume,
error rows, bad input). One 2-worker LocalCluster is shared by the tests of this module."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analogdp.distributed import (
    SweepSpec,
    config_id,
    csv_columns,
    dask_client,
    load_spec,
    recorded_rows,
    run_sweep,
)
from sims import sweep as sweep_cli

ROOT = Path(__file__).resolve().parents[1]

# 3 learning rates x 2 seeds, DP, EP and centered EP on each: 6 configurations, 18 rows
SIX = """
run = "compare"
seeds = [0, 1]
[base]
layers = [16, 8, 10]
samples = 2
dataset = "random"
[grid]
lr = [0.01, 0.02, 0.04]
"""


@pytest.fixture(scope="module")
def client():
    with dask_client(n_workers=2) as client:
        yield client


def write_spec(tmp_path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def read_rows(path) -> list[dict]:
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(handle))


def without_wall_time(rows: list[dict]) -> list[tuple]:
    return sorted(tuple((k, v) for k, v in row.items() if k != "wall_time_s") for row in rows)


def test_six_configurations_on_two_workers_give_the_serial_rows(client, tmp_path):
    spec = load_spec(write_spec(tmp_path, SIX))
    assert len(client.scheduler_info()["workers"]) == 2
    report = run_sweep(spec, tmp_path / "dask.csv", client=client)
    assert (report.configurations, report.ran, report.failed, report.rows_written) == (6, 6, 0, 18)
    run_sweep(spec, tmp_path / "serial.csv")
    distributed, serial = read_rows(tmp_path / "dask.csv"), read_rows(tmp_path / "serial.csv")
    assert len(distributed) == 18
    assert {(r["config_id"], r["algo"]) for r in distributed} == {
        (config_id(c), algo) for c in spec.configurations() for algo in ("dp", "ep", "ep-centered")}
    assert without_wall_time(distributed) == without_wall_time(serial)
    # the rows are the figures of the runs (energy terms add up; the grid's values recorded)
    for row in distributed:
        terms = sum(float(row[f"energy_{t}_j"] or 0) for t in ("crossbar", "neuron", "amplifier_static",
                                                               "capacitor", "sample_hold", "programming"))
        assert terms == pytest.approx(float(row["energy_per_update_j"]))
        assert row["error"] == "" and row["samples"] == "2"
    assert sorted({(r["lr"], r["seed"]) for r in distributed}) == sorted(
        (lr, seed) for lr in ("0.01", "0.02", "0.04") for seed in ("0", "1"))


def test_rerun_skips_what_is_recorded(client, tmp_path):
    spec_path = write_spec(tmp_path, SIX.replace("lr = [0.01, 0.02, 0.04]", "lr = [0.01, 0.02]"))
    table = tmp_path / "spec.csv"
    first = run_sweep(load_spec(spec_path), table, client=client)
    before = table.read_text()
    again = run_sweep(load_spec(spec_path), table, client=client)
    assert (first.ran, again.skipped, again.ran) == (4, 4, 0)
    assert table.read_text() == before


def test_a_killed_sweep_resumes_without_duplicating_or_losing_rows(client, tmp_path):
    spec_path = write_spec(tmp_path, """
run = "single"
seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
[base]
layers = [32, 16, 10]
samples = 12
dataset = "random"
""")
    table = tmp_path / "killed.csv"
    # a real sweep on its own LocalCluster, killed without warning once some rows are in
    process = subprocess.Popen([sys.executable, "-m", "sims.sweep", str(spec_path), "--csv", str(table),
                                "--workers", "2", "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if table.exists() and len(table.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    children = _children(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    recorded_at_kill = len(read_rows(table))
    assert 2 <= recorded_at_kill < 12, "the kill should land midway"
    _wait_gone(children)  # the killed sweep's worker processes do not outlive it

    status = sweep_cli.main([str(spec_path), "--csv", str(table), "--scheduler", client.scheduler.address,
                             "--no-progress"])
    assert status == 0
    rows = read_rows(table)
    ids = [r["config_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 12
    assert {config_id(c) for c in load_spec(spec_path).configurations()} == set(ids)
    assert all(r["error"] == "" for r in rows)
    # and the rows are those of an uninterrupted run
    run_sweep(load_spec(spec_path), tmp_path / "whole.csv", client=client)
    assert without_wall_time(rows) == without_wall_time(read_rows(tmp_path / "whole.csv"))


def _children(pid: int) -> list[int]:
    done = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split()]


def _wait_gone(pids: list[int], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.2)
    assert not alive, f"worker processes {alive} outlived the killed sweep"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_cut_short_line_and_an_incomplete_configuration_are_dropped_and_rerun(client, tmp_path):
    spec = load_spec(write_spec(tmp_path, SIX))
    table = tmp_path / "cut.csv"
    run_sweep(spec, table, client=client)
    whole = read_rows(table)
    lines = table.read_text().splitlines(keepends=True)
    # as a kill during a write could leave it: the last configuration's third row cut short
    table.write_text("".join(lines[:-1]) + lines[-1][:25])
    last = whole[-1]["config_id"]
    expected = {config_id(c): ("dp", "ep", "ep-centered") for c in spec.configurations()}
    complete = recorded_rows(table, csv_columns(spec), expected)
    assert last not in complete and len(complete) == 5
    assert all(line.endswith("\n") for line in table.read_text().splitlines(keepends=True))
    report = run_sweep(spec, table, client=client)
    assert (report.skipped, report.ran) == (5, 1)
    assert without_wall_time(read_rows(table)) == without_wall_time(whole)


def test_a_failing_configuration_becomes_an_error_row_and_the_sweep_goes_on(client, tmp_path, run_cli):
    # the configuration is valid, but its data directory is found missing only when it runs
    spec_path = write_spec(tmp_path, """
[base]
layers = [784, 4, 10]
samples = 2
dataset = "mnist"
[grid]
data_dir = ["/usr/share/datasets/fashion-mnist", "/no/such/directory"]
""")
    status, out, err = run_cli(sweep_cli.main, [str(spec_path), "--scheduler", client.scheduler.address])
    assert status == 0, err
    assert "2 run (1 failed)" in out
    rows = {r["data_dir"]: r for r in read_rows(tmp_path / "spec.csv")}
    failed, fine = rows["/no/such/directory"], rows["/usr/share/datasets/fashion-mnist"]
    assert failed["error"].startswith("DataError") and "/no/such/directory" in failed["error"]
    assert failed["energy_per_update_j"] == "" and failed["algo"] == "dp"
    assert fine["error"] == "" and float(fine["energy_per_update_j"]) > 0
    assert "data_dir = /no/such/directory: error: DataError" in err


def test_spec_of_single_runs_records_each_configurations_own_algorithm(tmp_path):
    spec = SweepSpec(base={"layers": [16, 8, 10], "samples": 2, "dataset": "random"},
                     grid={"algo": ["dp", "ep"], "v_read_v": [0.1, 0.2]})
    assert spec.varied == ["algo", "v_read_v"] and len(spec.configurations()) == 4
    run_sweep(spec, tmp_path / "single.csv")
    with (tmp_path / "single.csv").open() as handle:
        header = handle.readline().strip().split(",")
    assert header[:3] == ["config_id", "v_read_v", "algo"] and len(header) == len(set(header))
    rows = read_rows(tmp_path / "single.csv")
    assert [(r["algo"], r["v_read_v"]) for r in rows] == [
        (algo, v) for algo in ("dp", "ep") for v in ("0.1", "0.2")]
    assert rows[0]["settling_time_single_s"] == rows[0]["settling_time_s"]
    assert rows[2]["settling_time_single_s"] == "" and rows[2]["settling_time_free_s"] != ""


BAD_SPECS = {
    "unknown field": ("[base]\nlayers = [16, 8, 10]\n[grid]\nno_such_field = [1, 2]\n", "no_such_field"),
    "non-list grid": ("[base]\nlayers = [16, 8, 10]\n[grid]\nlr = 0.02\n", "grid.lr must be a non-empty list"),
    "empty grid list": ("[grid]\nlr = []\n", "grid.lr must be a non-empty list"),
    "samples 0": ("[base]\nsamples = 0\n", "samples must be an integer ≥ 1"),
    "bad value in grid": ("[grid]\nbeta = [0.5, -1.0]\n", "beta = -1.0: beta must be a finite number"),
    "unknown spec key": ("runs = \"compare\"\n", "unknown spec keys runs"),
    "unknown run": ("run = \"all\"\n", "run must be one of single, compare"),
    "algo in a comparison": ("run = \"compare\"\n[grid]\nalgo = [\"dp\", \"ep\"]\n", "drop algo"),
    "seed twice": ("seeds = [0, 1]\n[grid]\nseed = [2]\n", "seeds"),
    "seeds not a list": ("seeds = 3\n", "seeds must be a non-empty list"),
    "not TOML": ("[grid\n", "not valid TOML"),
    "wrong type": ("[base]\nlayers = \"wide\"\n", "configuration base"),
}


@pytest.mark.parametrize("name", list(BAD_SPECS))
def test_bad_spec_exits_2_with_one_line(run_cli, tmp_path, name):
    text, expected = BAD_SPECS[name]
    status, out, err = run_cli(sweep_cli.main, [str(write_spec(tmp_path, text))])
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith(sweep_cli.PROG)
    assert expected in err
    assert out == ""
    assert not (tmp_path / "spec.csv").exists()  # refused before any work


@pytest.mark.parametrize("argv", [["/no/such/spec.toml"], ["SPEC", "--csv", "/no/such/dir/x.csv"],
                                  ["SPEC", "--workers", "0"], ["SPEC", "--scheduler", "tcp://x:1", "--serial"]],
                         ids=" ".join)
def test_bad_arguments_exit_2_with_one_line(run_cli, tmp_path, argv):
    spec = write_spec(tmp_path, SIX)
    status, _, err = run_cli(sweep_cli.main, [str(spec) if a == "SPEC" else a for a in argv])
    assert status == 2 and len(err.strip().splitlines()) == 1 and err.startswith(sweep_cli.PROG)


def test_a_csv_of_another_sweep_is_refused(run_cli, tmp_path):
    spec = write_spec(tmp_path, SIX)
    (tmp_path / "spec.csv").write_text("a,b\n1,2\n")
    status, _, err = run_cli(sweep_cli.main, [str(spec), "--serial"])
    assert status == 2 and "header" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "spec.csv").read_text() == "a,b\n1,2\n"


def test_an_unreachable_scheduler_fails_within_10_s(tmp_path):
    spec = write_spec(tmp_path, SIX)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "sims.sweep", str(spec), "--scheduler", "tcp://127.0.0.1:9"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "not reachable" in done.stderr
    assert elapsed < 10.0, f"took {elapsed:.1f} s"


def test_configurations_whose_worker_dies_are_not_recorded_and_a_rerun_retries_them(tmp_path):
    import dask

    from analogdp.experiment import experiment_summary

    spec = SweepSpec(base={"layers": [16, 8, 10], "samples": 2, "dataset": "random"}, seeds=[0, 1, 2])
    table = tmp_path / "lost.csv"

    def dies_on_seed_1(config):  # the worker process ends under the task, as when it is killed
        return os._exit(3) if config.seed == 1 else experiment_summary(config)

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), dask_client(n_workers=1) as client:
        report = run_sweep(spec, table, client=client, task=dies_on_seed_1)
    # seed 1 is lost, and with it whatever the dying worker held (already queued there)
    assert report.lost >= 1 and report.ran + report.lost == 3 and report.failed == 0
    assert "KilledWorker" in report.lost_error
    recorded = [r["seed"] for r in read_rows(table)]
    assert "1" not in recorded and len(recorded) == report.ran
    assert all(r["error"] == "" for r in read_rows(table))
    again = run_sweep(spec, table)
    assert (again.skipped, again.ran, again.lost) == (report.ran, report.lost, 0)
    assert sorted(r["seed"] for r in read_rows(table)) == ["0", "1", "2"]


def test_warming_runs_one_tiny_copy_per_kind_of_configuration():
    from analogdp.distributed import warm_numba_cache

    calls = []
    spec = SweepSpec(base={"layers": [16, 8, 10], "samples": 2, "dataset": "random"},
                     grid={"lr": [0.01, 0.02, 0.04], "loss": ["mse", "ce"]}, seeds=[0, 1])
    assert warm_numba_cache(spec.configurations(), calls.append) == 2  # mse and ce
    assert [(c.layers, c.samples, c.loss) for c in calls] == [((4, 3, 2), 2, "mse"), ((4, 3, 2), 2, "ce")]


def test_an_address_where_no_scheduler_answers_fails_within_10_s(run_cli, tmp_path):
    import socket
    import threading

    spec = write_spec(tmp_path, SIX)
    listener = socket.create_server(("127.0.0.1", 0))  # accepts connections, never speaks Dask
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    address = "tcp://127.0.0.1:%d" % listener.getsockname()[1]
    started = time.monotonic()
    try:
        status, _, err = run_cli(sweep_cli.main, [str(spec), "--scheduler", address])
    finally:
        listener.close()
    elapsed = time.monotonic() - started
    assert status == 2 and len(err.strip().splitlines()) == 1 and "no dask scheduler answered" in err
    assert elapsed < 10.0, f"took {elapsed:.1f} s"
    assert not (tmp_path / "spec.csv").exists()
