"""Exceptions a user can meet, in one light module (the command lines map each to an exit
status without importing the solver or the SPICE package)."""


class NgspiceNotFound(RuntimeError):
    """ngspice (the executable or libngspice) is not installed."""


class NgspiceError(RuntimeError):
    """ngspice rejected the netlist, failed, or did not finish in time; the message quotes it."""


class NotSettledError(RuntimeError):
    """The circuit did not reach equilibrium within the time or step limit, and the figure asked
    for needs the settled state (the message says which settles and why)."""


class NonFiniteError(FloatingPointError):
    """A number produced during a run is NaN or infinite (the run is stopped, not reported)."""


class CheckpointMismatch(ValueError):
    """A checkpoint that another run (configuration, algorithm or code) wrote, or a file that is
    not a checkpoint: refused, and left where it is."""
