"""python -m sims.compare: energy per update and settling time of DP, EP and centered EP on
the same crossbars, swept over crossbar size and network depth.

For every crossbar size R x C and depth d (hidden layers), the network is R x C x ... x C x 10
(d hidden layers of C neurons); the three algorithms learn from the same examples, one at a
time, starting from the same initial weights, exactly as ``python -m sims.crossbar --compare``
does (both call :func:`analogdp.experiment.compare_algorithms`). The configurations run on Dask
as ``python -m sims.sweep`` runs them (:mod:`analogdp.distributed`): a LocalCluster of one
single-threaded worker process per core by default, ``--scheduler`` for an existing cluster,
``--serial`` in this process. Writes a CSV with one row per (size, depth, algorithm) and a plot
of energy per update and settling time against size. All figures are SI; column names carry
the unit (``_s``, ``_j``, ``_v``).

    python -m sims.compare                       # the full sweep, 64x32 ... 1024x512, depth 1-3
    python -m sims.compare --quick --csv /tmp/c.csv --plot /tmp/c.png   # seconds, for tests
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

from analogdp.experiment import DATASETS, ExperimentConfig, sweep_layers, timed_comparison
from analogdp.names import UPDATE_ENERGY_TERMS as ENERGY_TERMS
from analogdp.report import (ALGORITHM_COLOURS, ALGORITHM_LABELS, DEPTH_MARKERS, atomic_path,
                             comparison_rows as csv_rows, provenance_lines, read_comparison_csv,
                             save_figure)
from analogdp.units import si
from sims.cli import (EXIT_STATUS_HELP, OVERWRITE_POLICY, OneLineParser, UsageError, add_cluster_options,
                      add_version_option,
                      attach_dash_values, check_outputs, command_line, non_negative_int, positive_float,
                      positive_int, run_command, size_pair)

PROG = "python -m sims.compare"
DEFAULT_SIZES = "64x32,128x64,256x128,512x256,1024x512"
DEFAULT_DEPTHS = "1,2,3"
QUICK_SIZES = "16x8,32x16"
QUICK_DEPTHS = "1,2"
QUICK_SAMPLES = 2
DEFAULT_SAMPLES = 8
PLOT_SUFFIXES = (".png", ".pdf", ".svg")



def _comma_list(text: str, item_type, what: str, example: str) -> list:
    """Comma-separated values, each checked by ``item_type`` (whose message names the item)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated {what}, e.g. {example}")
    return [item_type(item) for item in items]


def size_list(text: str) -> list[tuple[int, int]]:
    return _comma_list(text, size_pair, "RxC sizes", DEFAULT_SIZES)


def depth_list(text: str) -> list[int]:
    return _comma_list(text, positive_int, "hidden-layer counts", DEFAULT_DEPTHS)


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Energy per weight update and settling time of dual propagation (DP), equilibrium\n"
            "propagation (EP) and centered EP on the same resistive crossbars, swept over the\n"
            "crossbar size R x C and the number of hidden layers (network R x C x ... x C x 10).\n"
            "Each configuration is compared as `python -m sims.crossbar --compare` does (same\n"
            "weights, same examples for the three algorithms), with medians over --samples updates."),
        epilog=(
            "Outputs: --csv (one row per size, depth and algorithm; SI units in the column\n"
            "names) and --plot (energy per update and settling time against size); at least one.\n"
            f"{EXIT_STATUS_HELP}\n{OVERWRITE_POLICY}\nExample:\n"
            f"  {PROG} --sizes 64x32,256x128 --depths 1,2 --csv sweep.csv --plot sweep.png"))
    add_version_option(parser)
    parser.add_argument("--sizes", type=size_list, default=None, metavar="RxC,...",
                        help=f"crossbar sizes, rows x columns (default {DEFAULT_SIZES}; --quick: {QUICK_SIZES})")
    parser.add_argument("--depths", type=depth_list, default=None, metavar="D,...",
                        help=f"numbers of hidden layers (default {DEFAULT_DEPTHS}; --quick: {QUICK_DEPTHS})")
    parser.add_argument("--samples", type=positive_int, default=None, metavar="N",
                        help=f"learning steps per algorithm and configuration (default {DEFAULT_SAMPLES}; "
                             f"--quick: {QUICK_SAMPLES})")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, depths and sample count (seconds; for tests)")
    parser.add_argument("--beta", type=positive_float, default=0.5,
                        help="nudge strength β in (0, 1), shared by the three algorithms (default 0.5)")
    parser.add_argument("--lr", type=positive_float, default=0.02, help="learning rate (default 0.02)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of the weights, the examples and the pulse rounding (default 0)")
    parser.add_argument("--dataset", choices=tuple(d for d in DATASETS if d != "mnist"), default="auto",
                        help="examples, as for sims.crossbar (default auto: Fashion-MNIST at R = 784, "
                             "else digits resampled to R inputs)")
    parser.add_argument("--csv", type=Path, default=None, metavar="PATH",
                        help="CSV output, one row per size, depth and algorithm")
    parser.add_argument("--plot", type=Path, default=None, metavar="PATH.png",
                        help="plot output, .png, .pdf or .svg")
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    parser.add_argument("--from-csv", type=Path, default=None, metavar="PATH",
                        help="redraw --plot from a CSV this command wrote earlier, without simulating")
    add_cluster_options(parser)
    return parser


def resolve(args) -> argparse.Namespace:
    """Fill the --quick defaults and check the outputs before any work."""
    if args.sizes is None:
        args.sizes = size_list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    if args.depths is None:
        args.depths = depth_list(QUICK_DEPTHS if args.quick else DEFAULT_DEPTHS)
    if args.samples is None:
        args.samples = QUICK_SAMPLES if args.quick else DEFAULT_SAMPLES
    if not args.beta < 1.0:
        raise UsageError(f"--beta {args.beta:g}: EP needs β below 1")
    if args.csv is None and args.plot is None:
        raise UsageError("nothing to write: give --csv PATH and/or --plot PATH")
    if args.from_csv is not None and args.csv is not None:
        raise UsageError("--from-csv redraws --plot only; drop --csv")
    check_outputs({"--csv": args.csv, "--plot": args.plot}, force=args.force,
                  suffixes={"--plot": PLOT_SUFFIXES})
    if args.from_csv is not None and not args.from_csv.is_file():
        raise UsageError(f"--from-csv {args.from_csv}: no such file")
    if args.scheduler is not None and (args.workers is not None or args.serial):
        raise UsageError("--scheduler uses the cluster as it is: drop --workers / --serial")
    return args


def configuration(args, size: tuple[int, int], depth: int) -> ExperimentConfig:
    """The experiment of one sweep point (raises ValueError on a configuration it refuses)."""
    return ExperimentConfig(layers=sweep_layers(size, depth), size=size, samples=args.samples,
                            seed=args.seed, beta=args.beta, lr=args.lr, dataset=args.dataset)


def write_csv(path: Path, rows: list[dict], provenance: dict) -> None:
    with atomic_path(path) as temporary, temporary.open("w", newline="") as handle:
        handle.writelines(line + "\n" for line in provenance_lines(provenance))
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})


def _csv_value(value):
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    return value


def read_csv(path: Path) -> list[dict]:
    """Rows of a CSV this command wrote (a file that is not one is a usage error)."""
    try:
        return read_comparison_csv(path)
    except ValueError as error:
        raise UsageError(str(error)) from None


def write_plot(path: Path, rows: list[dict]) -> None:
    """Energy per update and settling time against the crossbar size, one line per algorithm
    and depth; and, at the largest size, each algorithm's energy split by where it goes (as
    shares, since the totals span orders of magnitude; the total is written on each bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sizes = list(dict.fromkeys(r["size"] for r in rows))
    cross_points = {s: next(r["rows"] * r["columns"] for r in rows if r["size"] == s) for s in sizes}
    depths = sorted({r["hidden_layers"] for r in rows})
    algos = list(dict.fromkeys(r["algo"] for r in rows))
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    for algo in algos:
        for depth in depths:
            picked = [r for r in rows if r["algo"] == algo and r["hidden_layers"] == depth]
            x = [cross_points[r["size"]] for r in picked]
            style = dict(color=ALGORITHM_COLOURS.get(algo), marker=DEPTH_MARKERS.get(depth, "x"),
                         ls=["-", "--", ":"][(depth - 1) % 3], ms=5)
            axes[0].plot(x, [r["energy_per_update_j"] for r in picked], **style,
                         label=f"{ALGORITHM_LABELS.get(algo, algo)}, {depth} hidden")
            axes[1].plot(x, [r["settling_time_s"] * 1e9 for r in picked], **style)
    for ax in axes[:2]:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([cross_points[s] for s in sizes], sizes, rotation=30)
        ax.minorticks_off()
        ax.set_xlabel("crossbar under study, rows x columns (cross points, log scale)")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("energy per weight update (J)")
    axes[0].set_title("energy per update (median)", fontsize=10)
    axes[0].legend(fontsize=7, ncol=1)
    axes[1].set_ylabel("settling time per update, 0.1 % of V_r (ns)")
    axes[1].set_title("settling time per update (all phases, median)", fontsize=10)

    largest = sizes[-1]
    ax = axes[2]
    bars = [next(r for r in rows if r["size"] == largest and r["algo"] == algo and r["hidden_layers"] == depth)
            for depth in depths for algo in algos]
    totals = np.array([sum(max(r[f"energy_{t}_j"], 0.0) for t in ENERGY_TERMS) for r in bars])
    bottoms = np.zeros(len(bars))
    for t, term in enumerate(ENERGY_TERMS):
        # the capacitor term can be a tiny negative: drawn as zero
        shares = 100.0 * np.array([max(r[f"energy_{term}_j"], 0.0) for r in bars]) / totals
        ax.bar(range(len(bars)), shares, bottom=bottoms, color=f"C{t}", label=term.replace("_", " "))
        bottoms += shares
    for i, row in enumerate(bars):
        ax.text(i, 101, si(row["energy_per_update_j"], "J"), ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_ylim(0, 125)
    ax.set_xticks(range(len(bars)), [f"{r['algo']}\n{r['hidden_layers']} hidden" for r in bars], fontsize=7)
    ax.set_ylabel("share of the energy per update (%)")
    ax.set_xlabel("algorithm and number of hidden layers (total energy above each bar)")
    ax.set_title(f"energy per update at {largest}, by where it goes", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", ncol=3)
    fig.suptitle("DP vs EP vs centered EP on the same crossbars (same weights and examples)", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(attach_dash_values(argv, parser))
    command = command_line(PROG, argv)
    return run_command(PROG, lambda: _run(args, command))


def _run(args, command: str) -> int:
    from analogdp.report import provenance

    resolve(args)
    if args.from_csv is not None:
        write_plot(args.plot, read_csv(args.from_csv))
        print(f"plot: {args.plot} (from {args.from_csv})")
        return 0
    record = provenance(command)
    points = [(size, depth) for size in args.sizes for depth in args.depths]
    try:
        configs = [configuration(args, size, depth) for size, depth in points]
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:
        outcomes = run_points(args, points, configs)
    except ConnectionError as error:  # an unreachable --scheduler
        raise UsageError(str(error)) from None
    rows = []
    for (size, depth), outcome in zip(points, outcomes):
        rows += csv_rows(size, depth, outcome["compare"], outcome["wall_time_s"])
    if args.csv is not None:
        write_csv(args.csv, rows, record)
    if args.plot is not None:
        write_plot(args.plot, rows)
    written = [f"{name}: {path}" for name, path in (("csv", args.csv), ("plot", args.plot)) if path]
    print(f"{len(rows)} rows; " + "; ".join(written))
    return 0


def run_points(args, points: list, configs: list[ExperimentConfig]) -> list[dict]:
    """The comparison of every configuration (in their order), run on Dask or here, with a
    progress line as each finishes."""
    from analogdp.distributed import dask_client, stream, warm_numba_cache

    outcomes: list[dict | None] = [None] * len(configs)

    def collect(client):
        for index, outcome in stream(configs, timed_comparison, client=client):
            outcomes[index] = outcome
            if not args.no_progress:
                size, depth = points[index]
                print(progress_line(size, depth, outcome["compare"], outcome["wall_time_s"]),
                      file=sys.stderr, flush=True)

    if args.serial:
        collect(None)
    else:
        warm_numba_cache(configs, timed_comparison)  # compiled once, before the workers start
        with dask_client(args.scheduler, n_workers=args.workers) as client:
            collect(client)
    return outcomes


def progress_line(size, depth: int, comparison: dict, wall_time_s: float) -> str:
    parts = [f"{algo} {si(comparison[algo]['energy_per_update_j'], 'J')} "
             f"{si(comparison[algo]['settling_time_s'], 's')}" for algo in comparison["algorithms"]]
    return f"{size[0]}x{size[1]}, {depth} hidden: " + "; ".join(parts) + f"  ({wall_time_s:.1f} s)"


if __name__ == "__main__":
    sys.exit(main())
