"""The network circuit: the single description from which the ODE, the energy bookkeeping
and the SPICE netlist are all generated (DESIGN §3).

Structure, layer by layer (k = 0..L, layer 0 the clamped input):

- **Input drivers** hold the rows of crossbar 0 at V_r·x_i (and the bias row at V_r).
- **Crossbar k** joins layer k (rows i) to layer k+1 (column pairs j⁺, j⁻). In the default
  ``bidirectional`` scheme every row i is held at the presynaptic *row signal* of neuron i and
  column j± at ±(the *column signal* of neuron j). Each driver senses the current it supplies;
  adding back the self terms recovers

      a_j = Σ_i (G⁺_ij − G⁻_ij) x_i / (G_u V_r)          (forward,  = (W s̄)_j)
      b_i = Σ_j (G⁺_ij − G⁻_ij) d_j / (G_u V_r)          (backward, = (Wᵀ δ)_i)

  from the same devices at the same time. In the ``dual-array`` scheme the forward array has
  its columns at virtual ground and a second, transposed copy of the array carries the
  feedback (rows driven by d_j, columns at virtual ground): twice the devices and more energy.
- **Neurons** have m compartments (m = 2 for a dyad, 1 for an EP neuron). Compartment c of a
  hidden neuron is a node with capacitance C_m charged through R_m by an amplifier whose output
  is V_r·f(a + κ_c b); an output neuron's amplifier gives V_r·(a − κ_c g) with the injected
  nudge g = β∇ℓ. The row signal is Σ_c ρ_c v_c (the dyad mean), the column signal
  Σ_c γ_c v_c (the dyad difference).

:class:`NeuronKind` holds (ρ, γ, κ) and so is all that differs between DP, DP⊤ and EP neurons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..digital.dp import VARIANTS, feedback_coefficients
from ..digital.functional import ACTIVATIONS, LOSSES, check_choice
from .amplifiers import AmplifierParams
from .mapping import conductances_to_weights, weights_to_conductances
from .params import DeviceParams, NeuronParams
from .wires import WireParams, tile_counts

SCHEMES = ("bidirectional", "dual-array")
NUDGE_POINTS = ("input", "state")


@dataclass(frozen=True)
class NeuronKind:
    """How a neuron's compartments drive the lines and take feedback.

    - ``row_weights`` ρ: the row line of the next crossbar carries Σ_c ρ_c v_c.
    - ``column_weights`` γ: the column pair of the previous crossbar carries ±Σ_c γ_c v_c.
    - ``feedback_gains`` κ: hidden compartment c targets f(a + κ_c b); output compartment c
      targets a − κ_c g.
    - ``nudge_at``: the output nudge g = β∇ℓ(z) is evaluated at the bottom-up input a
      (``input``, DP) or at the output state (``state``, EP, whose energy function needs it).
    """

    name: str
    row_weights: tuple[float, ...]
    column_weights: tuple[float, ...]
    feedback_gains: tuple[float, ...]
    nudge_at: str = "input"
    compartment_names: tuple[str, ...] = ("p", "m")

    def __post_init__(self):
        m = len(self.row_weights)
        if not (len(self.column_weights) == len(self.feedback_gains) == len(self.compartment_names) == m):
            raise ValueError("NeuronKind: row_weights, column_weights, feedback_gains and "
                             "compartment_names must have one entry per compartment")
        check_choice("nudge_at", self.nudge_at, NUDGE_POINTS)

    @property
    def compartments(self) -> int:
        return len(self.row_weights)


def dyad_neuron(variant: str = "dp", alpha: float = 0.5) -> NeuronKind:
    """Two-compartment DP neuron: mean α v⁺ + (1−α) v⁻ upstream, difference v⁺ − v⁻ downstream."""
    check_choice("variant", variant, VARIANTS)
    c_plus, c_minus = feedback_coefficients(variant, alpha)
    return NeuronKind(name=f"dyad-{variant}", row_weights=(alpha, 1.0 - alpha),
                      column_weights=(1.0, -1.0), feedback_gains=(c_plus, -c_minus),
                      nudge_at="input", compartment_names=("p", "m"))


def ep_neuron() -> NeuronKind:
    """Single-compartment EP neuron: its voltage is both its row and its column signal."""
    return NeuronKind(name="ep", row_weights=(1.0,), column_weights=(1.0,), feedback_gains=(1.0,),
                      nudge_at="state", compartment_names=("s",))


@dataclass(frozen=True)
class Crossbar:
    """Crossbar k: rows are layer k (plus a bias row held at V_r), columns are layer k+1 pairs."""

    index: int
    g_pos_s: np.ndarray
    g_neg_s: np.ndarray
    has_bias_row: bool

    @property
    def n_rows(self) -> int:
        return self.g_pos_s.shape[0]

    @property
    def n_inputs(self) -> int:
        return self.n_rows - int(self.has_bias_row)

    @property
    def n_columns(self) -> int:
        return self.g_pos_s.shape[1]

    @property
    def row_conductance_s(self) -> np.ndarray:
        """Total conductance on each row line (both devices of every pair)."""
        return self.g_pos_s.sum(axis=1) + self.g_neg_s.sum(axis=1)


_REALISED = "_realised_weights"


def _realised_weights(xbar: Crossbar, device) -> tuple[np.ndarray, np.ndarray | None]:
    """The (W, b) crossbar ``xbar`` realises with ``device``'s unit conductance, kept with it."""
    cached = xbar.__dict__.get(_REALISED)
    if cached is not None and cached[0] == device.g_unit_s:
        return cached[1]
    w, b = conductances_to_weights(xbar.g_pos_s, xbar.g_neg_s, xbar.has_bias_row, device)
    for array in (w, b):
        if array is not None:
            array.flags.writeable = False  # shared by every reader of this crossbar
    object.__setattr__(xbar, _REALISED, (device.g_unit_s, (w, b)))
    return w, b


@dataclass(frozen=True)
class NetworkCircuit:
    """A layered network of neurons on crossbars; see the module docstring."""

    layer_sizes: tuple[int, ...]
    crossbars: tuple[Crossbar, ...]
    neuron_kind: NeuronKind
    device: DeviceParams = field(default_factory=DeviceParams)
    neuron: NeuronParams = field(default_factory=NeuronParams)
    beta: float = 0.1
    loss: str = "mse"
    activation: str = "hardsigmoid"
    scheme: str = "bidirectional"
    wires: WireParams = field(default_factory=WireParams)
    amplifier: AmplifierParams = field(default_factory=AmplifierParams)

    def __post_init__(self):
        if not isinstance(self.wires, WireParams):
            raise ValueError(f"wires must be a WireParams, got {type(self.wires).__name__}")
        if not isinstance(self.amplifier, AmplifierParams):
            raise ValueError(f"amplifier must be an AmplifierParams, got {type(self.amplifier).__name__}")
        check_choice("loss", self.loss, LOSSES)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("scheme", self.scheme, SCHEMES)
        if not isinstance(self.beta, (int, float)) or not math.isfinite(self.beta):
            raise ValueError(f"beta must be finite, got {self.beta!r}")
        if len(self.crossbars) != len(self.layer_sizes) - 1:
            raise ValueError("one crossbar per pair of consecutive layers is required")
        for k, xbar in enumerate(self.crossbars):
            if (xbar.n_inputs, xbar.n_columns) != (self.layer_sizes[k], self.layer_sizes[k + 1]):
                raise ValueError(f"crossbar {k} has shape {xbar.g_pos_s.shape}, "
                                 f"expected layers {self.layer_sizes[k]}→{self.layer_sizes[k + 1]}")

    @classmethod
    def from_weights(cls, weights, biases=None, *, neuron_kind: NeuronKind | None = None,
                     device: DeviceParams | None = None, neuron: NeuronParams | None = None,
                     beta: float = 0.1, loss: str = "mse", activation: str = "hardsigmoid",
                     scheme: str = "bidirectional", wires: WireParams | None = None,
                     amplifier: AmplifierParams | None = None) -> NetworkCircuit:
        """Program crossbars with signed weights W_k (n_{k+1} × n_k) and optional biases."""
        device = device or DeviceParams()
        if len(weights) == 0:
            raise ValueError("at least one weight matrix is required")
        sizes = [int(np.shape(weights[0])[1])]
        crossbars = []
        for k, w in enumerate(weights):
            w = np.asarray(w, dtype=np.float64)
            if w.ndim != 2 or w.shape[1] != sizes[-1]:
                raise ValueError(f"weights[{k}] has shape {w.shape}; expected (n_out, {sizes[-1]})")
            b = None if biases is None or biases[k] is None else np.asarray(biases[k], dtype=np.float64)
            if b is not None and b.shape != (w.shape[0],):
                raise ValueError(f"biases[{k}] has shape {b.shape}; expected ({w.shape[0]},)")
            g_pos, g_neg = weights_to_conductances(w, b, device)
            crossbars.append(Crossbar(k, g_pos, g_neg, b is not None))
            sizes.append(w.shape[0])
        return cls(tuple(sizes), tuple(crossbars), neuron_kind or dyad_neuron(), device,
                   neuron or NeuronParams(), beta, loss, activation, scheme, wires or WireParams(),
                   amplifier or AmplifierParams())

    # ---- what the hardware realises -------------------------------------------------------
    def effective_weights(self) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """(weights, biases) read back from the conductances (after clipping), as read-only arrays.

        A learning step reads them several times (settle, fixed-point reference, prediction), so
        each crossbar keeps its own: crossbars are immutable, reprogramming makes new ones."""
        pairs = [_realised_weights(x, self.device) for x in self.crossbars]
        return [w for w, _ in pairs], [b for _, b in pairs]

    def with_conductances(self, g_pos: list[np.ndarray], g_neg: list[np.ndarray]) -> NetworkCircuit:
        """The same circuit with reprogrammed devices (used after a weight update)."""
        crossbars = tuple(replace(x, g_pos_s=gp, g_neg_s=gn)
                          for x, gp, gn in zip(self.crossbars, g_pos, g_neg))
        return replace(self, crossbars=crossbars)

    # ---- sizes and inventories ------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """Number of crossbars (weight layers), L."""
        return len(self.crossbars)

    @property
    def compartments_per_neuron(self) -> int:
        return self.neuron_kind.compartments

    @property
    def n_neurons(self) -> int:
        """Neurons with compartments (every layer but the input)."""
        return int(sum(self.layer_sizes[1:]))

    @property
    def n_compartments(self) -> int:
        return self.n_neurons * self.compartments_per_neuron

    def compartment_offset(self, layer: int) -> int:
        """Index of the first compartment voltage of ``layer`` (1..L) in the state vector."""
        return int(sum(self.layer_sizes[1:layer])) * self.compartments_per_neuron

    @property
    def n_devices(self) -> int:
        per_array = sum(2 * x.n_rows * x.n_columns for x in self.crossbars)
        return per_array * (2 if self.scheme == "dual-array" else 1)

    @property
    def macs_per_settle(self) -> int:
        """Multiply-accumulates a settle performs: forward W s̄ on every crossbar plus the
        feedback Wᵀ δ on every crossbar that has a hidden layer below it."""
        forward = sum(x.n_rows * x.n_columns for x in self.crossbars)
        backward = sum(x.n_inputs * x.n_columns for x in self.crossbars[1:])
        return forward + backward

    def amplifier_inventory(self) -> dict[str, int]:
        """Active elements that burn static power; the netlist writer emits exactly these."""
        m = self.compartments_per_neuron
        hidden = int(sum(self.layer_sizes[1:-1]))
        columns = sum(x.n_columns for x in self.crossbars)
        # a tiled layer (WireParams.max_rows / max_cols) has drivers on every physical array:
        # a row crossing n_c column tiles has n_c drivers, a column pair crossing n_r row tiles
        # n_r pairs; the partial currents are sensed per tile and summed (tile_partial_sense)
        tiles = [tile_counts(x.n_rows, x.n_columns, self.wires) for x in self.crossbars]
        rows = sum(x.n_rows * n_c for x, (_, n_c) in zip(self.crossbars, tiles))
        column_lines = sum(x.n_columns * n_r for x, (n_r, _) in zip(self.crossbars, tiles))
        partial = sum((x.n_columns * n_r if n_r > 1 else 0) + (x.n_inputs * n_c if k > 0 and n_c > 1 else 0)
                      for k, (x, (n_r, n_c)) in enumerate(zip(self.crossbars, tiles)))
        inventory = {
            "row_drivers": rows,
            "column_drivers": 2 * column_lines if self.scheme == "bidirectional" else 0,
            "forward_sense": self.n_neurons,
            "backward_sense": hidden,
            "compartment_drivers": m * self.n_neurons,
            "row_signal_buffers": hidden if m > 1 else 0,
            "nudge_sources": self.layer_sizes[-1],
        }
        if self.scheme == "dual-array":
            inventory["feedback_line_drivers"] = columns
        if partial:
            inventory["tile_partial_sense"] = partial
        return inventory

    @property
    def n_amplifiers(self) -> int:
        return int(sum(self.amplifier_inventory().values()))

    def describe(self) -> dict:
        """Plain-data summary (for JSON and netlist headers)."""
        from .params import describe as describe_params
        summary = {
            "layer_sizes": list(self.layer_sizes),
            "neuron_kind": self.neuron_kind.name,
            "row_weights": list(self.neuron_kind.row_weights),
            "column_weights": list(self.neuron_kind.column_weights),
            "feedback_gains": list(self.neuron_kind.feedback_gains),
            "beta": self.beta, "loss": self.loss, "activation": self.activation,
            "scheme": self.scheme,
            "device": describe_params(self.device), "neuron": describe_params(self.neuron),
            "g_unit_s": self.device.g_unit_s, "tau_s": self.neuron.tau_s,
            "n_devices": self.n_devices, "n_amplifiers": self.n_amplifiers,
        }
        # ideal wires and amplifiers (the defaults) leave the summary as it always was
        if self.wires != WireParams():
            summary["wires"] = describe_params(self.wires)
        if self.amplifier != AmplifierParams():
            summary["amplifier"] = describe_params(self.amplifier)
        return summary
