"""The accuracy × energy table: training runs of many configurations, aggregated over seeds
(DESIGN §9.2).

A table spec (TOML, e.g. ``docs/figures/training_table.toml``) names a ``base`` configuration in
flat option names (as :meth:`ExperimentConfig.from_options` takes them) and a list of ``rows``:
each row overrides some options (``device_model``, ``algo``, ``w_max``, ``train_examples``, …),
gives its ``seeds``, and says whether it trains on the crossbar (``run = "crossbar"``) or is a
digital reference with the same schedule (``run = "digital"``, ``algo`` dp or bp).

One run is one (row, seed): :func:`table_run` trains it and returns its figures (a small dict,
so that it travels back from a Dask worker cheaply); :func:`table_row` aggregates a row's runs
(mean and spread of the test accuracy over seeds, means of the circuit figures);
:func:`markdown_table` prints the rows. A run that raises becomes a run carrying its error, and
the table shows the row as failed rather than stopping.

Subsets are never called epochs: a row over the first N < |training split| images says so
(``full_epoch`` false), and its energy per epoch is the measured energy per update × the
training split's size, flagged as scaled (``energy_per_epoch_scaled``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .experiment import ExperimentConfig
from .training import DIGITAL_ALGORITHMS

RUN_KINDS = ("crossbar", "digital")
ROW_KEYS = ("run", "label", "seeds")
SPEC_KEYS = ("base", "rows")


@dataclass(frozen=True)
class TableRow:
    """One row: a label, ``kind`` (crossbar, or digital: trained in floating point with the
    crossbar's schedule), the algorithm (crossbar: the configuration's; digital: dp or bp), the
    configuration (its ``seed`` replaced per run) and the seeds."""

    label: str
    kind: str
    algo: str
    config: ExperimentConfig
    seeds: tuple[int, ...]

    def __post_init__(self):
        if self.kind not in RUN_KINDS:
            raise ValueError(f"run must be one of {', '.join(RUN_KINDS)}, got {self.kind!r}")
        if not self.seeds or not all(isinstance(s, int) for s in self.seeds):
            raise ValueError(f"seeds must be a non-empty list of integers, got {self.seeds!r}")
        if self.config.epochs is None:
            raise ValueError("epochs: a table row trains over the dataset; set epochs in base or the row")
        if self.kind == "digital" and self.algo not in DIGITAL_ALGORITHMS:
            raise ValueError(f"algo: a digital row is one of {', '.join(DIGITAL_ALGORITHMS)}, got {self.algo!r}")
        if self.kind == "crossbar" and self.algo != self.config.algo:
            raise ValueError(f"algo: a crossbar row runs its configuration's algorithm, got {self.algo!r}")

    def jobs(self) -> list[tuple[str, str, ExperimentConfig]]:
        """One (kind, algo, configuration) per seed: what :func:`table_run` takes."""
        return [(self.kind, self.algo, dataclasses.replace(self.config, seed=seed)) for seed in self.seeds]


def load_table_spec(path) -> list[TableRow]:
    """The rows of a table spec file (module docstring). Unknown keys and bad option values
    raise ValueError naming them."""
    with open(path, "rb") as handle:
        try:
            spec = tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: not valid TOML ({error})") from None
    return table_rows(spec)


def table_rows(spec: dict) -> list[TableRow]:
    """The rows of a spec given as a dict (``base``: options, ``rows``: list of tables)."""
    unknown = set(spec) - set(SPEC_KEYS)
    if unknown:
        raise ValueError(f"unknown table spec keys {', '.join(sorted(unknown))}; known: {', '.join(SPEC_KEYS)}")
    base = dict(spec.get("base", {}))
    rows = spec.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ValueError("rows must be a non-empty list of [[rows]] tables")
    out = []
    for number, row in enumerate(rows, 1):
        options = {**base, **{k: v for k, v in row.items() if k not in ROW_KEYS}}
        if "layers" in options:
            options["layers"] = tuple(options["layers"])
        kind = row.get("run", "crossbar")
        algo = options.get("algo", "dp")
        if kind == "digital":  # trained in floating point: the circuit's options do not apply
            options.pop("ode_every", None)
            options.update(settle="ode", algo="dp")
        try:
            config = ExperimentConfig.from_options(**{**options, "evaluate": True, "digital_reference": False})
            seeds = tuple(row.get("seeds", [config.seed]))
            label = row.get("label") or f"{kind} {algo}"
            out.append(TableRow(label, kind, algo, config, seeds))
        except (TypeError, ValueError) as error:
            raise ValueError(f"rows[{number}]: {error}") from None
    return out


# left out of a run's key while at their defaults (run_id)
LEFT_OUT_WHEN_DEFAULT = ("wires", "amplifier", "lead_in_tau")
_DEFAULT_FORM = ExperimentConfig().to_dict()


def run_id(job: tuple[str, str, ExperimentConfig]) -> str:
    """A stable name of one run (a hash of its kind, algorithm and configuration's JSON form):
    the key by which a resumed table recognises runs already done.

    The non-ideality blocks (``wires``, ``amplifier``) and the engine's ``lead_in_tau`` are left
    out while they hold their defaults: a run recorded before the configuration could name them ran
    the same ideal circuit with the same engine, and keeps its key."""
    kind, algo, config = job
    form = config.to_dict()
    for name in LEFT_OUT_WHEN_DEFAULT:
        if form.get(name) == _DEFAULT_FORM[name]:
            del form[name]
    text = json.dumps({"kind": kind, "algo": algo, "config": form}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def estimated_cost(job: tuple[str, str, ExperimentConfig]) -> float:
    """Relative run time, to start the longest runs first: examples × epochs, ×3 for EP's
    phases, ×5 for devices that go through the per-step loop."""
    kind, algo, config = job
    examples = config.train_examples if config.train_examples is not None else 54_000
    factor = 3.0 if algo.startswith("ep") else 1.0
    if kind == "crossbar" and config.device_model != "ideal":
        factor *= 5.0
    return examples * config.epochs * factor


def checkpoint_path(checkpoint_dir, key: str) -> Path:
    """Where the crossbar run with :func:`run_id` ``key`` keeps its checkpoint."""
    return Path(checkpoint_dir) / f"{key}.checkpoint"


def table_run(job: tuple[str, str, ExperimentConfig], checkpoint_dir=None) -> dict:
    """Train one run and return its figures (SI units): ``test_accuracy``, ``val_accuracy``,
    ``train_examples``, ``split_examples`` (the training split's size), ``wall_time_s``,
    ``examples_per_s`` and, on the crossbar, the last epoch's ``energy_per_update_j`` (sampled
    settle + programming), ``energy_per_update_breakdown_j``, ``settling_time_s``,
    ``settles_integrated``, ``update_time_s``, ``energy_epoch_j`` (the updates actually made),
    ``equilibrium_check_max_dev_v``, ``equilibrium_checks`` and ``equilibrium_check_disagreements``
    (sampled settles, and those where the engine and the ODE ended in different states),
    ``ode_samples_unsettled`` (sampled updates whose ODE stopped short of equilibrium). A run that
    raises returns ``{"error": "Type: message"}``. With ``checkpoint_dir``, a crossbar run saves
    its state there (:func:`checkpoint_path`) and goes on from a checkpoint it finds; the wall
    time then adds up the segments."""
    from .checkpoint import Checkpoint
    from .training import load_training_data, train_digital_reference, train_on_crossbar

    kind, algo, config = job
    try:
        data = load_training_data(config)
        split = len(data.y_train)
        if config.train_examples is not None:
            split = len(load_training_data(dataclasses.replace(config, train_examples=None)).y_train)
        started = time.perf_counter()
        if kind == "digital":
            last = train_digital_reference(config, data, algo)[-1]
            figures = {}
        else:
            checkpoint = None if checkpoint_dir is None else Checkpoint(checkpoint_path(checkpoint_dir, run_id(job)))
            result = train_on_crossbar(config, data, checkpoint=checkpoint)
            started -= result.resumed_wall_s
            last = result.epochs[-1]
            figures = {key: last.get(key) for key in (
                "energy_per_update_j", "energy_per_update_breakdown_j", "settling_time_s", "settling_time_std_s",
                "settles_integrated", "update_time_s", "pulses_per_update", "equilibrium_check_max_dev_v",
                "equilibrium_checks", "equilibrium_check_disagreements", "ode_samples_unsettled")}
            figures["energy_epoch_j"] = last["energy_j"]
        wall = time.perf_counter() - started
        examples = len(data.y_train)
        return {"seed": config.seed, "test_accuracy": last["test_accuracy"], "val_accuracy": last["val_accuracy"],
                "train_loss": last["train_loss"], "train_examples": examples, "split_examples": split,
                "epochs": config.epochs, "wall_time_s": wall,
                "examples_per_s": examples * config.epochs / wall if wall > 0 else math.nan, **figures}
    except Exception as error:  # recorded in the table, and the other runs go on
        return {"seed": config.seed, "error": f"{type(error).__name__}: {error}"}


def table_row(row: TableRow, runs: list[dict]) -> dict:
    """A row's figures over its runs (one per seed, as :func:`table_run` returned them)."""
    failed = [r for r in runs if "error" in r]
    done = [r for r in runs if "error" not in r]
    out = {"label": row.label, "run": row.kind, "algo": row.algo,
           "device_model": str(row.config.device_model), "w_max": row.config.device.w_max,
           "epochs": row.config.epochs, "seeds": [r["seed"] for r in done], "runs": runs}
    if failed:
        out["error"] = failed[0]["error"]
    if not done:
        return out

    def mean(key):
        values = [r[key] for r in done if r.get(key) is not None and math.isfinite(r[key])]
        return float(np.mean(values)) if values else None

    accuracies = [r["test_accuracy"] for r in done]
    examples, split = done[0]["train_examples"], done[0]["split_examples"]
    full = examples == split
    out.update(train_examples=examples, split_examples=split, full_epoch=full,
               test_accuracy=float(np.mean(accuracies)), test_accuracy_std=float(np.std(accuracies)),
               test_accuracy_per_seed=accuracies, wall_time_s=mean("wall_time_s"),
               examples_per_s=mean("examples_per_s"))
    if row.kind == "crossbar":
        per_update = mean("energy_per_update_j")
        out.update(energy_per_update_j=per_update, settling_time_s=mean("settling_time_s"),
                   update_time_s=mean("update_time_s"), pulses_per_update=mean("pulses_per_update"),
                   settles_integrated=sum(r.get("settles_integrated") or 0 for r in done),
                   energy_per_epoch_j=(mean("energy_epoch_j") if full or per_update is None
                                       else per_update * split),
                   energy_per_epoch_scaled=not full,
                   equilibrium_check_max_dev_v=max((r["equilibrium_check_max_dev_v"] for r in done
                                                    if r.get("equilibrium_check_max_dev_v") is not None),
                                                   default=None),
                   **_engine_counts(row, done))
    return out


def _engine_counts(row: TableRow, done: list[dict]) -> dict:
    """The row's sampled updates checked against the ODE, those where the engine and the ODE
    ended in different stable states, and those whose ODE stopped short of equilibrium, summed over
    its runs. A run recorded before the counts were kept has only its largest deviation and its
    integrated settles: every sampled update was checked, and a deviation within the agreement
    bound means none ended apart; beyond it, or without samples, a count is unknown (None)."""
    from .equilibrium import EQUILIBRIUM_AGREEMENT_FRACTION

    bound_v = EQUILIBRIUM_AGREEMENT_FRACTION * row.config.neuron.v_read_v

    def checked(r):
        return r.get("settles_integrated") if r.get("equilibrium_check_max_dev_v") is not None else None

    def apart(r):
        deviation = r.get("equilibrium_check_max_dev_v")
        return 0 if deviation is not None and deviation <= bound_v else None

    return {"equilibrium_checks": _summed(done, "equilibrium_checks", checked),
            "equilibrium_check_disagreements": _summed(done, "equilibrium_check_disagreements", apart),
            "ode_samples_unsettled": _summed(done, "ode_samples_unsettled")}


def _summed(done: list[dict], key: str, recorded_before=lambda run: None) -> int | None:
    """Σ over the runs of ``key``, taken from ``recorded_before(run)`` where a run lacks it; None as
    soon as one run has neither."""
    total = 0
    for run in done:
        value = run.get(key)
        if value is None:
            value = recorded_before(run)
        if value is None:
            return None
        total += value
    return total


def training_table(rows: list[TableRow], *, runner=None, done: dict | None = None, record=None,
                   progress=None, checkpoint_dir=None) -> list[dict]:
    """Every row's figures. ``runner(jobs)`` yields ``(index, figures)`` as runs finish (default:
    here, one after the other; :func:`dask_runner` on a Dask client); ``done`` maps
    :func:`run_id` to the figures of runs already made (skipped); ``record(run_id, figures)`` is
    called as each new run finishes; ``progress(text)`` for a line per run. A run's checkpoint in
    ``checkpoint_dir`` (the runner's, see :func:`table_run`) is removed once it is recorded."""
    done = dict(done or {})
    jobs = [job for row in rows for job in row.jobs()]
    pending = [job for job in dict.fromkeys(jobs, None) if run_id(job) not in done]
    pending.sort(key=lambda job: -estimated_cost(job))
    runner = serial_runner if runner is None else runner
    for index, figures in runner(pending):
        key = run_id(pending[index])
        done[key] = figures
        if record is not None:
            record(key, figures)
        if checkpoint_dir is not None and "error" not in figures:
            checkpoint_path(checkpoint_dir, key).unlink(missing_ok=True)
        if progress is not None:
            kind, algo, config = pending[index]
            status = figures.get("error") or f"test accuracy {100 * figures['test_accuracy']:.2f} %"
            progress(f"{kind} {algo} {config.device_model} w_max {config.device.w_max:g} "
                     f"seed {config.seed}: {status}")
    return [table_row(row, [done[key] for key in map(run_id, row.jobs()) if key in done]) for row in rows]


def serial_runner(jobs, checkpoint_dir=None):
    for index, job in enumerate(jobs):
        yield index, table_run(job, checkpoint_dir)


def dask_runner(client, checkpoint_dir=None):
    """Runs on a Dask client's workers, each run one task, collected as they finish."""
    def run(jobs):
        from distributed import as_completed

        futures = {client.submit(table_run, job, checkpoint_dir, pure=False, priority=len(jobs) - i): i
                   for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            yield futures[future], future.result()
    return run


def read_runs(path) -> dict:
    """Runs recorded by an earlier (possibly killed) table run: one JSON object per line
    (``{"id": ..., "figures": ...}``); a line cut short is ignored."""
    done = {}
    path = Path(path)
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "error" not in entry["figures"]:  # failed runs are retried
            done[entry["id"]] = entry["figures"]
    return done


def append_run(path, key: str, figures: dict) -> None:
    """One run's line, appended whole and synced (a killed table run keeps what finished)."""
    import os

    from .units import jsonable

    with open(path, "a") as handle:
        handle.write(json.dumps({"id": key, "figures": jsonable(figures)}) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _disagreement_cell(row: dict) -> str:
    """Sampled updates where the equilibrium engine and the ODE ended in different stable states:
    'n of m', or just n where the runs predate the count of samples, '-' where unknown."""
    apart, checks = row.get("equilibrium_check_disagreements"), row.get("equilibrium_checks")
    if apart is None:
        return "-"
    return f"{apart:,} of {checks:,}" if checks is not None else f"{apart:,}"


def markdown_table(rows: list[dict]) -> str:
    """The rows as Markdown: accuracy as mean ± spread over seeds (n), circuit figures with SI
    prefixes, '-' where a digital row has none; subsets are marked in the examples column and
    their energy per epoch (scaled from the energy per update) with '≈'; the sampled updates
    where engine and ODE ended apart (DESIGN §9)."""
    from .units import si

    lines = ["| run | device | w_max | training images | test accuracy (seeds) | energy / update (sampled) "
             "| settling time (sampled) | update time | energy / epoch | engine ≠ ODE (sampled) | wall time / run |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        crossbar = r["run"] == "crossbar"
        device = r["device_model"] if crossbar else "-"
        w_max = f"{r['w_max']:g}" if crossbar else "-"
        if "test_accuracy" not in r:
            status = f"failed: {r['error']}" if r.get("error") else "not run yet"
            lines.append(f"| {r['label']} | {device} | {w_max} | - | {status} | - | - | - | - | - | - |")
            continue
        epochs = r["epochs"]
        if r["full_epoch"]:
            examples = f"{r['train_examples']:,} ({epochs} epoch{'s' if epochs > 1 else ''})"
        else:
            examples = f"first {r['train_examples']:,} of {r['split_examples']:,} (subset)"
        n = len(r["seeds"])
        spread = f" ± {100 * r['test_accuracy_std']:.2f}" if n > 1 else ""
        cells = [r["label"], device, w_max, examples, f"{100 * r['test_accuracy']:.2f} %{spread} ({n})"]
        if crossbar:
            energy_epoch = si(r["energy_per_epoch_j"], "J")
            cells += [si(r["energy_per_update_j"], "J"), si(r["settling_time_s"], "s"), si(r["update_time_s"], "s"),
                      ("≈ " + energy_epoch) if r["energy_per_epoch_scaled"] else energy_epoch,
                      _disagreement_cell(r)]
        else:
            cells += ["-"] * 5
        cells.append(si(r["wall_time_s"], "s"))
        if r.get("error"):
            cells[-1] += f" ({len(r['runs']) - n} failed: {r['error']})"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
