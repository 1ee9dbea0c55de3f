"""Resumable training runs: a run killed mid-epoch and resumed from its checkpoint ends with the
numbers of a run never stopped; checkpoints of another run, or not checkpoints at all, are
refused and left alone (small networks on the bundled digits)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from analogdp.checkpoint import Checkpoint
from analogdp.errors import CheckpointMismatch
from analogdp.experiment import ExperimentConfig
from analogdp.training import train_on_crossbar

SMALL = dict(layers=(64, 16, 10), dataset="digits", train_examples=60, beta=0.5, lr=0.05, evaluate=True)
# wall times differ between runs; everything else must not
WALL_KEYS = ("wall_time_s", "examples_per_s")


class Killed(Exception):
    pass


def killed_after(count: int):
    """A progress callback whose tick raises once ``count`` examples are done in all."""
    done = [0]

    def progress(epoch, n):
        def tick(k):
            done[0] += k
            if done[0] >= count:
                raise Killed()
        return tick
    return progress


def without_wall(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in WALL_KEYS} for r in records]


def assert_same_run(a, b):
    assert json.dumps(without_wall(a.epochs), sort_keys=True) == json.dumps(without_wall(b.epochs), sort_keys=True)
    assert a.columns.keys() == b.columns.keys()
    for name in a.columns:
        np.testing.assert_array_equal(a.columns[name], b.columns[name], err_msg=name)
    for x, y in zip(a.final_circuit.crossbars, b.final_circuit.crossbars):
        np.testing.assert_array_equal(x.g_pos_s, y.g_pos_s)
        np.testing.assert_array_equal(x.g_neg_s, y.g_neg_s)


@pytest.mark.parametrize("options", [
    # the in-place loop of the equilibrium engine (ideal devices, per-device updates)
    dict(algo="dp", settle="equilibrium", ode_every=7, epochs=2),
    # the algorithm's own step: noisy devices with their generators, read noise, EP's phases, the ODE
    dict(algo="ep-centered", settle="equilibrium", ode_every=9, epochs=1, device_model="rram-hfo2"),
    dict(algo="dp", settle="ode", epochs=1, device_model="rram-gong2018", update="pulse-coincidence"),
], ids=["dp-ideal-equilibrium", "ep-centered-hfo2", "dp-gong-coincidence-ode"])
def test_a_run_killed_and_resumed_ends_with_the_numbers_of_a_run_never_stopped(tmp_path, options):
    config = ExperimentConfig(**SMALL, **options)
    whole = train_on_crossbar(config)
    total = config.epochs * SMALL["train_examples"]
    checkpoint = Checkpoint(tmp_path / "run.checkpoint", every_s=1e-9)
    for kill_at in (total // 3, total // 3 + 17):  # killed twice: the second resume starts from a resumed run
        with pytest.raises(Killed):
            # a resumed run's bar first advances to where the run was, so the count is cumulative
            train_on_crossbar(config, progress=killed_after(kill_at), checkpoint=checkpoint)
        assert checkpoint.path.exists()
    resumed = train_on_crossbar(config, checkpoint=Checkpoint(checkpoint.path))
    assert resumed.resumed_wall_s > 0
    assert_same_run(whole, resumed)


def test_a_checkpoint_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    checkpoint = Checkpoint(tmp_path / "run.checkpoint")
    checkpoint.save({"run": 1}, {"state": 1})

    def dies(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pickle, "dump", dies)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save({"run": 1}, {"state": 2})
    monkeypatch.undo()
    assert Checkpoint(checkpoint.path).load({"run": 1}) == {"state": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.checkpoint"]  # no temporary left behind


def test_another_runs_checkpoint_is_refused_and_kept(tmp_path):
    path = tmp_path / "run.checkpoint"
    config = ExperimentConfig(**SMALL, algo="dp", settle="equilibrium", epochs=1)
    with pytest.raises(Killed):
        train_on_crossbar(config, progress=killed_after(10), checkpoint=Checkpoint(path, every_s=1e-9))
    saved = path.read_bytes()
    other = ExperimentConfig(**{**SMALL, "lr": 0.04}, algo="dp", settle="equilibrium", epochs=1)
    with pytest.raises(CheckpointMismatch, match="another run"):
        train_on_crossbar(other, checkpoint=Checkpoint(path))
    assert path.read_bytes() == saved
    path.write_bytes(b"not a pickle")
    with pytest.raises(CheckpointMismatch, match="cannot be read"):
        train_on_crossbar(config, checkpoint=Checkpoint(path))
    assert path.read_bytes() == b"not a pickle"


def test_checkpoint_saves_need_a_positive_interval(tmp_path):
    with pytest.raises(ValueError, match="every_s"):
        Checkpoint(tmp_path / "c", every_s=0.0)


def crossbar(*argv, **kwargs):
    return subprocess.run([sys.executable, "-m", "sims.crossbar", *argv], capture_output=True, text=True, **kwargs)


def test_the_command_line_resumes_a_killed_run_and_removes_its_checkpoint(tmp_path):
    checkpoint = tmp_path / "run.checkpoint"
    argv = ["--layers", "64-16-10", "--dataset", "digits", "--epochs", "1", "--train-examples", "60",
            "--settle", "equilibrium", "--no-progress", "--checkpoint", str(checkpoint)]
    whole = crossbar(*argv[:-2], "--json", str(tmp_path / "whole.json"))
    assert whole.returncode == 0, whole.stderr
    # a checkpoint of this very run, saved partway (as a killed run leaves it)
    config = ExperimentConfig(layers=(64, 16, 10), dataset="digits", epochs=1, train_examples=60,
                              settle="equilibrium")
    with pytest.raises(Killed):
        train_on_crossbar(config, progress=killed_after(25), checkpoint=Checkpoint(checkpoint, every_s=1e-9))
    resumed = crossbar(*argv, "--json", str(tmp_path / "resumed.json"))
    assert resumed.returncode == 0, resumed.stderr
    assert not checkpoint.exists()
    first, second = (json.loads((tmp_path / f"{n}.json").read_text())["training"]["per_epoch"]
                     for n in ("whole", "resumed"))
    assert without_wall(first) == without_wall(second)


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "x.checkpoint"], "--epochs"),
    (["--epochs", "1", "--checkpoint-every-s", "10"], "needs --checkpoint"),
    (["--epochs", "1", "--checkpoint", "x", "--checkpoint-every-s", "-1"], "checkpoint-every-s"),
])
def test_bad_checkpoint_options_exit_2_with_one_line(tmp_path, argv, message):
    run = crossbar("--layers", "64-16-10", "--dataset", "digits", *argv, cwd=tmp_path)
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and message in run.stderr


def test_a_foreign_checkpoint_on_the_command_line_exits_2_and_stays(tmp_path):
    checkpoint = tmp_path / "run.checkpoint"
    checkpoint.write_bytes(b"something else")
    run = crossbar("--layers", "64-16-10", "--dataset", "digits", "--epochs", "1", "--train-examples", "20",
                   "--settle", "equilibrium", "--no-progress", "--checkpoint", str(checkpoint))
    assert run.returncode == 2 and "cannot be read" in run.stderr
    assert checkpoint.read_bytes() == b"something else"
