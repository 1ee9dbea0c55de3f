"""Sweeps of many configurations on Dask distributed, recorded to a CSV as they finish.

    spec = load_spec("study.toml")            # base configuration, grid, seeds, what to run
    with dask_client() as client:             # a LocalCluster here, or dask_client("tcp://host:8786")
        run_sweep(spec, "study.csv", client=client)

- :class:`SweepSpec` (from a TOML file, :func:`load_spec`): a base configuration in flat option
  names (as :meth:`ExperimentConfig.from_options` takes them), a grid of fields to vary (every
  combination is run), optional seeds, and what to run per configuration: ``single`` (the
  configuration's own algorithm) or ``compare`` (DP, EP and centered EP on the same weights and
  examples). Every configuration is built and validated when the spec is loaded, so bad values
  are reported before any work.
- :func:`dask_client`: a ``LocalCluster`` of single-threaded worker processes, one per core, or a
  connection to an existing scheduler (which is used as it is); an unreachable address fails
  within its time-out.
- :func:`run_sweep`: warms the numba cache in this process (so that the workers only load it),
  then runs the configurations that are not yet in the CSV through
  :func:`analogdp.experiment.sweep_as_completed` and appends each configuration's rows (one per
  algorithm) as whole lines, flushed, as soon as it finishes. Rerunning resumes: rows already
  recorded are skipped, and a line cut short by a killed run is dropped first. A configuration
  that raises is recorded as rows carrying the error, and the sweep goes on.

DESIGN §9: numba compiles per worker process, so the cache is compiled and written once before
the workers start, and each worker runs one thread.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import hashlib
import io
import itertools
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .experiment import (
    ExperimentConfig,
    experiment_summary,
    sweep,
    sweep_as_completed,
    timed_comparison,
)
from .names import ALGORITHMS, PHASES, SINGLE_PHASE, UPDATE_ENERGY_TERMS
from .report import atomic_path

RUN_MODES = ("single", "compare")
SPEC_KEYS = ("run", "base", "grid", "seeds")
# A scheduler that does not answer within this is reported unreachable (well under the 10 s a
# user waits before suspecting a hang).
CONNECT_TIMEOUT_S = 5.0
# Figures recorded per configuration and algorithm, after the identifying columns (SI units,
# the unit in the name); the phases and energy terms an algorithm lacks are left blank.
FIGURE_COLUMNS = (
    "samples", "settling_time_s", "settling_time_1pct_s",
    *(f"settling_time_{phase}_s" for phase in PHASES),
    "energy_per_update_j", *(f"energy_{term}_j" for term in UPDATE_ENERGY_TERMS),
    "energy_per_inference_j", "energy_per_mac_j", "macs_per_update", "pulses_per_update",
    "fixed_point_error_v", "loss_first", "loss_last", "not_settled", "wall_time_s", "error")


# ------------------------------------------------------------------------------------------
# The spec


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: ``base`` options, the ``grid`` of fields to vary (name → list of values, every
    combination), optional ``seeds`` (one more grid axis), and ``run`` (single or compare)."""

    base: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None
    run: str = "single"

    def __post_init__(self):
        if self.run not in RUN_MODES:
            raise ValueError(f"run must be one of {', '.join(RUN_MODES)}, got {self.run!r}")
        if not isinstance(self.base, dict):
            raise ValueError(f"base must be a table of experiment options, got {self.base!r}")
        if not isinstance(self.grid, dict):
            raise ValueError(f"grid must be a table of field = [values], got {self.grid!r}")
        for name, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid.{name} must be a non-empty list of values, got {values!r}")
        if self.seeds is not None:
            seeds = self.seeds
            if not isinstance(seeds, (list, tuple)) or not seeds:
                raise ValueError(f"seeds must be a non-empty list of integers, got {seeds!r}")
            if "seed" in self.grid or "seed" in self.base:
                raise ValueError("seeds: give the seeds either as seeds = [...] or as seed in base/grid, not both")
            object.__setattr__(self, "seeds", tuple(seeds))
        if self.run == "compare" and "algo" in {**self.base, **self.grid}:
            raise ValueError("algo: run = compare runs dp, ep and ep-centered on every configuration (drop algo)")
        overlap = set(self.base) & set(self.grid)
        if overlap:
            raise ValueError(f"{', '.join(sorted(overlap))}: named in both base and grid")
        self.configurations()  # every configuration validates now, before any work

    @property
    def varied(self) -> list[str]:
        """The option names that vary across the configurations (the CSV's identifying columns)."""
        return list(self.grid) + (["seed"] if self.seeds is not None else [])

    @property
    def algorithms(self) -> tuple[str, ...] | None:
        """The algorithms each configuration records (None: the configuration's own)."""
        return ALGORITHMS if self.run == "compare" else None

    def points(self) -> list[dict]:
        """The varied options of every configuration, the grid's last field fastest."""
        axes = dict(self.grid)
        if self.seeds is not None:
            axes["seed"] = list(self.seeds)
        return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]

    def configurations(self) -> list[ExperimentConfig]:
        """Every configuration of the grid; ValueError names the first one refused."""
        configs = []
        for point in self.points():
            try:
                configs.append(ExperimentConfig.from_options(**self.base, **point))
            except (TypeError, ValueError) as error:
                where = ", ".join(f"{k} = {_cell(v)}" for k, v in point.items()) or "base"
                raise ValueError(f"configuration {where}: {error}") from None
        return configs


def load_spec(path) -> SweepSpec:
    """A :class:`SweepSpec` from a TOML file. Raises ValueError (naming the file) for a file
    that is missing, not TOML, or describes a sweep that cannot run."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"{path}: cannot read the spec ({error.strerror or error})") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML ({error})") from None
    unknown = set(data) - set(SPEC_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown spec keys {', '.join(sorted(unknown))} "
                         f"(expected {', '.join(SPEC_KEYS)})")
    try:
        return SweepSpec(base=data.get("base", {}), grid=data.get("grid", {}), seeds=data.get("seeds"),
                         run=data.get("run", "single"))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def config_id(config: ExperimentConfig) -> str:
    """A short stable name of a configuration (a hash of its JSON form): the key by which a
    resumed sweep recognises rows already recorded."""
    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------
# Rows


def csv_columns(spec: SweepSpec) -> list[str]:
    """config_id, the varied options (algo and samples have columns of their own), algo, figures."""
    varied = [name for name in spec.varied if name != "algo" and name not in FIGURE_COLUMNS]
    return ["config_id", *varied, "algo", *FIGURE_COLUMNS]


def outcome_rows(spec: SweepSpec, config: ExperimentConfig, point: dict, outcome: dict) -> list[dict]:
    """The rows of one configuration: one per algorithm (``compare``) or one (``single``); a
    failed configuration's rows carry only their identity and ``error``."""
    identity = {"config_id": config_id(config), **{name: _cell(value) for name, value in point.items()
                                                   if name != "algo" and name not in FIGURE_COLUMNS}}
    algorithms = spec.algorithms or (config.algo,)
    if "error" in outcome:
        return [{**identity, "algo": algo, "error": outcome["error"]} for algo in algorithms]
    if spec.run == "compare":
        comparison = outcome["compare"]
        return [{**identity, "algo": algo, "samples": comparison["samples"],
                 **_figure_cells(comparison[algo]), "wall_time_s": outcome["wall_time_s"]}
                for algo in algorithms]
    return [{**identity, "algo": outcome["algo"], "samples": outcome["samples"], **_figure_cells(outcome),
             "wall_time_s": outcome["wall_time_s"]}]


def _figure_cells(figures: dict) -> dict:
    # one settle per update: the summary keeps its time as settling_time_s alone
    phases = figures.get("settling_time_per_phase_s", {SINGLE_PHASE: figures["settling_time_s"]})
    cells = {key: figures[key] for key in (
        "settling_time_s", "settling_time_1pct_s", "energy_per_update_j", "energy_per_inference_j",
        "energy_per_mac_j", "macs_per_update", "pulses_per_update", "fixed_point_error_v", "loss_first",
        "loss_last", "not_settled")}
    cells.update({f"settling_time_{phase}_s": time for phase, time in phases.items()})
    cells.update({f"energy_{term}_j": energy for term, energy in figures["energy_breakdown_j"].items()})
    return cells


def _cell(value) -> str | int | float:
    """A CSV cell: sizes as 784x256, floats as their shortest exact repr, NaN blank."""
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return value


def _line(columns: list[str], row: dict) -> str:
    unknown = set(row) - set(columns)
    if unknown:
        raise ValueError(f"row has columns the CSV lacks: {', '.join(sorted(unknown))}")
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([_cell(row.get(name, "")) for name in columns])
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------
# The CSV: resumable, appended a configuration at a time


def recorded_rows(path, columns: list[str], expected: dict[str, tuple[str, ...] | None]) -> dict[str, list[str]]:
    """The complete configurations already in the CSV at ``path`` (config_id → its lines),
    after dropping what a killed run may have left: a last line without its newline, and the
    rows of a configuration missing some of its algorithms. Rewrites the file (atomically)
    when it drops anything; creates it with its header when absent. ``expected`` maps each
    config_id of the spec to its algorithms (None: any one row completes it)."""
    path = Path(path)
    header = _line(columns, {name: name for name in columns})
    if not path.exists() or path.stat().st_size == 0:
        with atomic_path(path) as temporary:
            temporary.write_text(header)
        return {}
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if not lines or lines[0] != header:
        raise ValueError(f"{path}: its header is not this spec's columns (a CSV of another sweep?); "
                         f"give another --csv or remove it")
    body = [line for line in lines[1:] if line.endswith("\n")]  # a cut-short last line goes
    by_config: dict[str, list[str]] = {}
    algos: dict[str, set[str]] = {}
    algo_column = columns.index("algo")
    for line in body:
        cells = next(csv.reader([line]))
        if len(cells) != len(columns):
            raise ValueError(f"{path}: a row has {len(cells)} cells, the header {len(columns)}")
        by_config.setdefault(cells[0], []).append(line)
        algos.setdefault(cells[0], set()).add(cells[algo_column])
    complete = {}
    for key, config_lines in by_config.items():
        wanted = expected.get(key)
        if key not in expected or wanted is None or algos[key] >= set(wanted):
            complete[key] = config_lines  # rows of configurations outside this spec are kept
    kept = [line for config_lines in complete.values() for line in config_lines]
    if len(kept) != len(lines) - 1:
        with atomic_path(path) as temporary:
            temporary.write_text(header + "".join(kept))
    return complete


class RowAppender:
    """Appends whole lines to the CSV, each configuration's rows in one write, flushed and
    synced, so that a killed run leaves at most one cut-short line at the end (which
    :func:`recorded_rows` drops)."""

    def __init__(self, path, columns: list[str]):
        self.columns = columns
        self._handle = Path(path).open("a", newline="")

    def append(self, rows: list[dict]) -> None:
        self._handle.write("".join(_line(self.columns, row) for row in rows))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


# ------------------------------------------------------------------------------------------
# Running


def guarded(task: Callable[[ExperimentConfig], dict], config: ExperimentConfig) -> dict:
    """``task(config)``, or ``{"error": "Type: message"}`` when it raises (so that one failing
    configuration does not end a sweep)."""
    try:
        return task(config)
    except Exception as error:  # recorded in the CSV, whatever it is
        return {"error": error_text(error)}


def error_text(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


def task_of(spec: SweepSpec) -> Callable[[ExperimentConfig], dict]:
    return timed_comparison if spec.run == "compare" else experiment_summary


def warm_numba_cache(configs: list[ExperimentConfig], task: Callable[[ExperimentConfig], dict]) -> int:
    """Compile (and write to numba's on-disk cache) every kernel the configurations use, by
    running ``task`` once on a tiny copy of each distinct kind of configuration (the same
    choices of model, algorithm and periphery, and depth; numbers may differ, as numba
    specialises on types, not values; 2 examples of random data on a few neurons). Workers
    started afterwards load the cache instead of compiling it together. Returns how many tiny
    runs it made."""
    kinds = {}
    for config in configs:
        depth = len(config.layers) - 2
        tiny = dataclasses.replace(config, layers=(4,) + (3,) * depth + (2,), size=None, samples=2,
                                   dataset="random", data_dir=None, seed=0)
        kinds.setdefault(json.dumps(_kind(tiny.to_dict()), sort_keys=True), tiny)
    for tiny in kinds.values():
        guarded(task, tiny)  # a configuration that fails fails again in the sweep, recorded there
    return len(kinds)


def _kind(value):
    """``value`` (JSON data) with every number replaced by its type: what selects the code."""
    if isinstance(value, dict):
        return {key: _kind(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_kind(item) for item in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return type(value).__name__
    return value


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, *, n_workers: int | None = None,
                timeout_s: float = CONNECT_TIMEOUT_S) -> Iterator:
    """A ``dask.distributed`` client: of the scheduler at ``scheduler`` (e.g. tcp://host:8786,
    used as it is), or of a new ``LocalCluster`` of ``n_workers`` (default: one per core)
    single-threaded worker processes, closed on leaving. Raises ConnectionError when the
    scheduler does not answer within ``timeout_s``."""
    if scheduler is not None:
        check_reachable(scheduler, timeout_s)
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=timeout_s)
        except Exception as error:  # refused, timed out, or something that is not a scheduler
            raise ConnectionError(f"scheduler {scheduler}: no dask scheduler answered within {timeout_s:g} s "
                                  f"({error_text(error)[:200]})") from None
        with client:
            yield client
        return
    if n_workers is None:
        n_workers = os.cpu_count() or 1
    if n_workers < 1:
        raise ValueError(f"n_workers must be at least 1, got {n_workers}")
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ConnectionError unless something accepts a TCP connection at ``address``
    (tcp://HOST:PORT or tls://HOST:PORT; other protocols are left to Dask). A plain socket,
    before Dask is imported (seconds on a busy machine), so that a wrong address is told at once."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls"):
        return
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or port is None:
        raise ConnectionError(f"scheduler {address}: expected tcp://HOST:PORT")
    try:
        connection = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as error:
        raise ConnectionError(f"scheduler {address}: not reachable within {timeout_s:g} s "
                              f"({error.strerror or error})") from None
    with connection:
        if parts.scheme != "tcp":
            return  # TLS: the client speaks first
        # A Dask scheduler sends its handshake as soon as it accepts; a peer that stays silent
        # would leave the client waiting for it without a time limit.
        try:
            greeting = connection.recv(1)
        except OSError:
            greeting = b""
        if not greeting:
            raise ConnectionError(f"scheduler {address}: no dask scheduler answered within {timeout_s:g} s "
                                  f"(something accepts connections there but does not speak Dask)")


def client_map(client) -> tuple[Callable, Callable]:
    """The (map, as_completed) pair of a Dask client for :func:`sweep_as_completed`: every task
    its own future (not merged with an equal one), started in the order given (the scheduler
    orders tasks of equal priority by its own graph order, so each gets a priority), results
    collected as they finish."""
    from distributed import as_completed

    def submit_all(task, configs):
        return [client.submit(task, config, pure=False, priority=len(configs) - position)
                for position, config in enumerate(configs)]

    return submit_all, as_completed


def estimated_cost(config: ExperimentConfig) -> int:
    """A relative estimate of a configuration's run time: updates × cross points × crossbars
    (deeper networks also settle more slowly)."""
    shapes = config.crossbar_shapes
    return config.samples * sum(rows * columns for rows, columns in shapes) * len(shapes)


def stream(configs: list[ExperimentConfig], task: Callable[[ExperimentConfig], dict], *, client=None,
           on_error: Callable[[int, BaseException], object] | None = None) -> Iterator[tuple[int, dict]]:
    """``(index, task(config))`` for every configuration as each finishes: on the client's
    workers, or here one after the other (``client`` None). The client gets the largest
    configurations first, so that the longest ones do not start last and leave the other
    workers idle at the end."""
    if client is None:
        if on_error is None:
            yield from enumerate(sweep(configs, task=task))
            return
        for index, config in enumerate(configs):
            try:
                yield index, task(config)
            except Exception as error:
                yield index, on_error(index, error)
        return
    order = sorted(range(len(configs)), key=lambda i: -estimated_cost(configs[i]))
    submit_all, as_completed = client_map(client)
    for position, outcome in sweep_as_completed(
            [configs[i] for i in order], map=submit_all, as_completed=as_completed, task=task,
            on_error=None if on_error is None else lambda position, error: on_error(order[position], error)):
        yield order[position], outcome


@dataclass
class SweepReport:
    """What :func:`run_sweep` did: configurations in the spec, already recorded, run now, failed."""

    configurations: int
    skipped: int
    ran: int = 0
    failed: int = 0
    rows_written: int = 0
    # configurations whose task never ran to an outcome (a lost worker, a scheduler or worker
    # that cannot load the task): not recorded, so that a rerun retries them
    lost: int = 0
    lost_error: str = ""


def run_sweep(spec: SweepSpec, csv_path, *, client=None,
              progress: Callable[[dict, list[dict]], None] | None = None,
              warm: bool = True, task: Callable[[ExperimentConfig], dict] | None = None) -> SweepReport:
    """Run the configurations of ``spec`` not yet recorded in ``csv_path`` (on the client's
    workers, or here when ``client`` is None) and append their rows as each finishes.
    ``progress(point, rows)`` is called after each configuration is recorded. ``task``
    replaces what ``spec.run`` runs (it must return what that task returns)."""
    configs = spec.configurations()
    points = spec.points()
    keys = [config_id(config) for config in configs]
    # equal configurations (a grid naming a value twice) run once
    unique = list(dict.fromkeys(keys))
    first_index = {key: keys.index(key) for key in unique}
    columns = csv_columns(spec)
    expected = {key: spec.algorithms or (configs[first_index[key]].algo,) for key in unique}
    done = recorded_rows(csv_path, columns, expected)
    pending = [first_index[key] for key in unique if key not in done]
    report = SweepReport(configurations=len(unique), skipped=len(unique) - len(pending))
    if not pending:
        return report
    task = task_of(spec) if task is None else task
    if warm:
        warm_numba_cache([configs[i] for i in pending], task)
    appender = RowAppender(csv_path, columns)
    try:
        # the task's own errors come back as {"error": ...}; what fails around it (a worker
        # lost on the way, a task the cluster cannot load) arrives through on_error
        for position, outcome in stream([configs[i] for i in pending], functools.partial(guarded, task),
                                        client=client,
                                        on_error=lambda _, error: {"lost": error_text(error)}):
            index = pending[position]
            if "lost" in outcome:
                report.lost += 1
                report.lost_error = report.lost_error or outcome["lost"]
                continue
            rows = outcome_rows(spec, configs[index], points[index], outcome)
            appender.append(rows)
            report.ran += 1
            report.failed += "error" in outcome
            report.rows_written += len(rows)
            if progress is not None:
                progress(points[index], rows)
    finally:
        appender.close()
    return report
