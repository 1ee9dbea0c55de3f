"""Device response models: how one SET or RESET pulse moves a conductance (DESIGN §7).

A device is a conductance G in [G_min,d, G_max,d] (bounds drawn per device). Write
u = (G − G_min,d)/(G_max,d − G_min,d) ∈ [0, 1]. A pulse moves G by a *mean step* that depends on
the model and on u, scaled per device (device-to-device variation), plus cycle-to-cycle noise:

    ΔG = ±[f(u)·k_d + σ(G)·ξ],   σ(G) = c2c·f(u)·k_d + c2c_additive_s + c2c_slope·(G − G_min,d)

with ξ ~ N(0, 1) fresh per pulse, k_d the device's SET or RESET step scale, and the result clipped
to the device's bounds. The models (one frozen dataclass each):

- :class:`IdealDevice`: f = Δ (today's model; with no noise it reproduces the ideal
  programmer's arithmetic bit for bit);
- :class:`ConstantStepDevice`: f = Δ, with an up/down asymmetry (aihwkit ConstantStepDevice);
- :class:`LinearStepDevice`: f⁺ = Δ(1 − γ⁺u), f⁻ = Δ(1 − γ⁻(1 − u)); γ = 1 are soft bounds
  (aihwkit LinearStepDevice / SoftBoundsDevice);
- :class:`ExpStepDevice`: aihwkit's exponential step, f⁺ = Δ·max(0, 1 − A⁺e^{γ⁺z}),
  f⁻ = Δ·max(0, 1 − A⁻e^{−γ⁻z}), z = a_u·u + b_u;
- :class:`NeuroSimDevice`: NeuroSim's nonlinear LTP/LTD, G(P) = B(1 − e^{−P/A}) + G_min over
  P = 0..P_max pulses; a pulse moves P by one, which is ΔG = (G_min + B − G)(1 − e^{−1/A}) (LTP,
  A > 0) and the mirror on the LTD curve (A < 0);
- :class:`PowStepDevice`: f⁺ = Δ(1 − u)^{γ⁺}, f⁻ = Δu^{γ⁻} (aihwkit PowStepDevice).

Every model also carries: device-to-device variation of the step scale (normal or log-normal) and
of both bounds, up/down asymmetry, write noise (an offset σ_write·Δ·ξ seen by the reads until the
next write of that device), read noise (relative, redrawn for each settle), stuck devices (a
fraction pinned at G_min,d or G_max,d), PCM drift G(t) = G₀(t/t₀)^{−ν} and a one-directional
(SET only) flag.

Arrays of devices are drawn once per crossbar (:func:`draw_population`); pulses are applied by
:func:`apply_pulses` (vectorised numpy for noise-free constant steps, a small numba kernel
otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import numba
import numpy as np

from .params import DeviceParams, ProgrammingParams

# Pulse counts are ratios of conductances; a ratio within this of an integer is that integer
# (the same slack as the ideal programmer uses, so that both count identically).
PULSE_RATIO_SLACK = 1e-9
# A normal draw of a bound scale below this is clipped: a conductance bound stays positive.
MIN_BOUND_SCALE = 0.05
# Reference time of the drift law G(t) = G0 (t/t0)^-nu (aihwkit's PCM drift model uses 20 s
# after programming as t0; Nandakumar et al. 2020 report drift from the same reference).
DRIFT_T0_S = 20.0
# Cycle-to-cycle normals are drawn one per requested pulse, in blocks of at most this many
# (32 MB), so that memory stays bounded whatever the pulse counts.
MAX_NORMALS_PER_BLOCK = 1 << 22
_NO_NORMALS = np.empty(0)
# Devices whose pulse chains the kernel interleaves (see _pulse_kernel). Measured on the pulse
# trains of rram-gong2018 updates: 4-8 lanes 30-32 ms, 16 lanes 38 ms, 32 lanes 49 ms.
PULSE_LANES = 8

MODEL_CONSTANT, MODEL_LINEAR, MODEL_EXP, MODEL_NEUROSIM, MODEL_POW = range(5)
_N_SHAPE_PARAMS = 6


def _check_finite(obj, name: str, *, non_negative: bool = False, positive: bool = False) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{type(obj).__name__}.{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{type(obj).__name__}.{name} must be positive, got {value!r}")
    if non_negative and value < 0:
        raise ValueError(f"{type(obj).__name__}.{name} must be non-negative, got {value!r}")


@dataclass(frozen=True)
class DeviceModel:
    """Non-idealities every model shares (all default to an ideal device).

    - ``step_s``: nominal step Δ of one pulse (S); ``None`` takes the programmer's
      ``ProgrammingParams.delta_g_per_pulse_s`` (0.588–10 µS in 64 levels, NeuroSim's default).
    - ``up_down``: systematic asymmetry, Δ⁺ ∝ 1 + up_down, Δ⁻ ∝ 1 − up_down (aihwkit ``up_down``).
    - ``step_d2d``, ``up_down_d2d``: device-to-device spread of the step scale and of the
      asymmetry, drawn once per device (aihwkit ``dw_min_dtod``, ``up_down_dtod``);
      ``step_d2d_log_normal`` draws the scale log-normally with that relative spread (aihwkit
      ``dw_min_dtod_log_normal``).
    - ``g_min_d2d``, ``g_max_d2d``: relative spread of each device's bounds,
      G_min,d = G_min(1 + σξ), G_max,d = G_max(1 + σξ) (aihwkit ``w_min_dtod``, ``w_max_dtod``).
    - ``c2c``: multiplicative cycle-to-cycle noise of a pulse (aihwkit ``dw_min_std``);
      ``c2c_additive_s``: additive noise (S) per pulse; ``c2c_slope``: additive noise growing with
      G − G_min,d (aihwkit exp-step ``dw_min_std_add``, ``dw_min_std_slope``).
    - ``write_noise``: σ of the offset the reads see after a write, in units of Δ (aihwkit
      ``write_noise_std``); ``read_noise``: relative σ of a read, redrawn for each settle.
    - ``stuck_fraction``: fraction of devices stuck (aihwkit ``corrupt_devices_prob``), of which
      ``stuck_high_fraction`` sit at G_max,d and the rest at G_min,d.
    - ``drift_nu``, ``drift_nu_d2d``: PCM drift exponent ν and its relative spread per device.
    - ``set_only``: one-directional device (PCM): RESET pulses are not available in an update
      (a full RESET exists only as the refresh operation).
    """

    step_s: float | None = None
    up_down: float = 0.0
    step_d2d: float = 0.0
    step_d2d_log_normal: bool = False
    up_down_d2d: float = 0.0
    g_min_d2d: float = 0.0
    g_max_d2d: float = 0.0
    c2c: float = 0.0
    c2c_additive_s: float = 0.0
    c2c_slope: float = 0.0
    write_noise: float = 0.0
    read_noise: float = 0.0
    stuck_fraction: float = 0.0
    stuck_high_fraction: float = 0.5
    drift_nu: float = 0.0
    drift_nu_d2d: float = 0.0
    set_only: bool = False

    model_code = MODEL_CONSTANT
    model_name = "constant-step"

    def __post_init__(self):
        if self.step_s is not None:
            _check_finite(self, "step_s", positive=True)
        _check_finite(self, "up_down")
        if not -1.0 < self.up_down < 1.0:
            raise ValueError(f"{type(self).__name__}.up_down must lie in (-1, 1), got {self.up_down!r}")
        for name in ("step_d2d", "up_down_d2d", "g_min_d2d", "g_max_d2d", "c2c", "c2c_additive_s",
                     "c2c_slope", "write_noise", "read_noise", "drift_nu", "drift_nu_d2d"):
            _check_finite(self, name, non_negative=True)
        for name in ("stuck_fraction", "stuck_high_fraction"):
            _check_finite(self, name, non_negative=True)
            if getattr(self, name) > 1:
                raise ValueError(f"{type(self).__name__}.{name} must lie in [0, 1], got {getattr(self, name)!r}")
        for name in ("step_d2d_log_normal", "set_only"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{type(self).__name__}.{name} must be true or false, got {getattr(self, name)!r}")  # noqa: TRY004

    # -- what the kernels need -------------------------------------------------------------
    def shape_params(self, device: DeviceParams) -> np.ndarray:
        """Model-specific numbers of the mean step (see the kernel ``_mean_step``)."""
        return np.zeros(_N_SHAPE_PARAMS)

    def nominal_step_s(self, programming: ProgrammingParams | None = None) -> float:
        if self.step_s is not None:
            return float(self.step_s)
        return (programming or ProgrammingParams()).delta_g_per_pulse_s

    @property
    def has_cycle_noise(self) -> bool:
        return self.c2c > 0 or self.c2c_additive_s > 0 or self.c2c_slope > 0

    def describe(self) -> dict:
        out = {"model": self.model_name}
        out.update({f.name: getattr(self, f.name) for f in fields(self)})
        return out


@dataclass(frozen=True)
class IdealDevice(DeviceModel):
    """Every pulse moves G by exactly Δ until a bound (the default; DESIGN §3.4)."""

    model_name = "ideal"


@dataclass(frozen=True)
class ConstantStepDevice(DeviceModel):
    """Constant step Δ(1 ± up_down) anywhere in the range (aihwkit ConstantStepDevice, after
    Gokmen & Vlasov, Front. Neurosci. 2016)."""

    model_name = "constant-step"


@dataclass(frozen=True)
class _TwoExponentDevice(DeviceModel):
    """A model shaped by one exponent per direction, γ⁺ for SET and γ⁻ for RESET."""

    gamma_up: float = 1.0
    gamma_down: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        _check_finite(self, "gamma_up", non_negative=True)
        _check_finite(self, "gamma_down", non_negative=True)

    def shape_params(self, device):
        p = np.zeros(_N_SHAPE_PARAMS)
        p[0], p[1] = self.gamma_up, self.gamma_down
        return p


@dataclass(frozen=True)
class LinearStepDevice(_TwoExponentDevice):
    """Step shrinking linearly towards the bound it approaches: f⁺ = Δ(1 − γ⁺u),
    f⁻ = Δ(1 − γ⁻(1 − u)). γ = 1 (the default) are soft bounds, where the step vanishes at the
    bound (aihwkit LinearStepDevice / SoftBoundsDevice)."""

    model_code = MODEL_LINEAR
    model_name = "linear-step"


@dataclass(frozen=True)
class ExpStepDevice(DeviceModel):
    """aihwkit's exponential step: f⁺ = Δ·max(0, 1 − A⁺e^{γ⁺z}), f⁻ = Δ·max(0, 1 − A⁻e^{−γ⁻z})
    with z = a_u·u + b_u. (aihwkit writes z = 2a·w/(w_max − w_min) + b on its weight range;
    a_u = 2a and b_u = b + 2a·w_min/(w_max − w_min).) Defaults: aihwkit's ExpStepDevice."""

    a_u: float = 0.488
    b_u: float = 0.0
    gamma_up: float = 12.44625
    gamma_down: float = 12.78785
    a_up: float = 0.00081
    a_down: float = 0.36833

    model_code = MODEL_EXP
    model_name = "exp-step"

    def __post_init__(self):
        super().__post_init__()
        for name in ("a_u", "b_u", "gamma_up", "gamma_down", "a_up", "a_down"):
            _check_finite(self, name)

    def shape_params(self, device):
        return np.array([self.a_u, self.b_u, self.gamma_up, self.gamma_down, self.a_up, self.a_down])


@dataclass(frozen=True)
class NeuroSimDevice(DeviceModel):
    """NeuroSim's nonlinear weight update (MLP NeuroSim V3.0, DNN NeuroSim V2.1).

    Conductance vs pulse number P = 0..P_max: G(P) = B(1 − e^{−P/A}) + G_min with
    B = (G_max − G_min)/(1 − e^{−P_max/A}). LTP uses A = ``ltp_a_ratio``·P_max (> 0), LTD its own
    curve with A = ``ltd_a_ratio``·P_max (< 0). A pulse moves P by one from P = A⁻¹(G), i.e.
    ΔG = (G_min + B − G)(1 − e^{−1/A}) — a step linear in G, computed without logarithms.
    Defaults: NeuroSim V2.1 training defaults, P_max = 32 levels, nonlinearity labels 1.75 (LTP)
    and −1.46 (LTD), which NeuroSim's lookup table turns into A/P_max = 0.702081 and −0.848677.
    ``step_s`` is not used (the step follows from the levels); ``c2c_additive_s`` is NeuroSim's
    cycle-to-cycle σ (0.003 of the range in V2.1), applied per pulse here.
    """

    n_levels: int = 32
    ltp_a_ratio: float = 0.702081
    ltd_a_ratio: float = -0.848677

    model_code = MODEL_NEUROSIM
    model_name = "neurosim-exp"

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.n_levels, bool) or not isinstance(self.n_levels, int) or self.n_levels < 1:
            raise ValueError(f"NeuroSimDevice.n_levels must be a positive integer, got {self.n_levels!r}")
        _check_finite(self, "ltp_a_ratio", positive=True)
        _check_finite(self, "ltd_a_ratio")
        if self.ltd_a_ratio >= 0:
            raise ValueError(f"NeuroSimDevice.ltd_a_ratio must be negative (LTD curve), got {self.ltd_a_ratio!r}")

    def shape_params(self, device):
        a_up = self.ltp_a_ratio * self.n_levels
        a_down = self.ltd_a_ratio * self.n_levels
        p = np.zeros(_N_SHAPE_PARAMS)
        # B/(G_max - G_min) of each curve, and the per-pulse factors of the linear-in-G step.
        p[0] = 1.0 / (1.0 - math.exp(-self.n_levels / a_up))
        p[1] = 1.0 / (1.0 - math.exp(-self.n_levels / a_down))
        p[2] = 1.0 - math.exp(-1.0 / a_up)
        p[3] = math.exp(1.0 / a_down) - 1.0
        return p

    def nominal_step_s(self, programming=None, device: DeviceParams | None = None) -> float:
        device = device or DeviceParams()
        return (device.g_max_s - device.g_min_s) / self.n_levels


@dataclass(frozen=True)
class PowStepDevice(_TwoExponentDevice):
    """Power-law step: f⁺ = Δ(1 − u)^{γ⁺}, f⁻ = Δu^{γ⁻} (aihwkit PowStepDevice, after Fusi &
    Abbott 2007; γ = 1 are soft bounds)."""

    model_code = MODEL_POW
    model_name = "pow-step"


MODELS = {cls.model_name: cls for cls in (IdealDevice, ConstantStepDevice, LinearStepDevice,
                                           ExpStepDevice, NeuroSimDevice, PowStepDevice)}


# ------------------------------------------------------------------------------------------
# Kernels


@numba.njit(cache=True)
def _mean_step(code, p, g, lo, hi, is_set, step_s):
    """Magnitude of the noise-free step of one pulse at conductance g (before the device's
    step scale)."""
    span = hi - lo
    u = (g - lo) / span
    if u < 0.0:
        u = 0.0
    elif u > 1.0:
        u = 1.0
    if code == MODEL_CONSTANT:
        return step_s
    if code == MODEL_LINEAR:
        f = 1.0 - p[0] * u if is_set else 1.0 - p[1] * (1.0 - u)
        return step_s * max(f, 0.0)
    if code == MODEL_EXP:
        z = p[0] * u + p[1]
        if is_set:
            f = 1.0 - p[4] * math.exp(p[2] * z)
        else:
            f = 1.0 - p[5] * math.exp(-p[3] * z)
        return step_s * max(f, 0.0)
    if code == MODEL_NEUROSIM:
        if is_set:
            return max((lo + p[0] * span - g) * p[2], 0.0)
        return max((lo + p[1] * span - g) * p[3], 0.0)
    # MODEL_POW
    if is_set:
        return step_s * (1.0 - u) ** p[0]
    return step_s * u ** p[1]


@numba.njit(cache=True)
def _next_moving_device(k, index, n_pulses, stuck, sent):
    """The first device from k on that has pulses to take and is free. The stuck devices passed
    over are settled here: their pulses are sent (the controller does not know; they cost energy
    and do nothing)."""
    while k < n_pulses.shape[0]:
        if n_pulses[k] > 0:
            if stuck[index[k]] == 0:
                return k
            sent[k] = n_pulses[k]
        k += 1
    return k


@numba.njit(cache=True)
def _pulse_kernel(code, p, step_s, g, index, n_pulses, is_set, scale_set, scale_reset, lo, hi,
                  stuck, c2c, c2c_add, c2c_slope, normals, first_normal):
    """Apply n_pulses[k] pulses (SET if is_set[k]) to device index[k] whose conductance is g[k].
    Stops a device once it sits at the bound it is driven towards (the controller knows the
    state it wrote and sends no pulse that cannot move it). The m-th pulse of device k draws
    its cycle-to-cycle noise from ``normals[first_normal[k] + m]`` (``normals`` is empty for
    noise-free models). Returns new g and pulses sent.

    A device's pulses form a serial chain (each step depends on the conductance the previous
    one left), so PULSE_LANES devices advance together, pulse by pulse, and their independent
    chains overlap in the processor instead of waiting on each other's latency. A lane whose
    device is done takes the next device at once: pulse counts are uneven (median 2, up to ~60
    on rram-gong2018), and lanes that waited for the longest chain of a fixed block idled
    through 70 % of their slots. Each device's arithmetic is the same whatever lane runs it."""
    n_devices = g.shape[0]
    out = g.copy()
    sent = np.zeros(n_devices, dtype=np.int64)
    noisy = c2c > 0.0 or c2c_add > 0.0 or c2c_slope > 0.0
    empty, retired = -2, -1  # lane states besides a device index
    lane_device = np.full(PULSE_LANES, empty, dtype=np.int64)
    lane_pulse = np.zeros(PULSE_LANES, dtype=np.int64)
    g_now = np.empty(PULSE_LANES)
    g_low = np.empty(PULSE_LANES)
    g_high = np.empty(PULSE_LANES)
    scale = np.empty(PULSE_LANES)
    waiting = 0  # devices before this one are in a lane or done
    active = PULSE_LANES
    while active > 0:
        for j in range(PULSE_LANES):
            k = lane_device[j]
            if k == retired:
                continue
            if k >= 0:
                up = is_set[k]
                gk = g_now[j]
                m = lane_pulse[j]
                if m < n_pulses[k] and ((up and gk < g_high[j]) or ((not up) and gk > g_low[j])):
                    mean = _mean_step(code, p, gk, g_low[j], g_high[j], up, step_s) * scale[j]
                    dg = mean
                    if noisy:
                        sigma = c2c * mean + c2c_add + c2c_slope * (gk - g_low[j])
                        dg = mean + sigma * normals[first_normal[k] + m]
                    gk = gk + dg if up else gk - dg
                    if gk > g_high[j]:
                        gk = g_high[j]
                    elif gk < g_low[j]:
                        gk = g_low[j]
                    g_now[j] = gk
                    lane_pulse[j] = m + 1
                    continue
                sent[k] = m
                out[k] = gk
            # The lane is free: it takes the next device that has pulses to take.
            waiting = _next_moving_device(waiting, index, n_pulses, stuck, sent)
            if waiting >= n_devices:
                lane_device[j] = retired
                active -= 1
                continue
            k = waiting
            waiting += 1
            d = index[k]
            lane_device[j], lane_pulse[j] = k, 0
            g_now[j], g_low[j], g_high[j] = out[k], lo[d], hi[d]
            scale[j] = scale_set[d] if is_set[k] else scale_reset[d]
    return out, sent


# ------------------------------------------------------------------------------------------
# Populations


@dataclass(frozen=True)
class DevicePopulation:
    """The devices of one conductance array, drawn once (seeded): per-device bounds, SET and
    RESET step scales, stuck state (−1 at G_min,d, +1 at G_max,d, 0 free) and drift exponent.
    Arrays are flat (C order of ``shape``)."""

    model: DeviceModel
    shape: tuple
    step_s: float
    shape_params: np.ndarray
    g_min_s: np.ndarray
    g_max_s: np.ndarray
    scale_set: np.ndarray
    scale_reset: np.ndarray
    stuck: np.ndarray
    drift_nu: np.ndarray
    ideal_fast_path: bool

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def stuck_values_s(self) -> np.ndarray:
        """Conductance of each stuck device (NaN for free ones)."""
        values = np.full(self.size, np.nan)
        values[self.stuck < 0] = self.g_min_s[self.stuck < 0]
        values[self.stuck > 0] = self.g_max_s[self.stuck > 0]
        return values


def _as_rng(seed_or_rng) -> np.random.Generator:
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


def _relative_draw(rng, sigma: float, n: int, log_normal: bool) -> np.ndarray:
    """1 + σξ (or a log-normal with mean 1 and relative spread σ); exactly 1.0 when σ = 0."""
    if sigma == 0:
        return np.ones(n)
    if log_normal:
        s2 = math.log1p(sigma * sigma)
        return np.exp(rng.standard_normal(n) * math.sqrt(s2) - 0.5 * s2)
    return 1.0 + sigma * rng.standard_normal(n)


def draw_population(model: DeviceModel, shape, device: DeviceParams | None = None,
                    programming: ProgrammingParams | None = None, seed=0) -> DevicePopulation:
    """Draw the devices of one array of ``shape`` (rows, columns) for ``model``."""
    if not isinstance(model, DeviceModel):
        raise ValueError(f"model must be a DeviceModel, got {type(model).__name__}")  # noqa: TRY004
    device = device or DeviceParams()
    shape = tuple(int(s) for s in np.atleast_1d(shape))
    if any(s < 1 for s in shape):
        raise ValueError(f"shape must have positive sizes, got {shape}")
    n = int(np.prod(shape))
    rng = _as_rng(seed)
    if isinstance(model, NeuroSimDevice):
        step_s = model.nominal_step_s(programming, device)
    else:
        step_s = model.nominal_step_s(programming)
    scale = _relative_draw(rng, model.step_d2d, n, model.step_d2d_log_normal)
    if model.step_d2d > 0 and not model.step_d2d_log_normal:
        scale = np.maximum(scale, 0.0)  # a step never reverses its sign by variation
    asym = model.up_down + (model.up_down_d2d * rng.standard_normal(n) if model.up_down_d2d > 0 else 0.0)
    asym = np.clip(asym, -0.99, 0.99)
    scale_set = scale * (1.0 + asym) if (model.up_down != 0 or model.up_down_d2d > 0) else scale
    scale_reset = scale * (1.0 - asym) if (model.up_down != 0 or model.up_down_d2d > 0) else scale
    lo_scale = np.maximum(_relative_draw(rng, model.g_min_d2d, n, False), MIN_BOUND_SCALE)
    hi_scale = np.maximum(_relative_draw(rng, model.g_max_d2d, n, False), MIN_BOUND_SCALE)
    g_min = device.g_min_s * lo_scale
    g_max = device.g_max_s * hi_scale
    # Consistency: a device keeps at least one nominal step of range.
    g_max = np.maximum(g_max, g_min + step_s)
    stuck = np.zeros(n, dtype=np.int8)
    if model.stuck_fraction > 0:
        is_stuck = rng.random(n) < model.stuck_fraction
        high = rng.random(n) < model.stuck_high_fraction
        stuck[is_stuck & high] = 1
        stuck[is_stuck & ~high] = -1
    nu = model.drift_nu * _relative_draw(rng, model.drift_nu_d2d, n, False) if model.drift_nu > 0 else np.zeros(n)
    ideal = (model.model_code == MODEL_CONSTANT and not model.has_cycle_noise and model.stuck_fraction == 0)
    return DevicePopulation(model, shape, float(step_s), model.shape_params(device),
                            g_min, g_max, np.ascontiguousarray(scale_set, dtype=np.float64),
                            np.ascontiguousarray(scale_reset, dtype=np.float64), stuck,
                            np.maximum(nu, 0.0), ideal)


def draw_crossbar_pair(model: DeviceModel, shape, device: DeviceParams | None = None,
                       programming: ProgrammingParams | None = None, seed=0
                       ) -> tuple[DevicePopulation, DevicePopulation]:
    """The G⁺ and G⁻ arrays of one crossbar: two independent populations from one seed."""
    pos_seed, neg_seed = np.random.SeedSequence(seed).spawn(2)
    return (draw_population(model, shape, device, programming, np.random.default_rng(pos_seed)),
            draw_population(model, shape, device, programming, np.random.default_rng(neg_seed)))


def pin_stuck(population: DevicePopulation, g_s: np.ndarray) -> np.ndarray:
    """``g_s`` (shape of the population) with the stuck devices at their stuck value."""
    if not np.any(population.stuck):
        return g_s
    flat = np.array(g_s, dtype=np.float64).reshape(-1)
    values = population.stuck_values_s()
    mask = population.stuck != 0
    flat[mask] = values[mask]
    return flat.reshape(g_s.shape)


class PulseOutcome(NamedTuple):
    g_s: np.ndarray  # new conductances of the selected devices
    pulses_sent: np.ndarray  # per selected device
    pulses_dropped: np.ndarray  # requested but not sent (device at its bound)


def pulses_to_reach(headroom_s: np.ndarray, step_s) -> np.ndarray:
    """Pulses that still move a device with ``headroom_s`` left before its bound (the last one
    may move it only part of a step); same rule as the ideal programmer."""
    return np.maximum(np.ceil(headroom_s / step_s - PULSE_RATIO_SLACK), 0).astype(np.int64)


def apply_pulses(population: DevicePopulation, g_s: np.ndarray, index: np.ndarray,
                 n_pulses: np.ndarray, is_set, rng: np.random.Generator) -> PulseOutcome:
    """Send ``n_pulses[k]`` SET (``is_set[k]`` true) or RESET pulses to device ``index[k]``
    (flat index into the population) whose present conductance is ``g_s[k]``.

    Noise-free constant-step devices take the closed form min(G + n·Δ, G_max) with n limited
    to the pulses that still move the device — the ideal programmer's arithmetic, float for
    float. Everything else runs pulse by pulse in a numba kernel, with the cycle-to-cycle
    normals drawn from ``rng`` (one per requested pulse; device k's m-th pulse takes the m-th of
    its own slice, whatever the order in which the kernel visits devices). RESET
    pulses on a one-directional (``set_only``) device raise ValueError.
    """
    g_s = np.ascontiguousarray(g_s, dtype=np.float64)
    index = np.ascontiguousarray(index, dtype=np.int64)
    n_pulses = np.ascontiguousarray(n_pulses, dtype=np.int64)
    is_set = np.ascontiguousarray(np.broadcast_to(np.asarray(is_set, dtype=bool), g_s.shape))
    if not (g_s.shape == index.shape == n_pulses.shape):
        raise ValueError(f"g_s, index and n_pulses must have one shape, got {g_s.shape}, {index.shape}, "
                         f"{n_pulses.shape}")
    if n_pulses.size and n_pulses.min() < 0:
        raise ValueError("n_pulses must be non-negative")
    if index.size and (index.min() < 0 or index.max() >= population.size):
        raise ValueError(f"index must lie in [0, {population.size})")
    if population.model.set_only and np.any(~is_set & (n_pulses > 0)):
        raise ValueError("is_set: a one-directional (set_only) device takes no RESET pulses in an update; use refresh")
    if population.ideal_fast_path:
        lo = population.g_min_s[index]
        hi = population.g_max_s[index]
        step_set = population.step_s * population.scale_set[index]
        step_reset = population.step_s * population.scale_reset[index]
        step = np.where(is_set, step_set, step_reset)
        headroom = np.where(is_set, hi - g_s, g_s - lo)
        sent = np.minimum(n_pulses, pulses_to_reach(headroom, step))
        g_new = np.where(is_set, np.minimum(g_s + sent * step, hi), np.maximum(g_s - sent * step, lo))
        return PulseOutcome(g_new, sent, n_pulses - sent)
    model = population.model
    g_new = np.empty_like(g_s)
    sent = np.empty_like(n_pulses)
    # The cycle-to-cycle normals are drawn here, vectorised: numpy's ziggurat costs ~15 ns a
    # draw against ~25 ns for a normal drawn inside the kernel, a third of a pulse's cost.
    for start, stop in _pulse_blocks(n_pulses):
        counts = n_pulses[start:stop]
        if model.has_cycle_noise:
            normals = rng.standard_normal(int(counts.sum()))
            first_normal = np.cumsum(counts) - counts  # device k's pulses take their own slice
        else:
            normals, first_normal = _NO_NORMALS, np.zeros_like(counts)
        g_new[start:stop], sent[start:stop] = _pulse_kernel(
            model.model_code, population.shape_params, population.step_s, g_s[start:stop], index[start:stop],
            counts, is_set[start:stop], population.scale_set, population.scale_reset,
            population.g_min_s, population.g_max_s, population.stuck, model.c2c, model.c2c_additive_s,
            model.c2c_slope, normals, first_normal)
    return PulseOutcome(g_new, sent, n_pulses - sent)



def _pulse_blocks(n_pulses: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive device ranges whose requested pulses stay within MAX_NORMALS_PER_BLOCK
    (a single device asking for more gets a block of its own)."""
    total = int(n_pulses.sum())
    if total <= MAX_NORMALS_PER_BLOCK:
        return [(0, n_pulses.size)]
    blocks, start, running = [], 0, 0
    for k, n in enumerate(n_pulses.tolist()):
        if running and running + n > MAX_NORMALS_PER_BLOCK:
            blocks.append((start, k))
            start, running = k, 0
        running += n
    blocks.append((start, n_pulses.size))
    return blocks


def mean_step_s(population: DevicePopulation, g_s: np.ndarray, index: np.ndarray, is_set: bool) -> np.ndarray:
    """Noise-free step of one pulse (with each device's step scale) at conductances ``g_s`` —
    the model's formula, used by the statistical tests and the symmetry point."""
    out = np.empty(len(index))
    scale = population.scale_set if is_set else population.scale_reset
    for k, (g, d) in enumerate(zip(np.asarray(g_s, dtype=np.float64), np.asarray(index))):
        out[k] = _mean_step(population.model.model_code, population.shape_params, float(g),
                            population.g_min_s[d], population.g_max_s[d], bool(is_set),
                            population.step_s) * scale[d]
    return out


def step_sigma_s(population: DevicePopulation, g_s, index, is_set: bool) -> np.ndarray:
    """Standard deviation of one pulse's step at ``g_s`` (the model's cycle-to-cycle formula)."""
    model = population.model
    mean = mean_step_s(population, g_s, index, is_set)
    return model.c2c * mean + model.c2c_additive_s + model.c2c_slope * (np.asarray(g_s) - population.g_min_s[index])


def symmetry_point_s(population: DevicePopulation, device_index: int = 0) -> float:
    """Conductance where one device's mean SET and RESET steps are equal (bisection on the
    model's formula); NaN when they never cross (constant steps, one-directional devices)."""
    lo = population.g_min_s[device_index]
    hi = population.g_max_s[device_index]
    idx = np.array([device_index])

    def diff(g):
        return (mean_step_s(population, [g], idx, True) - mean_step_s(population, [g], idx, False))[0]

    a, b = lo, hi
    fa, fb = diff(a), diff(b)
    if population.model.set_only or fa * fb > 0 or (fa == 0 and fb == 0):
        return float("nan")
    for _ in range(200):
        mid = 0.5 * (a + b)
        fm = diff(mid)
        if fa * fm <= 0:
            b, fb = mid, fm
        else:
            a, fa = mid, fm
    return 0.5 * (a + b)


# ------------------------------------------------------------------------------------------
# Reads, writes, drift


def write_noise_offsets_s(population: DevicePopulation, index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fresh write-noise offsets (S) for the devices just written: σ_write·Δ·ξ. The reads add
    them to the conductance until the next write of that device."""
    index = np.asarray(index, dtype=np.int64)
    if population.model.write_noise == 0:
        return np.zeros(index.shape)
    return population.model.write_noise * population.step_s * rng.standard_normal(index.shape)


def read_conductances(population: DevicePopulation, g_s: np.ndarray, rng: np.random.Generator,
                      write_offset_s: np.ndarray | None = None) -> np.ndarray:
    """The conductances one settle sees: (G + write offset)(1 + σ_read ξ), ξ drawn once for the
    settle (a settle lasts ~100 ns, far below the read-noise correlation time), floored at 0.
    Without write or read noise this is ``g_s`` itself."""
    model = population.model
    if model.read_noise == 0 and (write_offset_s is None or model.write_noise == 0):
        return g_s
    # One fresh array, every other step in place: a read of a 784×256 array runs once per settle.
    g = np.asarray(g_s, dtype=np.float64)
    seen = None
    if write_offset_s is not None and model.write_noise > 0:
        seen = np.add(g, np.asarray(write_offset_s).reshape(g.shape))
    if model.read_noise > 0:
        factor = rng.standard_normal(g.shape)
        factor *= model.read_noise
        factor += 1.0
        seen = np.multiply(g if seen is None else seen, factor, out=factor)
    return np.maximum(seen, 0.0, out=seen)


def drift(population: DevicePopulation, g_programmed_s: np.ndarray, t_since_write_s,
          t0_s: float = DRIFT_T0_S) -> np.ndarray:
    """PCM drift: G(t) = G₀ (t/t₀)^{−ν} for t ≥ t₀ (G₀ before), each device with its own ν,
    kept within its bounds. ``t_since_write_s`` is a scalar or one time per device."""
    if not (isinstance(t0_s, (int, float)) and math.isfinite(t0_s) and t0_s > 0):
        raise ValueError(f"t0_s must be a positive finite number, got {t0_s!r}")
    t = np.asarray(t_since_write_s, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("t_since_write_s must be finite and non-negative")
    g = np.asarray(g_programmed_s, dtype=np.float64)
    if not np.any(population.drift_nu):
        return g
    nu = population.drift_nu.reshape(g.shape)
    factor = (np.maximum(t, t0_s) / t0_s) ** (-nu)
    return np.clip(g * factor, population.g_min_s.reshape(g.shape), population.g_max_s.reshape(g.shape))


# ------------------------------------------------------------------------------------------
# Response curves (for plots)


def response_curve(model: DeviceModel, n_pulses: int, n_devices: int = 100, seed=0,
                   device: DeviceParams | None = None, programming: ProgrammingParams | None = None
                   ) -> dict:
    """Conductance vs pulse number: every device starts at G_min,d, gets ``n_pulses`` SET pulses,
    then ``n_pulses`` RESET pulses (SET only for one-directional devices). Returns the pulse
    numbers, the conductances (devices × 2n+1) and their mean and spread over devices."""
    if isinstance(n_pulses, bool) or not isinstance(n_pulses, (int, np.integer)) or n_pulses < 1:
        raise ValueError(f"n_pulses must be a positive integer, got {n_pulses!r}")
    if isinstance(n_devices, bool) or not isinstance(n_devices, (int, np.integer)) or n_devices < 1:
        raise ValueError(f"n_devices must be a positive integer, got {n_devices!r}")
    rng = _as_rng(seed)
    population = draw_population(model, (n_devices,), device, programming, rng)
    index = np.arange(n_devices)
    g = pin_stuck(population, population.g_min_s.copy())
    phases = [True] if model.set_only else [True, False]
    trace = [g.copy()]
    ones = np.ones(n_devices, dtype=np.int64)
    for is_set in phases:
        for _ in range(n_pulses):
            g = apply_pulses(population, g, index, ones, is_set, rng).g_s
            trace.append(g.copy())
    g_trace = np.array(trace).T
    return {"pulse": np.arange(g_trace.shape[1]), "g_s": g_trace, "g_mean_s": g_trace.mean(axis=0),
            "g_std_s": g_trace.std(axis=0), "model": model.describe()}


def with_overrides(model: DeviceModel, **overrides) -> DeviceModel:
    """``model`` with some fields replaced; unknown names raise ValueError naming them."""
    names = {f.name for f in fields(model)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown device parameter {unknown[0]!r} for {model.model_name}; "
                         f"known: {', '.join(sorted(names))}")
    return replace(model, **overrides)
