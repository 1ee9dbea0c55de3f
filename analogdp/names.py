"""Names shared across the package: algorithms, settle phases and energy terms.

They key the JSON summary, the CSV columns and the per-phase records, so each is spelled once
here and imported wherever it is used.
"""

ALGORITHMS = ("dp", "ep", "ep-centered")
EP_ALGORITHMS = ("ep", "ep-centered")

# Settles of one update: DP's single nudged settle; EP's free phase and its nudged phase(s).
SINGLE_PHASE = "single"
FREE_PHASE = "free"
PLUS_PHASE = "nudged_plus_beta"
MINUS_PHASE = "nudged_minus_beta"
PHASES = (SINGLE_PHASE, FREE_PHASE, PLUS_PHASE, MINUS_PHASE)

# Energy of a settle, by where it goes (DESIGN §4), then what an update adds to its settles.
SETTLE_ENERGY_TERMS = ("crossbar", "neuron", "amplifier_static", "capacitor")
# dissipation in resistive crossbar wires: a term of its own, present only when wires have resistance
WIRE_TERM = "wire"
SAMPLE_HOLD_TERM = "sample_hold"
PROGRAMMING_TERM = "programming"
UPDATE_ENERGY_TERMS = SETTLE_ENERGY_TERMS + (SAMPLE_HOLD_TERM, PROGRAMMING_TERM)
# Programming energy beyond the device pulses: the line drivers of a pulse-coincidence update,
# and the refresh of one-directional device pairs.
LINE_DRIVER_TERM = "line_drivers"
REFRESH_TERM = "refresh"
