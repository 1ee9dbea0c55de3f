"""The relaxation solver: circuit term, Runge–Kutta solvers, step controller, settle."""

from .settle import ENERGY_TERMS, EnergyBreakdown, NotSettledError, SettleResult, settle
from .solvers import SOLVERS, Bosh3, Dopri5, SaveAt, SettleCriteria, StepController
from .term import CircuitTerm

__all__ = ["Bosh3", "CircuitTerm", "Dopri5", "ENERGY_TERMS", "EnergyBreakdown", "NotSettledError",
           "SOLVERS", "SaveAt", "SettleCriteria", "SettleResult", "StepController", "settle",
           "solve_ivp_reference"]


def __getattr__(name):
    # The SciPy reference is for tests and benchmarks; importing scipy.integrate costs a
    # quarter of a warm simulation run, so it loads only when asked for.
    if name == "solve_ivp_reference":
        from .reference import solve_ivp_reference
        return solve_ivp_reference
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
