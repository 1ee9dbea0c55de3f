"""Explicit Runge–Kutta *solvers*, the step-size *controller* and what to save (*SaveAt*).

Why explicit adaptive RK suits this circuit: every compartment relaxes towards its amplifier's
target with the same time constant τ = R_m C_m, and the couplings between layers are either
feed-forward (a cascade, whose Jacobian eigenvalues stay at −1/τ) or scaled by β (the
feedback). The spectrum therefore clusters near −1/τ: the problem is not stiff, the step is
limited by accuracy, not stability, and an implicit method's linear solves would be pure cost.
Dormand–Prince 5(4) gives the fewest right-hand-side evaluations per digit of accuracy at the
tolerances we need (1e-9 of V_r); Bogacki–Shampine 3(2) is cheaper per step for loose ones.
The hard sigmoid's clip kinks are located ahead of each step and steps end on them
(DESIGN §4.1), so that the error controller is not fooled by them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit, FSAL tableau: its last stage is the derivative at the new state, which the
    integrator reuses as the next step's first stage and keeps for Hermite interpolation."""

    a: np.ndarray
    b: np.ndarray
    b_error: np.ndarray  # b − b̂: weights of the embedded error estimate
    c: np.ndarray  # stage times; unused by the kernel since the circuit ODE is autonomous
    error_order: int  # order of the error estimate + 1, for the controller exponent
    dense: np.ndarray  # (stages, degree): y(t + θh) = y + h Σ_s K_s Σ_k dense[s, k] θ^(k+1)


def _dopri5() -> ButcherTableau:
    a = np.zeros((7, 7))
    a[1, 0] = 1 / 5
    a[2, :2] = [3 / 40, 9 / 40]
    a[3, :3] = [44 / 45, -56 / 15, 32 / 9]
    a[4, :4] = [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729]
    a[5, :5] = [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656]
    a[6, :6] = [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]
    b = a[6].copy()
    b_hat = np.array([5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40])
    c = np.array([0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1])
    # Dormand & Prince's quartic continuous extension (Hairer, Nørsett & Wanner, Solving ODEs I,
    # §II.6), written as polynomial coefficients in θ
    dense = np.array([
        [1, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432],
        [0, 0, 0, 0],
        [0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799],
        [0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072],
        [0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632],
        [0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844],
        [0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423]])
    return ButcherTableau(a, b, b - b_hat, c, 5, dense)


def _bosh3() -> ButcherTableau:
    a = np.zeros((4, 4))
    a[1, 0] = 1 / 2
    a[2, :2] = [0, 3 / 4]
    a[3, :3] = [2 / 9, 1 / 3, 4 / 9]
    b = a[3].copy()
    b_hat = np.array([7 / 24, 1 / 4, 1 / 3, 1 / 8])
    c = np.array([0, 1 / 2, 3 / 4, 1])
    # cubic Hermite interpolation between the step's ends, expressed in the stages
    dense = np.array([[1, -4 / 3, 5 / 9], [0, 1, -2 / 3], [0, 4 / 3, -8 / 9], [0, -1, 1]])
    return ButcherTableau(a, b, b - b_hat, c, 3, dense)


@dataclass(frozen=True)
class Dopri5:
    """Dormand–Prince 5(4), FSAL, 6 evaluations per step: the default.

    ``real_stability``: stable for h·|λ| up to about 3.3 on the negative real axis; 3.0 keeps
    a margin."""

    name: str = "dopri5"
    real_stability: float = 3.0
    tableau: ButcherTableau = field(default_factory=_dopri5, repr=False, compare=False)


@dataclass(frozen=True)
class Bosh3:
    """Bogacki–Shampine 3(2), FSAL, 3 evaluations per step: cheaper at loose tolerances.

    ``real_stability``: stable for h·|λ| up to about 2.5 on the negative real axis; 2.3 keeps
    a margin."""

    name: str = "bosh3"
    real_stability: float = 2.3
    tableau: ButcherTableau = field(default_factory=_bosh3, repr=False, compare=False)


SOLVERS = {"dopri5": Dopri5, "bosh3": Bosh3}


def _positive(owner: str, name: str, value) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}.{name} must be a positive finite number, got {value!r}")


# Default relative precision of what a settle reports: settling times (0.1 % and 1 % bands)
# and every energy term. DESIGN §4.1 derives the controller tolerances from it.
REPORTED_PRECISION = 1e-4
# local error tolerances per unit of reported precision; measured with
# benchmarks/solver_speed.py against an rtol 1e-10 reference (at p = 1e-4 the largest deviation
# of any settling time or energy term on its six networks was 4.3e-5)
_RTOL_PER_PRECISION = 1e-2
_ATOL_PER_PRECISION = 1e-4
# how steps treat the clip kinks (StepController.kinks)
KINK_POLICIES = ("auto", "cut", "step-over")


@dataclass(frozen=True)
class StepController:
    """Error-controlled step size (elementary integral controller, RMS error norm).

    The defaults follow the tolerance policy (DESIGN §4.1): settling times and energies to
    :data:`REPORTED_PRECISION` relative; :meth:`for_precision` gives the controller for another
    precision, or set ``rtol``/``atol_fraction`` directly. The settled state does not depend on
    them: it is held to ``SettleCriteria.equilibrium_fraction`` of V_r by the stop criterion.

    ``rtol`` and ``atol_fraction`` (× V_r, the absolute tolerance on every voltage) bound the
    local error; the energy accumulators are controlled relatively. Steps start at
    ``initial_step_tau`` · τ and never exceed ``max_step_tau`` · τ, nor the largest step the
    solver can take stably on the circuit's fastest mode (:mod:`analogdp.solver.stability`).

    ``kinks`` says how steps treat the activation's clip kinks (DESIGN §4.1): ``"cut"``
    controls every compartment's error and ends steps at the crossings whose kink error would
    matter; ``"step-over"`` (1.6–2.3× fewer evaluations on deep networks) leaves the local error
    of a compartment whose amplifier input crosses a rail within the step out of the error
    norm, outside the final approach to equilibrium, and cuts only at kinks whose modelled error
    exceeds three times the norm. Its settling times and energies stayed within 5.4e-5 of the
    reference on the tested DP networks, but its transient trajectory is looser (2e-5·V_r
    against solve_ivp) and a network with several equilibria (EP) may settle into another one.
    ``"auto"`` (default) follows what the settle reports: step over on dyad (DP) circuits whose
    settle reports only settling times, energies and the settled state (no SaveAt points, no
    fixed window), cut whenever a trajectory is asked for and on single-compartment (EP)
    circuits. Applies to the ideal circuit's kernel; the resistive-wire and finite-amplifier
    paths always cut.
    """

    rtol: float = _RTOL_PER_PRECISION * REPORTED_PRECISION
    atol_fraction: float = _ATOL_PER_PRECISION * REPORTED_PRECISION
    initial_step_tau: float = 1e-2
    max_step_tau: float = 2.5
    kinks: str = "auto"

    def __post_init__(self):
        for name in ("rtol", "atol_fraction", "initial_step_tau", "max_step_tau"):
            _positive("StepController", name, getattr(self, name))
        if self.kinks not in KINK_POLICIES:
            raise ValueError(f"StepController.kinks must be one of {KINK_POLICIES}, got {self.kinks!r}")

    @classmethod
    def for_precision(cls, relative_precision: float, **overrides) -> "StepController":
        """The controller whose settling times and energies are good to ``relative_precision``."""
        _positive("StepController", "relative_precision", relative_precision)
        return cls(**{"rtol": _RTOL_PER_PRECISION * relative_precision,
                      "atol_fraction": _ATOL_PER_PRECISION * relative_precision, **overrides})


# Residual |V_target − v| at which a settle stops, as a fraction of the equilibrium tolerance.
# The distance to the fixed point is the residual through (I − J)⁻¹, which exceeds the residual
# on deep networks (by up to 1.2× on benchmarks/solver_speed.py's networks); a half keeps
# the state inside the tolerance at the cost of ~0.7 τ more integration.
STOP_RESIDUAL_FRACTION = 0.5


@dataclass(frozen=True)
class SettleCriteria:
    """When a settle is over, and what "settled" means (DESIGN §4).

    - ``epsilon_fraction``: settling band, 0.1 % of V_r (the reported settling time);
    - ``coarse_fraction``: the 1 % band, reported too;
    - ``equilibrium_fraction``: the settled state is held to this fraction of V_r of the
      equilibrium: integration stops once every compartment is within
      :data:`STOP_RESIDUAL_FRACTION` of it of its amplifier's target (|V_target − v| = τ |dv/dt|),
      since the couplings can turn a residual into a somewhat larger distance from the fixed point;
    - ``t_max_s``: time limit (default 1000 τ); beyond it the state is reported *not settled*;
    - ``max_steps``: step limit, likewise.
    """

    epsilon_fraction: float = 1e-3
    coarse_fraction: float = 1e-2
    equilibrium_fraction: float = 1e-9
    t_max_s: float | None = None
    max_steps: int = 200_000

    def __post_init__(self):
        for name in ("epsilon_fraction", "coarse_fraction", "equilibrium_fraction"):
            _positive("SettleCriteria", name, getattr(self, name))
        if self.t_max_s is not None:
            _positive("SettleCriteria", "t_max_s", self.t_max_s)
        if not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise ValueError(f"SettleCriteria.max_steps must be a positive integer, got {self.max_steps!r}")


@dataclass(frozen=True)
class SaveAt:
    """Times (s) at which to record the whole state; the solver steps onto them exactly."""

    ts_s: tuple[float, ...] | np.ndarray | None = None

    def times(self) -> np.ndarray:
        if self.ts_s is None:
            return np.empty(0)
        ts = np.asarray(self.ts_s, dtype=np.float64).ravel()
        if not np.all(np.isfinite(ts)) or np.any(ts < 0) or np.any(np.diff(ts) < 0):
            raise ValueError("SaveAt.ts_s must be finite, non-negative and non-decreasing")
        return ts
