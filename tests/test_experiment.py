"""analogdp.experiment: the configuration, the run, the comparison and sweeps from Python."""

from __future__ import annotations

import dataclasses
import json
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from analogdp.circuit import DeviceParams, NeuronParams
from analogdp.experiment import (ExperimentConfig, compare_algorithms, experiment_summary, load_examples,
                                 run_experiment, sweep)

SMALL = ExperimentConfig(layers=(16, 8, 10), dataset="random", samples=4)
UNPINNED = ("wall_time_s", "wall_time_breakdown_s")


def without_wall_times(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in UNPINNED}


def test_config_round_trips_through_json_and_pickle():
    config = dataclasses.replace(SMALL, algo="ep-centered", beta=0.3, device=DeviceParams(g_max_s=2e-5),
                                 neuron=NeuronParams(v_read_v=0.1), size=(16, 8), dataset="mnist",
                                 data_dir="/tmp")
    assert ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert pickle.loads(pickle.dumps(config)) == config


@pytest.mark.parametrize("change, message", [
    (dict(algo="bp"), "algo"), (dict(beta=float("nan")), "beta"), (dict(lr=-1.0), "lr"),
    (dict(alpha=1.5), "alpha"), (dict(samples=0), "samples"), (dict(seed=-1), "seed"),
    (dict(algo="ep", beta=1.0), "β below 1"), (dict(size=(8, 16)), "not a crossbar"),
    (dict(layers=(16,)), "two layers"), (dict(layers=(16, 8, 7), dataset="digits"), "classes"),
    (dict(dataset="mnist"), "data_dir"), (dict(samples=10**9, layers=(784, 8, 10)), "GB"),
])
def test_config_validates_itself(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SMALL, **change)


def test_flat_options_reach_the_parameter_groups():
    config = ExperimentConfig.from_options(layers=(16, 8, 10), v_read_v=0.3, g_min_s=1e-6, e_pulse_j=1e-12)
    assert config.neuron.v_read_v == 0.3 and config.device.g_min_s == 1e-6
    assert config.programming_params.e_pulse_j == 1e-12
    assert config.programming_params.delta_g_per_pulse_s == pytest.approx((10e-6 - 1e-6) / 64)
    with pytest.raises(ValueError, match="unknown experiment option 'v_read'"):
        ExperimentConfig.from_options(v_read=0.3)


def test_result_summary_and_outputs(tmp_path):
    result = run_experiment(SMALL)
    summary = result.summary()
    assert summary["samples"] == 4 and summary["layers"] == [16, 8, 10] and summary["algo"] == "dp"
    assert sum(summary["energy_breakdown_j"].values()) == pytest.approx(summary["energy_per_update_j"])
    result.to_npz(tmp_path / "run.npz")
    result.to_csv(tmp_path / "run.csv")
    import numpy as np

    with np.load(tmp_path / "run.npz") as arrays:
        assert arrays["history_loss"].shape == (4,)
    assert len((tmp_path / "run.csv").read_text().splitlines()) == 5
    assert not list(tmp_path.glob(".*part"))  # no temporary file left behind


def test_same_config_same_summary_and_given_examples_are_used():
    first = without_wall_times(run_experiment(SMALL).summary())
    examples = load_examples(SMALL)
    again = without_wall_times(run_experiment(SMALL, examples).summary())
    assert first == again
    examples.targets[:] = examples.targets[::-1]
    assert without_wall_times(run_experiment(SMALL, examples).summary()) != first


def test_compare_reuses_a_run_and_gives_the_same_figures():
    fresh = compare_algorithms(SMALL, algorithms=("dp", "ep"))
    reused = compare_algorithms(SMALL, algorithms=("dp", "ep"), reuse=run_experiment(SMALL))
    assert fresh["dp"] == reused["dp"] and fresh["ep"] == reused["ep"]
    assert set(fresh["ratios"]) == {"ep_over_dp"}


def test_sweep_through_a_process_pool_gives_the_serial_summaries():
    configs = [dataclasses.replace(SMALL, seed=seed, algo=algo) for seed in (0, 1) for algo in ("dp", "ep")]
    serial = [without_wall_times(s) for s in sweep(configs)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        parallel = [without_wall_times(s) for s in sweep(configs, map=pool.map)]
    assert parallel == serial
    assert serial[0] != serial[2]  # the seed matters: the comparison is not vacuous
    assert serial[0] == without_wall_times(experiment_summary(configs[0]))


def test_sweep_takes_only_configurations():
    with pytest.raises(TypeError, match="ExperimentConfig"):
        sweep([{"layers": (16, 8, 10)}])


def test_an_inference_settle_that_stops_short_is_reported_not_counted(monkeypatch):
    import math

    from analogdp import algorithms, report
    from analogdp.solver import SettleCriteria, settle

    def short_inference(self, circuit, x):  # the real settle, with a step limit it cannot meet
        return settle(self.programmer.seen_circuit(circuit), x, None, allow_unsettled=True,
                      criteria=SettleCriteria(max_steps=3))

    monkeypatch.setattr(algorithms._Programmed, "inference", short_inference)
    result = run_experiment(ExperimentConfig(layers=(16, 8, 10), dataset="digits", samples=2))
    assert math.isnan(result.energy_per_inference_j)
    assert "step limit" in result.inference_not_settled
    summary = result.summary()
    assert math.isnan(summary["energy_per_inference_j"])  # null in the JSON
    assert any("inference settle" in problem for problem in report.run_problems(summary))


def test_finite_amplifiers_report_a_settled_inference_energy():
    from analogdp.circuit.amplifiers import AmplifierParams

    config = ExperimentConfig(layers=(16, 8, 10), dataset="digits", samples=2,
                              amplifier=AmplifierParams(a0_db=60.0, gbw_hz=100e6))
    result = run_experiment(config)
    assert result.inference_not_settled is None
    assert result.energy_per_inference_j > 0
