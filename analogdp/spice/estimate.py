"""Placeholder; replaced below."""
def estimate_ngspice_seconds(circuit, t_stop_s):
    return float("nan")
