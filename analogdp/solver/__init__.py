"""The relaxation solver: circuit term, Runge–Kutta solvers, step controller, settle."""

from .settle import ENERGY_TERMS, EnergyBreakdown, NotSettledError, SettleResult, settle
from .solvers import SOLVERS, Bosh3, Dopri5, SaveAt, SettleCriteria, StepController
from .reference import solve_ivp_reference
from .term import CircuitTerm

__all__ = ["Bosh3", "CircuitTerm", "Dopri5", "ENERGY_TERMS", "EnergyBreakdown", "NotSettledError",
           "SOLVERS", "SaveAt", "SettleCriteria", "SettleResult", "StepController", "settle",
           "solve_ivp_reference"]
