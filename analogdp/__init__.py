"""analogdp: analog circuit simulator for dual propagation on resistive crossbars."""

__version__ = "0.1.0"
