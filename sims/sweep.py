"""python -m sims.sweep SPEC.toml: many configurations on Dask, recorded to a CSV as they finish.

The spec names a base configuration, the fields to vary and what to run per configuration
(see the README, "Sweeps on Dask"). By default the sweep runs on a LocalCluster of this
machine (one single-threaded worker process per core); ``--scheduler tcp://HOST:8786`` uses
an existing cluster. Rerunning the same command resumes: configurations already in the CSV
are skipped.

    python -m sims.sweep study.toml                       # -> study.csv beside the spec
    python -m sims.sweep study.toml --scheduler tcp://10.0.0.5:8786 --csv /data/study.csv
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sims.cli import (EXIT_FAILED, OneLineParser, UsageError, add_cluster_options, add_version_option,
                      print_error, run_command)

PROG = "python -m sims.sweep"


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run every configuration of a sweep spec (TOML: a base configuration, a grid of fields\n"
            "to vary, optional seeds, and run = single or compare) on Dask, appending one CSV row\n"
            "per configuration and algorithm as each finishes. Rerun the same command to resume."),
        epilog=(
            "The CSV is appended to, never replaced: that is how a rerun resumes. Exit status:\n"
            "0 done (failed configurations are rows with an error); 1 some configurations did\n"
            "not run (a worker lost, a cluster that cannot import this analogdp; not recorded, a\n"
            "rerun retries them); 2 bad input (spec, CSV of another sweep, unreachable\n"
            "scheduler); 130 interrupted; 143 terminated (rows already written stay). Example spec:\n"
            "  run = \"compare\"\n"
            "  seeds = [0, 1]\n"
            "  [base]\n"
            "  layers = [64, 32, 10]\n"
            "  samples = 8\n"
            "  [grid]\n"
            "  lr = [0.01, 0.02]\n"
            "  v_read_v = [0.1, 0.2]"))
    parser.add_argument("spec", type=Path, metavar="SPEC.toml", help="the sweep spec")
    parser.add_argument("--csv", type=Path, default=None, metavar="PATH",
                        help="the results (default: the spec's name with .csv); appended to, and resumed from")
    add_cluster_options(parser)
    add_version_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return run_command(PROG, lambda: _run(args))


def _run(args) -> int:
    if args.scheduler is not None and (args.workers is not None or args.serial):
        raise UsageError("--scheduler uses the cluster as it is: drop --workers / --serial")
    csv_path = args.csv if args.csv is not None else args.spec.with_suffix(".csv")
    parent = csv_path.parent if str(csv_path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--csv {csv_path}: directory {parent} does not exist")
    if csv_path.is_dir():
        raise UsageError(f"--csv {csv_path}: is a directory, expected a file name")
    from analogdp.distributed import dask_client, load_spec, run_sweep

    try:
        spec = load_spec(args.spec)
    except ValueError as error:
        raise UsageError(str(error)) from None
    started = time.perf_counter()

    def progress(point, rows):
        if not args.no_progress:
            where = ", ".join(f"{k} = {v}" for k, v in point.items()) or "base"
            error = rows[0].get("error")
            status = f"error: {error}" if error else f"{len(rows)} rows"
            print(f"{where}: {status}", file=sys.stderr, flush=True)

    try:
        if args.serial:
            report = run_sweep(spec, csv_path, progress=progress)
        else:
            with dask_client(args.scheduler, n_workers=args.workers) as client:
                report = run_sweep(spec, csv_path, client=client, progress=progress)
    except ConnectionError as error:  # an unreachable --scheduler
        raise UsageError(str(error)) from None
    except ValueError as error:  # a CSV of another sweep
        raise UsageError(str(error)) from None
    print(f"{report.configurations} configurations: {report.skipped} already in {csv_path}, "
          f"{report.ran} run ({report.failed} failed), {report.rows_written} rows written "
          f"in {time.perf_counter() - started:.1f} s")
    if report.lost:
        print_error(PROG, f"{report.lost} configurations did not run and are not recorded (rerun to retry "
                          f"them); first: {report.lost_error}")
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
