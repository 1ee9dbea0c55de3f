"""The accuracy × energy table of the README: the rows of a table spec (default
docs/figures/training_table.toml: Fashion-MNIST, 784-256-10, every device preset × DP and
centered EP on the crossbar, digital DP and BP with the same online schedule), each row's runs
(one per seed) on a Dask LocalCluster or here, aggregated over seeds.

    python benchmarks/training_table.py [SPEC.toml] [--json docs/figures/training_table.json]
        [--runs RUNS.jsonl] [--workers 2 | --serial | --recorded-only]

Each finished run is appended to RUNS.jsonl (default: the JSON output's name with
.runs.jsonl) as it finishes; a rerun skips the runs recorded there (a killed table resumes;
delete the file to measure afresh). A crossbar run also saves its state now and then in
RUNS.checkpoints/ (``--checkpoint-dir``) and a rerun goes on from there: a killed run loses
minutes, not hours. Prints the Markdown table, then as its last line one JSON
object with every row.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analogdp.report import write_json  # noqa: E402
from analogdp.training_table import (  # noqa: E402
    append_run,
    dask_runner,
    load_table_spec,
    markdown_table,
    read_runs,
    serial_runner,
    table_run,
    training_table,
)
from analogdp.units import jsonable  # noqa: E402

DEFAULT_SPEC = Path(__file__).resolve().parents[1] / "docs" / "figures" / "training_table.toml"


def warm_numba_cache(rows) -> None:
    """Compile what every kind of run uses once, here, before the workers start (so that they
    load numba's cache rather than race to write it): a tiny copy of each kind of row."""
    kinds = {}
    for row in rows:
        kinds.setdefault((row.kind, row.algo, str(row.config.device_model)), row)
    for row in kinds.values():
        config = row.config
        tiny = dataclasses.replace(config, layers=(config.layers[0], 8, config.layers[-1]), train_examples=3,
                                   ode_every=1 if config.ode_every is not None else None)
        table_run((row.kind, row.algo, tiny))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, nargs="?", default=DEFAULT_SPEC)
    parser.add_argument("--json", type=Path, default=None, help="write the rows here (atomically)")
    parser.add_argument("--runs", type=Path, default=None,
                        help="finished runs, appended and resumed from (default: beside --json)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the Dask LocalCluster")
    parser.add_argument("--serial", action="store_true", help="run here, one run after the other (no Dask)")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="crossbar runs save their state here and resume from it when killed "
                             "(default: RUNS.checkpoints beside the runs file)")
    parser.add_argument("--recorded-only", action="store_true",
                        help="run nothing: the table of the runs already recorded, rows still to run marked so")
    args = parser.parse_args()
    try:
        rows = load_table_spec(args.spec)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    runs_path = args.runs
    if runs_path is None and args.json is not None:
        runs_path = args.json.with_suffix(".runs.jsonl")
    done = read_runs(runs_path) if runs_path is not None else {}
    checkpoint_dir = args.checkpoint_dir
    if checkpoint_dir is None and runs_path is not None:
        checkpoint_dir = runs_path.with_name(runs_path.name.removesuffix(".jsonl") + ".checkpoints")

    def record(key, figures):
        if runs_path is not None:
            append_run(runs_path, key, figures)

    def progress(text):
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    if args.recorded_only:
        table = training_table(rows, runner=lambda jobs: iter(()), done=done)
    elif args.serial:
        table = training_table(rows, runner=lambda jobs: serial_runner(jobs, checkpoint_dir), done=done,
                               record=record, progress=progress, checkpoint_dir=checkpoint_dir)
    else:
        from analogdp.distributed import dask_client

        warm_numba_cache(rows)
        with dask_client(n_workers=args.workers) as client:
            table = training_table(rows, runner=dask_runner(client, checkpoint_dir), done=done, record=record,
                                   progress=progress, checkpoint_dir=checkpoint_dir)
    print(markdown_table(table))
    print(f"{sum(len(r['runs']) for r in table)} runs ({len(done)} recorded before) in "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.json is not None:
        write_json(args.json, jsonable({"spec": str(args.spec.name), "rows": table}))
    print(json.dumps(jsonable(table)))


if __name__ == "__main__":
    main()
