"""The circuit description (DESIGN §3): parameters, weight mapping and the network."""

from .amplifiers import AmplifierParams
from .mapping import conductances_to_weights, weights_to_conductances
from .network import SCHEMES, Crossbar, NetworkCircuit, NeuronKind, dyad_neuron, ep_neuron
from .params import DeviceParams, NeuronParams, ProgrammingParams, SampleHoldParams, describe
from .wires import WireParams

__all__ = [
    "AmplifierParams", "Crossbar", "DeviceParams", "NetworkCircuit", "NeuronKind", "NeuronParams",
    "ProgrammingParams", "SCHEMES", "SampleHoldParams", "WireParams", "conductances_to_weights", "describe",
    "dyad_neuron", "ep_neuron", "weights_to_conductances",
]
