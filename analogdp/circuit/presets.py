"""Device presets with cited parameters, translated into this project's conductance range.

aihwkit states its presets on a normalised weight range [w_min, w_max] of one device. Here a
device spans [G_min, G_max] of :class:`~analogdp.circuit.params.DeviceParams` (0.588–10 µS by
default), so a step of ``dw_min`` weight units is ``dw_min/(w_max − w_min)·(G_max − G_min)``
siemens, and the number of states, (w_max − w_min)/dw_min, is kept. Relative spreads (d2d, c2c)
carry over unchanged; additive noise in weight units is converted like a step. Bound spreads
(aihwkit ``w_min_dtod``/``w_max_dtod``, relative to each bound) are applied relative to G_min and
G_max. aihwkit's linear-step and exp-step shape parameters are referred to the weight zero of its
range; they are rewritten for u = (G − G_min)/(G_max − G_min).

Sources:
- ``rram-gong2018``: aihwkit ``ReRamESPresetDevice`` (exp-step fit to Gong et al., Nat. Commun.
  9, 2102, 2018).
- ``rram-hfo2``: aihwkit ``ReRamArrayHfO2PresetDevice`` (soft-bounds fit to the baseline HfO2
  array of Gong & Rasch et al., IEDM 2022), with the measured 9.77 % corrupt devices switched on
  as stuck devices.
- ``pcm-nandakumar2020``: aihwkit ``PCMPresetDevice`` (exp-step with additive and slope noise,
  Nandakumar et al., Front. Neurosci. 14:406, 2020); one-directional, used with refresh; drift
  exponent ν = 0.05 (DESIGN §7).
- ``ecram-tang2018``: aihwkit ``EcRamPresetDevice`` (linear-step fit to Tang et al., IEDM 2018).
- ``neurosim-rram``: DNN NeuroSim V2.1 training defaults (32 levels, nonlinearity 1.75/−1.46,
  c2c 0.003 of the range).
"""

from __future__ import annotations

import math

from .devices import (
    DeviceModel,
    ExpStepDevice,
    IdealDevice,
    LinearStepDevice,
    NeuroSimDevice,
    with_overrides,
)
from .params import DeviceParams

PRESETS = ("ideal", "rram-gong2018", "rram-hfo2", "pcm-nandakumar2020", "ecram-tang2018",
           "neurosim-rram")
# Boolean and integer fields of the models (the CLI parses NAME=VALUE strings by these).
BOOL_FIELDS = ("step_d2d_log_normal", "set_only")
INT_FIELDS = ("n_levels",)


def _step_s(dw_min: float, w_min: float, w_max: float, device: DeviceParams) -> float:
    return dw_min / (w_max - w_min) * (device.g_max_s - device.g_min_s)


def _exp_shape(a: float, b: float, w_min: float, w_max: float) -> tuple[float, float]:
    """aihwkit's z = 2a·w/(w_max − w_min) + b rewritten as z = a_u·u + b_u."""
    return 2.0 * a, b + 2.0 * a * w_min / (w_max - w_min)


def _linear_shape(dw_min: float, gamma_up: float, gamma_down: float, w_min: float, w_max: float,
                  device: DeviceParams) -> dict:
    """aihwkit's linear step (slopes referred to the mean bounds, ``mean_bound_reference``):
    up Δ(1 − γ⁺w/w_max), down Δ(1 − γ⁻w/w_min), rewritten as Δ'(1 − γ'⁺u) and
    Δ'(1 − γ'⁻(1 − u)). The two directions get different Δ', expressed as an up/down asymmetry
    around their mean."""
    span = w_max - w_min
    up0 = 1.0 - gamma_up * w_min / w_max  # relative SET step at u = 0
    down1 = 1.0 - gamma_down * w_max / w_min  # relative RESET step at u = 1
    g_up = gamma_up * span / w_max / up0
    g_down = gamma_down * span / abs(w_min) / down1
    mean = 0.5 * (up0 + down1)
    return {"step_s": _step_s(dw_min, w_min, w_max, device) * mean,
            "up_down": (up0 - down1) / (up0 + down1), "gamma_up": g_up, "gamma_down": g_down}


def preset_model(name: str, device: DeviceParams | None = None) -> DeviceModel:
    """The device model of preset ``name`` for the conductance range of ``device``."""
    device = device or DeviceParams()
    span_s = device.g_max_s - device.g_min_s
    if name == "ideal":
        return IdealDevice()
    if name == "rram-gong2018":
        w_min, w_max = -1.0, 1.0
        a_u, b_u = _exp_shape(-0.5, -0.5, w_min, w_max)
        return ExpStepDevice(step_s=_step_s(0.00135, w_min, w_max, device), up_down=0.259359,
                             a_u=a_u, b_u=b_u, gamma_up=5.0, gamma_down=5.0, a_up=-1.18445,
                             a_down=-0.081404, step_d2d=0.2, up_down_d2d=0.05, g_min_d2d=0.3,
                             g_max_d2d=0.3, c2c=5.0, write_noise=75.0)
    if name == "rram-hfo2":
        # Soft bounds on [-1, 1]: up Δ(1 − w), i.e. 2Δ(1 − u) in u; additive c2c in units of Δ.
        dw_min = 0.4622
        step = _step_s(dw_min, -1.0, 1.0, device)
        return LinearStepDevice(step_s=2.0 * step, gamma_up=1.0, gamma_down=1.0, step_d2d=0.7125,
                                step_d2d_log_normal=True, up_down_d2d=0.01, g_min_d2d=0.5990,
                                g_max_d2d=0.4295, c2c_additive_s=0.2174 * step, write_noise=0.5841 / 2.0,
                                stuck_fraction=0.0977)
    if name == "pcm-nandakumar2020":
        w_min, w_max = 0.0, 2.0
        a_u, b_u = _exp_shape(-1.0, 0.0, w_min, w_max)
        weight_to_s = span_s / (w_max - w_min)
        return ExpStepDevice(step_s=_step_s(0.01, w_min, w_max, device), a_u=a_u, b_u=b_u,
                             gamma_up=2.5, gamma_down=2.5, a_up=-27.235, a_down=-2.235,
                             step_d2d=0.2, up_down_d2d=0.05, g_min_d2d=0.0, g_max_d2d=0.1, c2c=0.6,
                             c2c_additive_s=0.6 * 0.042 * weight_to_s, c2c_slope=0.6 * 0.108,
                             drift_nu=0.05, set_only=True)
    if name == "ecram-tang2018":
        shape = _linear_shape(0.002, 0.1153, 0.5085, -0.8276, 1.1724, device)
        return LinearStepDevice(**shape, step_d2d=0.1, up_down_d2d=0.01, g_min_d2d=0.05,
                                g_max_d2d=0.05, c2c=0.3)
    if name == "neurosim-rram":
        return NeuroSimDevice(n_levels=32, ltp_a_ratio=0.702081, ltd_a_ratio=-0.848677,
                              c2c_additive_s=0.003 * span_s)
    raise ValueError(f"unknown device preset {name!r}; known: {', '.join(PRESETS)}")


def device_from_preset(name: str, device: DeviceParams | None = None, **overrides) -> DeviceModel:
    """Preset ``name`` with fields overridden (``--device-param NAME=VALUE``). Unknown names,
    non-finite values and negative noise raise ValueError naming the parameter."""
    model = preset_model(name, device)
    for key, value in overrides.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"device parameter {key} must be finite, got {value!r}")
    return with_overrides(model, **overrides)


def parse_device_param(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` → (name, value) with the value typed by the field (bool, int or float)."""
    if "=" not in text:
        raise ValueError(f"device parameter must be NAME=VALUE, got {text!r}")
    name, raw = (part.strip() for part in text.split("=", 1))
    if name in BOOL_FIELDS:
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"device parameter {name} must be true or false, got {raw!r}")
        return name, raw.lower() in ("true", "1")
    try:
        value = int(raw) if name in INT_FIELDS else float(raw)
    except ValueError:
        raise ValueError(f"device parameter {name} must be a number, got {raw!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"device parameter {name} must be finite, got {raw!r}")
    return name, value
