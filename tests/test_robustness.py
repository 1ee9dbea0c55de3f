"""Nothing half-written, nothing misreported: exit statuses, interrupts, outputs, data paths,
ranges and provenance in every command line."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from analogdp.data import IDX_FILE_NAMES, write_idx
from analogdp.report import read_csv_rows
from sims import compare, crossbar, spice_check, train
from sims.cli import EXIT_INTERRUPTED, EXIT_NGSPICE, EXIT_TERMINATED, EXIT_USAGE
from sims.spice_check import time_s

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--size", "16x8", "--dataset", "random", "--samples", "3", "--no-progress"]
COMMANDS = {"crossbar": crossbar.main, "compare": compare.main, "spice_check": spice_check.main,
            "train": train.main}


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ---- 2: SI suffixes parsed exactly --------------------------------------------------------


@pytest.mark.parametrize("text, seconds", [("50us", 5e-05), ("100us", 1e-04), ("200ns", 2e-07),
                                           ("0.3us", 3e-07), ("7e-9", 7e-09), ("1.1ms", 1.1e-03)])
def test_time_suffixes_are_exact(text, seconds):
    assert time_s(text) == seconds  # the float nearest the decimal value, bit for bit


@pytest.mark.ngspice
def test_a_window_of_50us_runs_in_ngspice(run_cli):
    status, out, err = run_cli(spice_check.main, ["--layers", "4x3", "--t-stop", "50us", "--t-step", "100ns"])
    assert status == 0, err
    assert "out of interval" not in out + err and "AGREE" in out


# ---- 4: a failing ngspice does not lose the learning run ------------------------------------


def test_missing_ngspice_during_spice_check_keeps_the_results(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NGSPICE", str(tmp_path / "no-ngspice"))
    path = tmp_path / "run.json"
    status, _, err = run_cli(crossbar.main, SMALL + ["--spice-check", "--json", str(path)])
    assert status == EXIT_NGSPICE
    assert "ngspice not found" in one_error_line(err)
    summary = json.loads(path.read_text())
    assert summary["spice"]["passed"] is False and "ngspice not found" in summary["spice"]["error"]
    assert summary["energy_per_update_j"] > 0  # the learning run's figures are there


def test_ngspice_missing_is_the_same_exit_status_everywhere(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NGSPICE", str(tmp_path / "no-ngspice"))
    assert run_cli(spice_check.main, ["--layers", "4x3"])[0] == EXIT_NGSPICE
    assert run_cli(crossbar.main, SMALL + ["--spice-check"])[0] == EXIT_NGSPICE


# ---- 5: absurd values, non-finite results --------------------------------------------------


@pytest.mark.parametrize("option", [["--lr", "1e300"], ["--v-read-v", "1e300"], ["--c-m-f", "1e300"],
                                    ["--r-m-ohm", "1e-30"], ["--g-max-s", "1e10"], ["--e-pulse-j", "1"]])
def test_values_outside_their_physical_range_are_refused(run_cli, option):
    status, out, err = run_cli(crossbar.main, SMALL + option)
    line = one_error_line(err)
    assert status == EXIT_USAGE and ("must lie in" in line or "is not in" in line) and out == ""


def test_help_states_the_ranges():
    text = " ".join(crossbar.build_parser().format_help().split())
    assert "range 0.001 to 10" in text and "range 1e-18 to 1e-06" in text


def test_a_diverging_training_stops_in_one_line(run_cli):
    status, out, err = run_cli(train.main, ["--lr", "1e300", "--epochs", "2", "--no-progress"])
    assert status == 1 and "diverged" in one_error_line(err)
    assert "e+30" not in out  # no 300-digit loss printed


def test_json_never_holds_a_bare_nan(run_cli, tmp_path):
    """Variant dp far from α = ½ has no fixed point: its error is NaN, written as null."""
    path = tmp_path / "run.json"
    run_cli(crossbar.main, SMALL + ["--variant", "dp", "--alpha", "1", "--beta", "5", "--samples", "2",
                                    "--json", str(path)])
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["fixed_point_error_v"] is None


# ---- 7: Ctrl-C and SIGTERM -----------------------------------------------------------------


def start(module: str, *argv, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def wait_for_work(process: subprocess.Popen, seconds: float) -> None:
    time.sleep(seconds)
    assert process.poll() is None, "the command ended before it could be interrupted"


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, EXIT_TERMINATED)])
def test_interrupt_is_one_line(signum, status, tmp_path):
    process = start("sims.crossbar", "--size", "64x32", "--samples", "100000", "--dataset", "random",
                    "--no-progress", "--json", str(tmp_path / "run.json"))
    wait_for_work(process, 4.0)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == status
    assert one_error_line(err).endswith("not written")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.ngspice
def test_sigterm_during_spice_check_leaves_no_temporary_directory(tmp_path):
    """SIGTERM while ngspice runs: exit 143, one line, and no analogdp-ngspice-* directory left.
    A run can end in the instant between ngspice's directory appearing and the signal, so the
    window grows until a signal lands mid-run (every attempt must still leave nothing behind)."""
    interrupted = False
    for attempt, t_stop in enumerate(("2us", "10us", "40us")):
        temporary = tmp_path / f"tmp{attempt}"
        temporary.mkdir()
        env = dict(os.environ, TMPDIR=str(temporary))
        process = start("sims.spice_check", "--layers", "64x32x10", "--t-stop", t_stop, "--force", env=env)
        deadline = time.monotonic() + 120
        while not any(temporary.glob("analogdp-ngspice-*")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(temporary.glob("analogdp-ngspice-*")), "ngspice never started"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
        assert list(temporary.iterdir()) == []
        if process.returncode == EXIT_TERMINATED:
            # a long window first prints its time estimate (a notice, not an error)
            errors = [line for line in err.splitlines() if "error" in line.lower() or "Traceback" in line]
            assert len(errors) == 1 and "terminated" in errors[0], err
            interrupted = True
            break
        assert process.returncode == 0, err  # finished before the signal: a clean run
    assert interrupted


# ---- 8: an ngspice that hangs ---------------------------------------------------------------


def test_a_hanging_ngspice_is_stopped_and_reported(run_cli, tmp_path, monkeypatch):
    fake = tmp_path / "ngspice"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = \"-v\" ]; then echo 'ngspice-39 (fake)'; exit 0; fi\nsleep 600\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("NGSPICE", str(fake))
    started = time.monotonic()
    status, _, err = run_cli(spice_check.main, ["--layers", "4x3", "--ngspice-timeout-s", "1"])
    assert status == EXIT_NGSPICE and "timeout of 1 s" in one_error_line(err)
    assert time.monotonic() - started < 30


# ---- 9: outputs checked before any work; one overwrite policy ---------------------------------


def test_a_read_only_output_is_refused_before_any_work(run_cli, tmp_path, monkeypatch):
    from analogdp import experiment

    path = tmp_path / "run.json"
    path.write_text("{}\n")
    path.chmod(0o444)
    monkeypatch.setattr(experiment, "load_examples", lambda *a, **k: pytest.fail("did work"))
    status, _, err = run_cli(crossbar.main, SMALL + ["--json", str(path), "--force"])
    assert status == EXIT_USAGE and "not writable" in one_error_line(err)
    assert path.read_text() == "{}\n"


@pytest.mark.parametrize("name, argv", [
    ("crossbar", SMALL + ["--json", "{out}", "--csv", "{out}"]),
    ("compare", ["--quick", "--csv", "{out}", "--plot", "{out}.png"]),
    ("train", ["--json", "{out}", "--epochs", "1"]),
    ("spice_check", ["--layers", "4x3", "--json", "{out}"]),
])
def test_every_command_keeps_an_existing_output_and_refuses_one_file_twice(run_cli, name, argv, tmp_path):
    out = tmp_path / "out"
    out.write_text("keep\n")
    status, _, err = run_cli(COMMANDS[name], [a.replace("{out}", str(out)) for a in argv])
    assert status == EXIT_USAGE and ("--force" in err or "same file" in err)
    assert out.read_text() == "keep\n"


def test_compare_writes_nothing_unless_asked(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, _, err = run_cli(compare.main, ["--quick"])
    assert status == EXIT_USAGE and "--csv" in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


# ---- 10, 11: a given --data-dir is used or refused; one data path -----------------------------


def idx_directory(tmp_path: Path, empty: str | None = None) -> Path:
    directory = tmp_path / "idx"
    directory.mkdir()
    rng = np.random.default_rng(0)
    for role, name in IDX_FILE_NAMES.items():
        count = 30 if role.startswith("train") else 10
        array = rng.integers(0, 256, (count, 28, 28)) if "images" in role else rng.integers(0, 10, count)
        write_idx(directory / name, array.astype(np.uint8))
    if empty:
        (directory / IDX_FILE_NAMES[empty]).write_bytes(b"")
    return directory


@pytest.mark.parametrize("argv, message", [
    (["--size", "784x16", "--data-dir", "/nonexistent"], "does not exist"),
    (["--dataset", "digits", "--data-dir", "{tmp}"], "reads no directory"),
    (["--size", "784x16", "--dataset", "fashion-mnist", "--data-dir", "{file}"], "not a directory"),
])
def test_a_given_data_dir_is_used_or_refused(run_cli, tmp_path, argv, message):
    file = tmp_path / "file"
    file.write_text("x")
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{file}", str(file)) for a in argv]
    status, _, err = run_cli(crossbar.main, argv + ["--samples", "2", "--no-progress"])
    assert status == EXIT_USAGE and message in one_error_line(err)


def test_a_data_dir_is_read_when_given(run_cli, tmp_path):
    directory = idx_directory(tmp_path)
    path = tmp_path / "run.json"
    status, _, err = run_cli(crossbar.main, ["--size", "784x8", "--data-dir", str(directory), "--samples", "2",
                                             "--no-progress", "--json", str(path)])
    assert status == 0, err
    assert str(directory) in json.loads(path.read_text())["params"]["data"]


def test_an_empty_test_label_file_is_refused_by_every_command(run_cli, tmp_path):
    directory = idx_directory(tmp_path, empty="test_labels")
    status, _, err = run_cli(crossbar.main, ["--size", "784x8", "--dataset", "fashion-mnist",
                                             "--data-dir", str(directory), "--samples", "2", "--no-progress"])
    assert status == EXIT_USAGE and IDX_FILE_NAMES["test_labels"] in one_error_line(err)
    status, _, err = run_cli(train.main, ["--dataset", "fashion-mnist", "--data-dir", str(directory),
                                          "--epochs", "1", "--no-progress"])
    assert status == EXIT_USAGE and IDX_FILE_NAMES["test_labels"] in one_error_line(err)


# ---- 12: one behaviour across the command lines ----------------------------------------------


@pytest.mark.parametrize("layers", ["6x4x3", "6-4-3"])
def test_layers_are_accepted_in_both_forms(layers):
    from sims.cli import layer_sizes

    assert layer_sizes(layers) == (6, 4, 3)


@pytest.mark.parametrize("argv", [["--beta", "0"], ["--neuron", "ep", "--beta", "3"],
                                  ["--neuron", "ep", "--alpha", "0.3"]])
def test_spice_check_refuses_what_the_crossbar_refuses(run_cli, argv):
    status, _, err = run_cli(spice_check.main, ["--layers", "4x3"] + argv)
    assert status == EXIT_USAGE
    one_error_line(err)


def test_spice_check_accepts_no_progress():
    args = spice_check.build_parser().parse_args(["--no-progress"])
    assert args.no_progress


def test_error_lines_do_not_name_exception_classes(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NGSPICE", str(tmp_path / "no-ngspice"))
    _, _, err = run_cli(crossbar.main, SMALL + ["--spice-check"])
    assert "NgspiceNotFound" not in err and "Error:" not in err


@pytest.mark.parametrize("argv", [["--algo", "ep", "--alpha", "0.3"], ["--algo", "ep", "--variant", "dpT"],
                                  ["--c-hold-f", "1e-13"]])
def test_flags_the_algorithm_ignores_are_refused(run_cli, argv):
    status, _, err = run_cli(crossbar.main, SMALL + argv)
    assert status == EXIT_USAGE and "do not apply" in one_error_line(err)


def test_compare_csv_has_every_algorithm_and_unix_line_endings(run_cli, tmp_path):
    path = tmp_path / "run.csv"
    status, _, err = run_cli(crossbar.main, SMALL + ["--compare", "--csv", str(path)])
    assert status == 0, err
    rows = read_csv_rows(path)
    assert [r["algo"] for r in rows] == ["dp"] * 3 + ["ep"] * 3 + ["ep-centered"] * 3
    assert float(rows[0]["energy_sample_hold_j"]) == 0.0 and float(rows[3]["energy_sample_hold_j"]) > 0
    assert b"\r\n" not in path.read_bytes()


def test_an_ep_run_does_not_warn_about_the_dyad(run_cli):
    status, _, err = run_cli(crossbar.main, SMALL + ["--algo", "ep"])
    assert status == 0 and "alpha" not in err


# ---- 13: provenance and --version ----------------------------------------------------------


def test_json_and_csv_record_their_provenance(run_cli, tmp_path):
    paths = {"json": tmp_path / "run.json", "csv": tmp_path / "run.csv"}
    argv = SMALL + ["--json", str(paths["json"]), "--csv", str(paths["csv"])]
    assert run_cli(crossbar.main, argv)[0] == 0
    record = json.loads(paths["json"].read_text())["provenance"]
    assert record["version"] and record["started_at"] and "--size 16x8" in record["command"]
    assert (record["git_commit"] is not None) == (ROOT / ".git").exists()
    head = paths["csv"].read_text().splitlines()[:4]
    assert [line.split(":")[0] for line in head] == ["# version", "# git_commit", "# command", "# started_at"]


@pytest.mark.parametrize("module", ["sims.crossbar", "sims.compare", "sims.spice_check", "sims.train"])
def test_every_command_has_a_version(module):
    done = subprocess.run([sys.executable, "-m", module, "--version"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "analogdp" in done.stdout


# ---- 14: weights in and out --------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_digits(tmp_path_factory):
    """sims.train on digits, 64-32-10, with the weights saved."""
    directory = tmp_path_factory.mktemp("trained")
    paths = {"weights": directory / "w.npz", "json": directory / "train.json"}
    assert train.main(["--dataset", "digits", "--layers", "64-32-10", "--epochs", "30", "--no-progress",
                       "--save-weights", str(paths["weights"]), "--json", str(paths["json"])]) == 0
    return paths


@pytest.mark.ngspice
def test_digitally_trained_weights_run_on_the_crossbar_and_in_ngspice(trained_digits, tmp_path):
    from analogdp.spice import run_ngspice

    record = json.loads(trained_digits["json"].read_text())
    paths = {"json": tmp_path / "run.json", "netlist": tmp_path / "trained.cir"}
    status = crossbar.main(["--layers", "64x32x10", "--weights", str(trained_digits["weights"]),
                            "--samples", "1", "--no-progress", "--json", str(paths["json"]),
                            "--export-netlist", str(paths["netlist"])])
    assert status == 0
    loaded = json.loads(paths["json"].read_text())["loaded_weights"]
    assert loaded["clipped"] == 0 and loaded["test_examples"] == record["n_test"]
    assert abs(loaded["test_accuracy_circuit"] - record["test_accuracy"]) <= 0.01
    assert record["test_accuracy"] > 0.85  # a trained network, not chance
    run = run_ngspice(paths["netlist"].read_text())
    assert run.time_s.size > 10


def test_a_dump_loads_as_weights(tmp_path):
    from analogdp.experiment import ExperimentConfig, build_algorithm, build_circuit

    dump = tmp_path / "run.npz"
    assert crossbar.main(SMALL + ["--dump", str(dump)]) == 0
    config = ExperimentConfig(layers=(16, 8, 10), dataset="random", weights=str(dump))
    circuit = build_circuit(config, build_algorithm(config))
    with np.load(dump) as arrays:
        for k, weight in enumerate(circuit.effective_weights()[0]):
            np.testing.assert_allclose(weight, arrays[f"weight_{k}"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("content, message", [(b"not a zip", "cannot be read"), (None, "no array weight_1")])
def test_a_bad_weights_file_is_bad_input(run_cli, tmp_path, content, message):
    path = tmp_path / "w.npz"
    if content is None:
        np.savez(path, weight_0=np.zeros((8, 16)), bias_0=np.zeros(8))
    else:
        path.write_bytes(content)
    status, _, err = run_cli(crossbar.main, SMALL + ["--weights", str(path)])
    assert status == EXIT_USAGE and message in one_error_line(err)


# ---- 1, 3: solver limits are reported as such ----------------------------------------------


@pytest.mark.ngspice
@pytest.mark.slow
def test_a_long_window_is_not_a_disagreement(run_cli):
    """200 µs at 1 ns: 200,040 saved points used to cost one solver step each, hit the step
    limit, and compare unfilled rows as a 0.134 V 'disagreement'."""
    status, out, err = run_cli(spice_check.main, ["--layers", "6x4x3", "--t-stop", "200e-6"])
    assert status == 0, out + err
    assert "AGREE" in out and "DISAGREE" not in out


def test_compartments_on_a_rail_settle(run_cli, tmp_path):
    """2x1 networks put compartments exactly on a clip rail (6 of 32 were 'not settled')."""
    path = tmp_path / "run.json"
    status, _, err = run_cli(crossbar.main, ["--size", "2x1", "--samples", "32", "--no-progress",
                                             "--json", str(path)])
    summary = json.loads(path.read_text())
    assert status == 0 and summary["not_settled"] == 0, err
    assert summary["fixed_point_error_v"] < 1e-9


# ---- 15: netlists for people ---------------------------------------------------------------


@pytest.mark.ngspice
def test_exported_netlist_writes_a_raw_file_and_labels_the_operating_point(tmp_path):
    netlist = tmp_path / "first.cir"
    assert crossbar.main(SMALL + ["--export-netlist", str(netlist)]) == 0
    done = subprocess.run(["ngspice", "-b", netlist.name], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    raw = (tmp_path / "first.raw").read_bytes()
    assert raw.startswith(b"Title:") and b"Variables:" in raw and b"time" in raw
    header = (tmp_path / "first.op.data").read_text().split()
    assert header[0] == "operating_point" and header[1].startswith("v(")


@pytest.mark.ngspice
def test_interactive_netlist_has_no_batch_block_and_runs_at_the_prompt(tmp_path):
    netlist = tmp_path / "prompt.cir"
    assert crossbar.main(SMALL + ["--export-netlist", str(netlist), "--interactive"]) == 0
    text = netlist.read_text()
    assert ".control" not in text and "quit" not in text and "wrdata" not in text
    done = subprocess.run(["ngspice", "-p", netlist.name], cwd=tmp_path, input="run\nprint length(time)\nquit\n",
                          capture_output=True, text=True, timeout=120)
    assert "length(time)" in done.stdout and "error" not in done.stdout.lower()


def test_interactive_without_a_netlist_is_refused(run_cli):
    status, _, err = run_cli(crossbar.main, SMALL + ["--interactive"])
    assert status == EXIT_USAGE and "--interactive" in one_error_line(err)


# ---- an interrupt that an extension module's import wraps is still an interrupt -------------


@pytest.mark.parametrize("signal_error, status", [(KeyboardInterrupt(), EXIT_INTERRUPTED),
                                                  (None, EXIT_TERMINATED)])
def test_an_interrupt_wrapped_by_an_import_is_reported_as_an_interrupt(capsys, signal_error, status):
    from sims.cli import Terminated, run_command

    def body():
        try:
            raise signal_error if signal_error is not None else Terminated()
        except BaseException as error:
            raise ImportError("extension module initialisation failed") from error

    assert run_command("prog", body) == status
    expected = "interrupted" if status == EXIT_INTERRUPTED else "terminated"
    line = one_error_line(capsys.readouterr().err)
    assert line == f"prog: error: {expected}; outputs not yet written were not written"

    def failing():
        raise ImportError("a real import error")

    with pytest.raises(ImportError):
        run_command("prog", failing)
