"""The accuracy × energy table of the README: Fashion-MNIST, 784-256-10, for each device preset
the experiment offers (ideal), DP and centered EP on the crossbar, then digital DP and BP with the
same online schedule (batch 1, same lr and β, float weights, same initial weights and order).

    python benchmarks/training_table.py [--epochs 1] [--seeds 0,1,2] [--ep-train-examples N]
        [--train-examples N] [--json table.json]

Crossbar runs use the equilibrium engine with every 100th example integrated by the ODE
(settling time and settle energy are those samples'). Prints the Markdown table, then as its last
line one JSON object with every row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analogdp.experiment import ExperimentConfig  # noqa: E402
from analogdp.training import markdown_table, training_table  # noqa: E402
from analogdp.units import jsonable  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (mean and spread over them)")
    parser.add_argument("--train-examples", type=int, default=None, help="first N of the training split")
    parser.add_argument("--ep-train-examples", type=int, default=None, help="first N for centered EP only")
    parser.add_argument("--algos", default="dp,ep-centered")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    base = ExperimentConfig(layers=(784, 256, 10), dataset="fashion-mnist", epochs=args.epochs,
                            train_examples=args.train_examples, settle="equilibrium", ode_every=100)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    rows = training_table(base, algos=tuple(args.algos.split(",")), seeds=seeds,
                          ep_train_examples=args.ep_train_examples,
                          progress=lambda what: print(f"running {what}", file=sys.stderr, flush=True))
    print(markdown_table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(jsonable(rows), indent=1))
    print(json.dumps(jsonable(rows)))


if __name__ == "__main__":
    main()
