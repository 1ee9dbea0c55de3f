"""The accuracy × energy table (analogdp.training_table): spec, runs, aggregation, resume."""

import math

import pytest

from analogdp.training_table import (
    append_run,
    markdown_table,
    read_runs,
    run_id,
    table_row,
    table_rows,
    training_table,
)

BASE = {"layers": [64, 16, 10], "dataset": "digits", "epochs": 1, "settle": "equilibrium", "ode_every": 40,
        "w_max": 0.25}


def spec(*rows, **base):
    return {"base": {**BASE, **base}, "rows": list(rows)}


def test_rows_from_spec_validate_and_name_the_row():
    rows = table_rows(spec({"seeds": [0, 1], "train_examples": 50}, {"run": "digital", "algo": "bp"}))
    assert [r.label for r in rows] == ["crossbar dp", "digital bp"]
    assert [len(r.jobs()) for r in rows] == [2, 1]
    assert rows[1].config.settle == "ode" and rows[1].config.ode_every is None
    with pytest.raises(ValueError, match=r"rows\[1\].*algo"):
        table_rows(spec({"run": "digital", "algo": "ep"}))
    with pytest.raises(ValueError, match=r"rows\[1\].*unknown experiment option 'nope'"):
        table_rows(spec({"nope": 1}))
    with pytest.raises(ValueError, match="unknown table spec keys"):
        table_rows({**spec({}), "extra": 1})
    with pytest.raises(ValueError, match="rows"):
        table_rows({"base": BASE, "rows": []})


def test_table_marks_subsets_scales_their_epoch_energy_and_resumes(tmp_path):
    rows = table_rows(spec({"seeds": [0, 1], "train_examples": 80}, {"algo": "ep-centered", "train_examples": 40},
                           {"run": "digital", "algo": "dp"}))
    runs_path = tmp_path / "runs.jsonl"
    table = training_table(rows, record=lambda key, figures: append_run(runs_path, key, figures))
    dp, ep, digital = table
    assert dp["seeds"] == [0, 1] and not dp["full_epoch"] and dp["train_examples"] == 80
    assert dp["test_accuracy"] == pytest.approx(sum(dp["test_accuracy_per_seed"]) / 2)
    # a subset's energy per epoch is its energy per update × the whole training split
    assert dp["energy_per_epoch_scaled"]
    assert dp["energy_per_epoch_j"] == pytest.approx(dp["energy_per_update_j"] * dp["split_examples"])
    assert dp["settles_integrated"] == 2 * 2  # examples 0 and 40 of 80, two seeds
    assert ep["energy_per_update_j"] > dp["energy_per_update_j"]  # three settles against one
    assert digital["full_epoch"] and "energy_per_update_j" not in digital
    text = markdown_table(table)
    assert "first 80 of" in text and "(subset)" in text and "≈" in text and "(1 epoch)" in text
    # a rerun finds every run recorded and runs none again
    done = read_runs(runs_path)
    assert set(done) == {run_id(job) for row in rows for job in row.jobs()}
    ran = []
    again = training_table(rows, done=done, record=lambda key, figures: ran.append(key))
    assert ran == [] and again[0]["test_accuracy"] == dp["test_accuracy"]
    # a line cut short by a killed run is ignored
    with open(runs_path, "a") as handle:
        handle.write('{"id": "abc", "figu')
    assert read_runs(runs_path) == done


def test_failed_run_becomes_a_failed_row():
    rows = table_rows(spec({"data_dir": "/nonexistent", "dataset": "fashion-mnist", "layers": [784, 16, 10],
                            "train_examples": 10}))
    (row,) = training_table(rows)
    assert "error" in row and "test_accuracy" not in row
    assert "failed" in markdown_table([row])


def test_rows_not_run_yet_are_marked_so_and_run_ids_ignore_ideal_non_idealities():
    """A table made from the recorded runs only (no runner work) marks the rows still to run; and
    a configuration's key is the same whether its ideal wires and amplifiers (and the engine's
    default start) are spelt out or not (a run recorded before those existed keeps its key), but
    not when they are set."""
    import dataclasses
    import hashlib
    import json

    from analogdp.circuit.wires import WireParams

    rows = table_rows(spec({"train_examples": 10}))
    (row,) = training_table(rows, runner=lambda jobs: iter(()))
    assert "test_accuracy" not in row and "error" not in row
    assert "not run yet" in markdown_table([row]) and "failed" not in markdown_table([row])
    kind, algo, config = rows[0].jobs()[0]
    form = config.to_dict()
    legacy = {k: v for k, v in form.items() if k not in ("wires", "amplifier", "lead_in_tau")}
    legacy_id = hashlib.sha256(json.dumps({"kind": kind, "algo": algo, "config": legacy}, sort_keys=True,
                                          default=str).encode()).hexdigest()[:16]
    assert run_id((kind, algo, config)) == legacy_id
    wired = dataclasses.replace(config, wires=WireParams(r_row_segment_ohm=1.0, r_col_segment_ohm=1.0))
    assert run_id((kind, algo, wired)) != legacy_id
    assert run_id((kind, algo, dataclasses.replace(config, lead_in_tau=8.0))) != legacy_id


def test_full_epoch_energy_is_measured_not_scaled():
    rows = table_rows(spec({}, layers=[64, 8, 10]))
    (row,) = training_table(rows)
    assert row["full_epoch"] and not row["energy_per_epoch_scaled"]
    assert math.isfinite(row["energy_per_epoch_j"])
    assert row["energy_per_epoch_j"] == pytest.approx(row["runs"][0]["energy_epoch_j"])


def test_refreshing_device_records_its_refresh_energy_every_update():
    # a one-directional device's refresh is a programming term: known for every update, not sampled
    rows = table_rows(spec({"device_model": "pcm-nandakumar2020", "train_examples": 30}, ode_every=10))
    (row,) = training_table(rows)
    breakdown = row["runs"][0]["energy_per_update_breakdown_j"]
    assert set(breakdown) >= {"refresh", "programming", "crossbar"}
    assert all(math.isfinite(v) for v in breakdown.values())
    assert row["energy_per_update_j"] == pytest.approx(sum(breakdown.values()))


def test_a_row_counts_the_sampled_settles_where_engine_and_ode_ended_apart():
    (row,) = table_rows(spec({"seeds": [0, 1]}))
    bound_v = 1e-6 * row.config.neuron.v_read_v

    def run(seed, **figures):
        return {"seed": seed, "test_accuracy": 0.5, "val_accuracy": 0.5, "train_loss": 1.0, "train_examples": 10,
                "split_examples": 10, "epochs": 1, "wall_time_s": 1.0, "examples_per_s": 10.0, **figures}

    counted = [run(0, equilibrium_check_max_dev_v=0.4, equilibrium_check_disagreements=2, ode_samples_unsettled=1,
                   equilibrium_checks=100, settles_integrated=100),
               run(1, equilibrium_check_max_dev_v=0.1, equilibrium_check_disagreements=1, ode_samples_unsettled=0,
                   equilibrium_checks=50, settles_integrated=50)]
    assert table_row(row, counted)["equilibrium_check_disagreements"] == 3
    assert table_row(row, counted)["ode_samples_unsettled"] == 1
    assert "| 3 of 150 |" in markdown_table([table_row(row, counted)])
    # runs recorded with only their largest deviation: within the bound that is none apart ...
    legacy = [run(0, equilibrium_check_max_dev_v=0.5 * bound_v, settles_integrated=540),
              run(1, equilibrium_check_max_dev_v=0.1 * bound_v, settles_integrated=540)]
    assert table_row(row, legacy)["equilibrium_check_disagreements"] == 0
    assert "| 0 of 1,080 |" in markdown_table([table_row(row, legacy)])  # every sampled update is checked
    assert table_row(row, legacy)["ode_samples_unsettled"] is None
    # ... beyond it the count is not known
    legacy[1]["equilibrium_check_max_dev_v"] = 0.44
    assert table_row(row, legacy)["equilibrium_check_disagreements"] is None
    assert "| - |" in markdown_table([table_row(row, legacy)])


def test_a_killed_crossbar_run_resumes_from_its_checkpoint_and_the_checkpoint_goes(tmp_path):
    from analogdp.checkpoint import Checkpoint
    from analogdp.training import train_on_crossbar
    from analogdp.training_table import checkpoint_path, serial_runner

    rows = table_rows(spec({"train_examples": 60, "device_model": "rram-gong2018"}))
    job = rows[0].jobs()[0]
    whole = training_table(rows)[0]

    class Killed(Exception):
        pass

    def killed_after_25(epoch, n):
        done = [0]

        def tick(k):
            done[0] += k
            if done[0] >= 25:
                raise Killed()
        return tick

    path = checkpoint_path(tmp_path, run_id(job))
    with pytest.raises(Killed):
        train_on_crossbar(job[2], progress=killed_after_25, checkpoint=Checkpoint(path, every_s=1e-9))
    assert path.exists()
    resumed = training_table(rows, runner=lambda jobs: serial_runner(jobs, tmp_path), checkpoint_dir=tmp_path)[0]
    assert not path.exists()  # recorded: its checkpoint is removed
    for key in ("test_accuracy", "energy_per_update_j", "settling_time_s", "update_time_s", "energy_per_epoch_j"):
        assert resumed[key] == whole[key], key
    assert resumed["wall_time_s"] > 0
    # the run does read its checkpoint: an unreadable one is refused (an error row), and kept
    path.write_bytes(b"not a checkpoint")
    refused = training_table(rows, runner=lambda jobs: serial_runner(jobs, tmp_path), checkpoint_dir=tmp_path)[0]
    assert "cannot be read" in refused["error"]
    assert path.read_bytes() == b"not a checkpoint"
