"""Reproducible example circuits: the exported netlists of ``netlists/`` and the cross-check
cases of the agreement targets (used by the tests, the benchmark and ``sims.spice_check``).

Every example is drawn from a fixed seed: weights W_k uniform in ±1.5/√n_k (so hidden inputs
spread over the hard sigmoid's linear range and its clipped ends), biases N(0, 0.2), the input
uniform in [0, 1] and a one-hot target.

``python -m analogdp.spice.examples [DIR]`` re-exports the netlists (default ``netlists/``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..circuit.network import NetworkCircuit, NeuronKind, dyad_neuron, ep_neuron
from .netlist import SpiceOptions, write_netlist

NETLIST_T_STOP_S = 200e-9
NETLIST_T_STEP_S = 1e-9


@dataclass(frozen=True)
class Example:
    """A network, its neuron kind and one input/target pair, all fixed by ``seed``."""

    name: str
    layer_sizes: tuple[int, ...]
    neuron: str = "dyad"  # 'dyad' or 'ep'
    variant: str = "dp"
    alpha: float = 0.5
    beta: float = 0.5
    loss: str = "mse"
    scheme: str = "bidirectional"
    seed: int = 0
    nudge: bool = True
    description: str = ""

    def neuron_kind(self) -> NeuronKind:
        return ep_neuron() if self.neuron == "ep" else dyad_neuron(self.variant, self.alpha)

    def build(self) -> tuple[NetworkCircuit, np.ndarray, np.ndarray | None]:
        """(circuit, x, y) with y None when the example has no nudge."""
        return random_problem(self.layer_sizes, neuron_kind=self.neuron_kind(), beta=self.beta,
                              loss=self.loss, scheme=self.scheme, seed=self.seed, nudge=self.nudge)


def random_problem(layer_sizes, *, neuron_kind: NeuronKind | None = None, beta: float = 0.5,
                   loss: str = "mse", scheme: str = "bidirectional", seed: int = 0,
                   nudge: bool = True, weights_and_biases=None
                   ) -> tuple[NetworkCircuit, np.ndarray, np.ndarray | None]:
    """A circuit with seeded random weights and biases (or the given ``weights_and_biases``),
    one input x and one one-hot target y."""
    sizes = tuple(int(n) for n in layer_sizes)
    rng = np.random.default_rng(seed)
    weights = [rng.uniform(-1.0, 1.0, (sizes[k + 1], sizes[k])) * 1.5 / np.sqrt(sizes[k])
               for k in range(len(sizes) - 1)]
    biases = [rng.normal(0.0, 0.2, n) for n in sizes[1:]]
    if weights_and_biases is not None:
        weights, biases = weights_and_biases
    x = rng.random(sizes[0])
    y = np.eye(sizes[-1])[rng.integers(0, sizes[-1])] if nudge else None
    circuit = NetworkCircuit.from_weights(weights, biases, neuron_kind=neuron_kind or dyad_neuron(),
                                          beta=beta, loss=loss, scheme=scheme)
    return circuit, x, y


# Exported to netlists/ and checked for staleness by the tests.
NETLIST_EXAMPLES = (
    Example("dp_6x4x3", (6, 4, 3), description="6-4-3 DP network (dp, alpha = 1/2, beta = 0.5, MSE)"),
    Example("layer_16x8", (16, 8),
            description="a single 16x8 crossbar layer of output dyads (dp, alpha = 1/2, beta = 0.5)"),
    Example("dpT_32x16x16x10", (32, 16, 16, 10), variant="dpT", alpha=0.3,
            description="32-16-16-10 DP-transpose network (dpT, alpha = 0.3, beta = 0.5)"),
    Example("dp_6x4x3_dual_array", (6, 4, 3), scheme="dual-array",
            description="the 6-4-3 network in the dual-array scheme (separate transposed feedback array)"),
    Example("ep_6x4x3_ce", (6, 4, 3), neuron="ep", loss="ce",
            description="the 6-4-3 network with single-compartment EP neurons, cross-entropy nudge at the state"),
)

# The cross-check cases the agreement targets are checked on.
ACCEPTANCE_CASES = (
    Example("6-4-3 dp a=0.5 b=0.5", (6, 4, 3)),
    Example("64-32-10", (64, 32, 10)),
    Example("32-16-16-10 dpT a=0.3", (32, 16, 16, 10), variant="dpT", alpha=0.3),
    Example("single 128x64 layer", (128, 64)),
)


def export_netlists(directory: str | Path = "netlists") -> list[Path]:
    """Write every example of :data:`NETLIST_EXAMPLES` as ``DIR/NAME.cir``; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for example in NETLIST_EXAMPLES:
        circuit, x, y = example.build()
        path = directory / f"{example.name}.cir"
        text = write_netlist(circuit, x, y, t_stop_s=NETLIST_T_STOP_S, t_step_s=NETLIST_T_STEP_S,
                             title=f"analogdp example {example.name}: {example.description}",
                             data_prefix=example.name, options=SpiceOptions(energy=True, write_currents=True),
                             run_command=f"ngspice -b netlists/{example.name}.cir")
        path.write_text(text)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in export_netlists(sys.argv[1] if len(sys.argv) > 1 else "netlists"):
        print(written)
