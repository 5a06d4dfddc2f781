"""Discrete-event simulator of a plan serving a request stream (`hexplan simulate`)."""

from planner.sim.arrivals import Arrivals, poisson, replay
from planner.sim.engine import Simulation
from planner.sim.metrics import SimResult, Slo
from planner.sim.sweeps import default_slo, goodput, saturation, simulate_rate

__all__ = [
    "Arrivals",
    "SimResult",
    "Simulation",
    "Slo",
    "default_slo",
    "goodput",
    "poisson",
    "replay",
    "saturation",
    "simulate_rate",
]
