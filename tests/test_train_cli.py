"""`python -m sims.train`: input checking (exit 2, one line) and the JSON record of a run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sims.train import main

REPO = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "digits", "--layers", "64-16-10", "--epochs", "2", "--batch-size", "64",
        "--lr", "0.01", "--no-progress"]
REQUIRED_KEYS = {"algo", "variant", "alpha", "beta", "dataset", "layers", "epochs", "seed",
                 "train_accuracy", "val_accuracy", "test_accuracy", "seconds_per_epoch"}


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    return stop.value.code, capsys.readouterr()


@pytest.mark.parametrize("argv,fragment", [
    (["--algo", "sgd"], "--algo: invalid choice"),
    (["--layers", "784-abc-10"], "--layers"),
    (["--layers", "64"], "--layers"),
    (["--layers", "64-0-10"], "--layers"),
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "-3"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--lr", "-0.1"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--beta", "inf"], "--beta"),
    (["--alpha", "1.5"], "--alpha"),
    (["--sweeps", "0"], "--sweeps"),
    (["--algo", "ep", "--beta", "1.5"], "beta < 1"),
    (["--dataset", "fashion-mnist", "--data-dir", "/nonexistent/fmnist"], "does not exist"),
    (["--dataset", "mnist"], "--data-dir"),
    (["--json", "/nonexistent/dir/run.json"], "--json"),
    (["--layers", "784-256-10", "--epochs", "1"], "64 input features"),
    (["--layers", "64-16-3", "--epochs", "1"], "10 classes"),
])
def test_bad_input_exits_2_with_one_line(argv, fragment, capsys):
    code, captured = run_main(argv + ["--no-progress"], capsys)
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("sims.train: error:") and fragment in lines[0]
    assert captured.out == ""


def test_data_errors_exit_2_with_one_line(tmp_path, capsys):
    """A directory without the IDX files is a data error, reported like an argument error."""
    code, captured = run_main(["--dataset", "mnist", "--data-dir", str(tmp_path)], capsys)
    assert code == 2
    assert len(captured.err.strip().splitlines()) == 1 and "error" in captured.err


def test_json_into_missing_directory_fails_before_training(tmp_path, capsys):
    code, captured = run_main(TINY + ["--json", str(tmp_path / "missing" / "run.json")], capsys)
    assert code == 2 and "summary" not in captured.out


@pytest.mark.parametrize("algo,extra", [("dp", ["--variant", "dpT", "--alpha", "0.3"]),
                                         ("ep", ["--centered", "--free-steps", "10",
                                                 "--nudged-steps", "4"]),
                                         ("bp", []),
                                         ("dp", ["--dtype", "float32", "--sweeps", "2"])])
def test_tiny_digits_run_writes_the_json(algo, extra, tmp_path, capsys):
    target = tmp_path / f"{algo}.json"
    assert main(TINY + ["--algo", algo, "--json", str(target)] + extra) == 0
    out = capsys.readouterr().out
    assert "sims.train summary" in out and "test" in out
    record = json.loads(target.read_text())
    assert REQUIRED_KEYS <= set(record)
    assert record["algo"] == algo and record["dataset"] == "digits"
    assert record["layers"] == [64, 16, 10] and record["epochs"] == 2
    assert len(record["seconds_each_epoch"]) == 2 and record["seconds_per_epoch"] > 0
    for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
        assert 0.0 <= record[key] <= 1.0
    assert record["test_accuracy"] > 0.3  # two short epochs already learn something
    if algo == "dp" and "--variant" in extra:
        assert (record["variant"], record["alpha"], record["beta"]) == ("dpT", 0.3, 0.05)
    if "--dtype" in extra:
        assert record["dtype"] == "float32" and record["sweeps"] == 2
    if algo == "ep":
        assert record["centered"] is True and record["free_steps"] == 10
    if algo == "bp":
        assert record["variant"] is None and record["beta"] is None


def test_dp_and_bp_learn_digits(tmp_path, capsys):
    """Same seed and settings: DP (small β) and BP end at nearly the same accuracy."""
    accuracies = {}
    for algo in ("dp", "bp"):
        target = tmp_path / f"{algo}.json"
        argv = ["--dataset", "digits", "--layers", "64-64-10", "--epochs", "8",
                "--batch-size", "32", "--no-progress", "--algo", algo, "--json", str(target)]
        assert main(argv) == 0
        accuracies[algo] = json.loads(target.read_text())["test_accuracy"]
    capsys.readouterr()
    assert accuracies["bp"] > 0.9 and accuracies["dp"] > 0.9
    assert abs(accuracies["dp"] - accuracies["bp"]) < 0.02


def test_command_line_process_exit_status_and_help():
    """The real entry point: status 2 and a single stderr line; --help documents defaults."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    bad = subprocess.run([sys.executable, "-m", "sims.train", "--epochs", "0"], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and bad.stdout == ""
    helped = subprocess.run([sys.executable, "-m", "sims.train", "--help"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0
    for option in ("--algo", "--variant", "--alpha", "--beta", "--sweeps", "--dataset",
                   "--data-dir", "--layers", "--activation", "--loss", "--epochs",
                   "--batch-size", "--lr", "--optimizer", "--seed", "--json", "--free-steps",
                   "--nudged-steps", "--centered", "--dtype", "(default: "):
        assert option in helped.stdout


def test_a_json_file_that_cannot_be_written_ends_in_one_line(tmp_path, capsys, monkeypatch):
    """The directory checks pass, but writing fails after training (here: the name became a
    directory meanwhile): one line on stderr and exit status 1, not a traceback."""
    import sims.train as train

    target = tmp_path / "run.json"
    real_run = train.run

    def run_then_block(args):
        record = real_run(args)
        target.mkdir()
        return record

    monkeypatch.setattr(train, "run", run_then_block)
    assert main(TINY + ["--json", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sims.train: error: cannot write --json")
